"""`unreal-nas probe`: random architectures, the supernet fixed to one, and the probe loop (its
resume: tests/train/test_resume.py)."""

import json

import jax
import numpy as np
import pytest

from tests.testing import read_scalars, tiny_probe_config
from unreal_nas_jax.analysis import runs
from unreal_nas_jax.cli.main import main
from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.models.supernet import SearchNetwork
from unreal_nas_jax.search import arch
from unreal_nas_jax.space import genotypes, published, sampling
from unreal_nas_jax.space.genotypes import Genotype
from unreal_nas_jax.space.primitives import PRIMITIVES, edge_list, node_edge_ranges
from unreal_nas_jax.train import probe

# Random architectures ---------------------------------------------------------------------------


def test_random_genotypes_are_valid_reproducible_and_distinct():
  found = sampling.random_genotypes(seed=3, count=40)
  assert len(set(found)) == 40
  for g in found:
    genotypes.validate_genotype(g)
    assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5)
    for cell in (g.normal, g.reduce):
      for node in range(4):
        (op_a, src_a), (op_b, src_b) = cell[2 * node : 2 * node + 2]
        assert src_a < src_b <= node + 1  # two distinct predecessors
        assert op_a != 'none' and op_b != 'none'
  assert sampling.random_genotypes(seed=3, count=40) == found
  assert sampling.random_genotypes(seed=3, count=5) == found[:5]  # a prefix of a longer probe
  assert sampling.random_genotypes(seed=4, count=5) != found[:5]
  # Every op, input and node count shows up: the draw covers the space, not a corner of it.
  ops = {op for g in found for op, _ in g.normal + g.reduce}
  assert ops == set(PRIMITIVES) - {'none'}
  small = sampling.random_genotypes(seed=0, count=3, steps=2, multiplier=2)
  assert all(len(g.normal) == 4 and g.normal_concat == (2, 3) for g in small)


def test_random_genotypes_refuse_impossible_counts():
  with pytest.raises(ValueError, match='count=0'):
    sampling.random_genotypes(0, 0)
  # One node with two inputs from two: 49 normal cells x 49 reduction cells.
  assert sampling.space_size(1) == 49 * 49
  with pytest.raises(ValueError, match='more than the 2401'):
    sampling.random_genotypes(0, 2402, steps=1, multiplier=1)


# The supernet fixed to an architecture ----------------------------------------------------------

