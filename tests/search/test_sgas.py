"""SGAS: scores against hand computation, decisions and pruning, the schedule, the batch growth,
genotypes from decisions, no recompiles across decisions, and its config checks (its resume:
tests/train/test_resume.py)."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.testing import tiny_search_config
from unreal_nas_jax.config_utils import ConfigError, load_config
from unreal_nas_jax.search import setup as search_setup
from unreal_nas_jax.search import sgas
from unreal_nas_jax.search.validate import validate_search_config
from unreal_nas_jax.space.primitives import PRIMITIVES
from unreal_nas_jax.train import search_loop

STEPS = 2  # 5 edges: node 0 has edges 0-1 (sources 0, 1), node 1 edges 2-4 (sources 0, 1, 2)
NONE, SEP3, MAX3, SKIP = (PRIMITIVES.index(n) for n in ('none', 'sep_conv_3x3', 'max_pool_3x3',
                                                        'skip_connect'))  # fmt: skip


def _hand_scores(alphas, history=()):
  p = np.exp(alphas) / np.exp(alphas).sum(-1, keepdims=True)
  importance = 1 - p[:, NONE]
  q = np.delete(p, NONE, axis=1)
  q = q / q.sum(-1, keepdims=True)
  certainty = 1 - (-(q * np.log(q)).sum(-1)) / math.log(7)
  stability = (
    np.mean([np.minimum(h, q).sum(-1) for h in history], axis=0) if history else np.zeros(len(q))
  )

  def n(x):
    return (x - x.min()) / (x.max() - x.min()) if x.max() > x.min() else np.zeros_like(x)

  return importance, certainty, stability, n(importance) * n(certainty), n(stability), q


def test_scores_match_a_hand_computation():
  rng = np.random.default_rng(0)
  alphas = rng.normal(size=(5, 8))
  importance, certainty, _, score1, _, q = _hand_scores(alphas)
  d = sgas.init_decisions(STEPS)['normal']
  got = sgas.edge_scores(jnp.asarray(alphas, jnp.float32), d, criterion=1)
  np.testing.assert_allclose(got['importance'], importance, rtol=1e-5)
  np.testing.assert_allclose(got['certainty'], certainty, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(got['stability'], 0.0)
  np.testing.assert_allclose(got['score'], score1, rtol=1e-4, atol=1e-6)
  # Criterion 2 with two epochs of history (slots 0 and 1 filled): the mean intersection.
  history = [rng.dirichlet(np.ones(7), size=5) for _ in range(2)]
  d = dict(d, history=d['history'].at[:2].set(np.stack(history)), history_len=jnp.int32(2))
  *_, stab_n, _ = _hand_scores(alphas, history)
  got = sgas.edge_scores(jnp.asarray(alphas, jnp.float32), d, criterion=2)
  _, _, stability, _, _, _ = _hand_scores(alphas, history)
  np.testing.assert_allclose(got['stability'], stability, rtol=1e-5)
  np.testing.assert_allclose(got['score'], score1 * stab_n, rtol=1e-4, atol=1e-6)


def test_constant_scores_normalise_to_zero():
  d = sgas.init_decisions(STEPS)['normal']
  got = sgas.edge_scores(jnp.zeros((5, 8)), d, criterion=1)
  np.testing.assert_array_equal(got['score'], np.zeros(5))


def _alphas(strength):
  """Edge e strongly prefers op strength[e][0] with logit strength[e][1]."""
  a = np.zeros((5, 8), np.float32)
  for e, (op, logit) in enumerate(strength):
    a[e, op] = logit
  return {'normal': jnp.asarray(a), 'reduce': jnp.asarray(a)}


def test_decisions_prune_full_nodes_and_give_ascending_genes():
  # Scores follow the logits: edge 3 first, then edge 0, then edge 2 (node 1 full: edge 4
  # pruned), then edge 1.
  alphas = _alphas([(SEP3, 4.0), (SKIP, 1.0), (MAX3, 3.0), (SEP3, 5.0), (SEP3, 0.5)])
  update = jax.jit(sgas.update, static_argnames='criterion')
  d = sgas.init_decisions(STEPS)
  order = []
  for _ in range(4):
    before = np.asarray(d['normal']['op'])
    d, _ = update(alphas, d, criterion=1, decide=True)
    order += [int(e) for e in np.flatnonzero(np.asarray(d['normal']['op']) != before)]
    if order[-1] == 2:
      assert np.asarray(d['normal']['pruned']).tolist() == [False, False, False, False, True]
  assert order == [3, 0, 2, 1]
  assert np.asarray(d['normal']['op']).tolist() == [SEP3, SKIP, MAX3, SEP3, -1]
  assert sgas.is_complete(d)
  g = sgas.genotype(d, multiplier=2)
  assert g.normal == (('sep_conv_3x3', 0), ('skip_connect', 1), ('max_pool_3x3', 0),
                      ('sep_conv_3x3', 1))  # fmt: skip
  # With nothing left to decide, a further decision changes nothing.
  again, _ = update(alphas, d, criterion=1, decide=True)
  np.testing.assert_array_equal(again['normal']['op'], d['normal']['op'])
  # decide=False only scores and records the history.
  kept, _ = update(alphas, sgas.init_decisions(STEPS), criterion=1, decide=False)
  assert np.asarray(kept['normal']['op']).tolist() == [-1] * 5
  assert int(kept['normal']['history_len']) == 1


def test_history_keeps_the_last_four_epochs():
  update = jax.jit(sgas.update, static_argnames='criterion')
  d = sgas.init_decisions(STEPS)
  for i in range(6):
    alphas = {'normal': jnp.full((5, 8), 0.0).at[:, 1].set(i), 'reduce': jnp.zeros((5, 8))}
    d, _ = update(alphas, d, criterion=2, decide=False)
  assert int(d['normal']['history_len']) == sgas.HISTORY
  first_q = np.asarray(d['normal']['history'])[:, 0, 0]  # q of op 1 in epochs 2..5, oldest first
  expected = [np.exp(i) / (np.exp(i) + 6) for i in range(2, 6)]
  np.testing.assert_allclose(first_q, expected, rtol=1e-5)


def test_paper_schedule_decides_after_epochs_9_to_44_and_grows_the_batch_to_128():
  kw = {'start': 9, 'every': 5, 'steps': 4}
  decided = [e for e in range(50) if sgas.is_decision_epoch(e, **kw)]
  assert decided == [9, 14, 19, 24, 29, 34, 39, 44]
  config = load_config('configs/search.py:rlrn,sgas')
  config.data.num_examples = 1024  # keeps the build small; the schedule is the preset's
  setup = search_setup.build_search(config)
  assert [setup.batch_size(e) for e in (0, 5, 14, 15, 19, 20, 54)] == [64, 64, 64, 72, 72, 80, 128]
  assert [setup.is_decision_epoch(e) for e in (13, 14, 49, 50)] == [False, True, True, False]
  assert setup.epoch_start(16) == 15 * (1024 // 64) + (1024 // 72)  # epochs 0-14, then 15


def test_sgas_search_writes_decisions_and_its_genotype(sgas_run):
  config, workdir, summary = sgas_run
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  assert [r['batch_size'] for r in records] == [8, 8, 12, 16]
  assert 'sgas' not in records[0]  # the warm-up decides nothing
  decided = [sum(o is not None for o in r['sgas']['normal']['decided_ops']) for r in records[1:]]
  assert decided == [1, 2, 3]
  # The run ended one decision short: the genotype completes it greedily by the last scores,
  # keeping the three decisions made.
  assert summary['genotype'] == records[-1]['genotype']
  final = records[-1]['sgas']
  for cell in ('normal', 'reduce'):
    made = [(e, o) for e, o in enumerate(final[cell]['decided_ops']) if o is not None]
    edges = [e for e, _ in made]
    genes = [tuple(g) for g in summary['genotype'][cell]]
    sources = [0, 1, 0, 1, 2]  # edge -> source for 2 nodes
    for e, op in made:
      assert (op, sources[e]) in genes
    assert len(genes) == 4 and len(edges) == 3
  with open(os.path.join(workdir, 'genotype.json')) as f:
    assert json.load(f) == summary['genotype']


def test_decisions_never_recompile_only_new_batches_do(sgas_run, monkeypatch, tmp_path):
  config, _, summary = sgas_run
  # One program per batch the schedule reaches; a decision at an unchanged batch compiles nothing.
  assert summary['compiled_steps'] == [
    'warmup step',
    'search step',
    'search step, batch 12',
    'search step, batch 16',
  ]
  calls = []
  original = search_loop.make_step_fn
  monkeypatch.setattr(
    search_loop, 'make_step_fn', lambda *a, **k: calls.append(a[1:]) or original(*a, **k)
  )
  flat = config.copy_and_resolve_references()
  flat.search.sgas_batch_increase = 0
  again = search_loop.run_search(flat, str(tmp_path))
  assert calls == [('warmup',), ('search',)]  # three decisions, one search program
  assert again['compiled_steps'] == ['warmup step', 'search step']


@pytest.mark.parametrize(
  'overrides,message',
  [
    (
      {'search__method': 'enas'},
      "config.search.method='enas' is not allowed; allowed: darts, sgas",
    ),
    ({'search__method': 'sgas', 'search__sgas_criterion': 3}, 'search.sgas_criterion=3 is not'),
    (
      {'search__method': 'sgas', 'search__sgas_batch_increase': 8},
      'search.sgas_batch_increase=8 is not allowed; allowed: a growth that keeps the batch',
    ),
    ({'search__sgas_decision_every': 0}, 'config.search.sgas_decision_every=0 is not allowed'),
    (
      {'search__method': 'pc_darts', 'search__partial_channels': 4},
      'config.model.channels=4 is not allowed; allowed: a multiple of 2 x',
    ),
  ],
)
def test_bad_method_settings_get_one_line(overrides, message):
  with pytest.raises(ConfigError, match=message.replace('(', r'\(')) as err:
    validate_search_config(tiny_search_config(**overrides))
  assert '\n' not in str(err.value)


def test_sgas_and_pc_darts_modifiers_exclude_each_other():
  with pytest.raises(ConfigError, match="'sgas' and 'pc_darts' are not allowed together"):
    load_config('configs/search.py:rlrn,sgas,pc_darts')