# Uses neither dil_conv_5x5 nor avg_pool_3x3.
FIXED = Genotype(
  normal=(('sep_conv_3x3', 0), ('skip_connect', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 2)),
  normal_concat=(2, 3),
  reduce=(('dil_conv_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 1), ('max_pool_3x3', 2)),
  reduce_concat=(2, 3),
)


def test_decisions_make_the_mixing_weights_exactly_one_hot():
  decisions = probe.genotype_decisions(FIXED, steps=2, multiplier=2)
  alphas = arch.init_alphas(jax.random.PRNGKey(0), steps=2, init='normal', scale=1.0)
  weights = jax.device_get(arch.arch_weights(alphas, decisions))
  edges = edge_list(2)
  for cell in arch.CELLS:
    w = np.asarray(weights[cell])
    chosen = {edges.index((src, k // 2)): op for k, (op, src) in enumerate(getattr(FIXED, cell))}
    for e in range(len(edges)):
      expected = np.zeros(len(PRIMITIVES))
      if e in chosen:
        expected[PRIMITIVES.index(chosen[e])] = 1.0
      np.testing.assert_array_equal(w[e], expected)
    for start, end in node_edge_ranges(2):  # two incoming edges per node, as the genotype says
      assert np.count_nonzero(w[start:end].sum(-1)) == 2


def test_the_fixed_supernet_ignores_the_ops_the_architecture_does_not_use():
  model = SearchNetwork(num_classes=5, channels=4, layers=3, steps=2, multiplier=2)
  weights = arch.arch_weights(
    arch.init_alphas(jax.random.PRNGKey(0), steps=2),
    probe.genotype_decisions(FIXED, steps=2, multiplier=2),
  )
  images = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 3))
  variables = jax.jit(lambda key: model.init(key, images, weights, train=True))(
    jax.random.PRNGKey(2)
  )

  # One compiled forward (eager op-by-op dispatch is several times slower here).
  forward = jax.jit(
    lambda params: model.apply(
      {**variables, 'params': params}, images, weights, train=True, mutable=['batch_stats']
    )[0]
  )

  def logits_with(op_name):
    def perturb(path, x):
      named = any(op_name in str(getattr(p, 'key', '')) for p in path)
      return x + 1.0 if named else x

    return np.asarray(forward(jax.tree_util.tree_map_with_path(perturb, variables['params'])))

  reference = logits_with('no such op')
  np.testing.assert_array_equal(logits_with('dil_conv_5x5'), reference)
  assert np.abs(logits_with('sep_conv_5x5') - reference).max() > 1e-4  # used: it matters


def test_cells_the_supernet_cannot_hold_are_refused():
  seven = FIXED._replace(reduce=(('sep_conv_7x7', 0), *FIXED.reduce[1:]))
  with pytest.raises(ValueError, match="'sep_conv_7x7', which the DARTS search space lacks"):
    probe.genotype_decisions(seven, steps=2, multiplier=2)
  with pytest.raises(ValueError, match='has 5 nodes'):
    probe.genotype_decisions(published.get_genotype('NASNet'), steps=4, multiplier=4)
  with pytest.raises(ValueError, match='model.steps=2'):
    probe.genotype_decisions(published.get_genotype('DARTS_V2'), steps=2, multiplier=2)
  twice = FIXED._replace(normal=(('sep_conv_3x3', 0), ('skip_connect', 0), *FIXED.normal[2:]))
  with pytest.raises(ValueError, match='node 2 of its normal cell takes input 0 twice'):
    probe.genotype_decisions(twice, steps=2, multiplier=2)


# The probe loop ---------------------------------------------------------------------------------


def _curves(workdir):
  run = runs.read_probe_run(str(workdir))
  return {name: run.curve(name, 'train_loss')[1] for name in run.architectures}, run


def test_k_together_equal_one_by_one_with_events_the_analyses_read(tmp_path):
  def config(**fields):  # one node per cell: the smallest program that still has architectures
    c = tiny_probe_config(**fields)
    c.model.steps = c.model.multiplier = 1
    return c

  together = tmp_path / 'together'
  with_events = config(num_architectures=2, program='vmap')
  with_events.log.tensorboard = True
  summary = probe.run_probe(with_events, str(together))
  curves, run = _curves(together)
  assert list(run.architectures) == ['random_0_0', 'random_0_1'] == summary['architectures']
  assert run.epochs_reached() == {'random_0_0': 2, 'random_0_1': 2}
  assert not np.allclose(curves['random_0_0'], curves['random_0_1'])  # two architectures differ
  events = read_scalars(together / 'tensorboard')
  assert {'loss/random_0_0', 'accuracy/random_0_1', 'lr'} <= set(events)
  np.testing.assert_allclose(
    [events['loss/random_0_1'][e] for e in (1, 2)], curves['random_0_1'], rtol=1e-6
  )

  paths = []
  for k, (name, genotype) in enumerate(run.architectures.items()):
    path = tmp_path / f'arch{k}.json'
    path.write_text(json.dumps(genotype))
    paths.append(str(path))
    alone = tmp_path / f'alone{k}'
    probe.run_probe(config(architectures=str(path)), str(alone))
    alone_curves, _ = _curves(alone)
    np.testing.assert_allclose(alone_curves[str(path)], curves[name], rtol=2e-6)

  # The analyses read the workdir unchanged.
  out = tmp_path / 'difficulty.svg'
  code = main([
    'unreal-nas', 'analyze', 'difficulty', str(together), f'--out={out}', '--smoothing=1',
    '--plateau_epochs=1',
  ])  # fmt: skip
  assert code == 0 and out.exists()


def test_bad_probe_input_is_a_one_line_error_and_writes_nothing(tmp_path, capsys, monkeypatch):
  workdir = tmp_path / 'never'
  bad = [
    ({'num_architectures': 0}, 'config.probe.num_architectures=0 is not allowed'),
    ({'program': 'threads'}, "config.probe.program='threads' is not allowed"),
    ({'architectures': 'DARTS_V9'}, "unknown genotype 'DARTS_V9'"),
    ({'architectures': 'DARTS_V2,,PC_DARTS_cifar'}, 'has an empty entry'),
    ({'batch_size': 64}, 'config.probe.batch_size=64 is not allowed'),
  ]
  for fields, message in bad:
    with pytest.raises(ConfigError, match=message):
      probe.run_probe(tiny_probe_config(**fields), str(workdir))
  config = tiny_probe_config(architectures='DARTS_V2')  # 4 nodes in a 2-node supernet
  with pytest.raises(ConfigError, match="architecture 'DARTS_V2' does not fit"):
    probe.run_probe(config, str(workdir))
  assert not workdir.exists()

  argv = [
    'unreal-nas', 'probe', '--config=configs/probe.py:rlrn,quick',
    '--config.probe.architectures=DARTS_V2,NoSuchNet', f'--workdir={workdir}',
  ]  # fmt: skip
  monkeypatch.setattr('sys.argv', argv)  # ml_collections reads --config.x overrides from it
  code = main(argv)
  err = capsys.readouterr().err
  assert code == 2
  assert err.count('\n') == 1 and "unknown genotype 'NoSuchNet'" in err, err
  assert not workdir.exists()
