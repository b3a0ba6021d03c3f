"""N seeds in one program: seed k equals a single run with that seed; per-seed outputs (their
resume: tests/train/test_resume.py)."""

import functools
import json
import os

import jax
import numpy as np
import pytest

from tests.testing import tiny_search_config
from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.search import setup as search_setup
from unreal_nas_jax.search.validate import validate_search_config
from unreal_nas_jax.train import genotype_source, search_loop


@pytest.fixture(scope='module')
def runs(seeds_run, search_run, tmp_path_factory):
  """The 2-seed search, and a single-seed search with each of its seeds (seed 0: the default)."""
  seed_1 = search_loop.run_search(tiny_search_config(seed=1), str(tmp_path_factory.mktemp('seed1')))
  return seeds_run[2], [search_run[2], seed_1]


def test_seed_k_of_an_n_seed_run_equals_a_single_run_with_that_seed(runs):
  many, singles = runs
  assert many['num_seeds'] == 2
  # On CPU `auto` is the 'loop' program: the single-seed step per seed, bit for bit.
  for k, single in enumerate(singles):
    assert many['seeds'][k]['genotype'] == single['genotype']
    for (path, a), b in zip(
      jax.tree_util.tree_leaves_with_path(single['state']),
      jax.tree.leaves(many['state']),
      strict=True,
    ):
      np.testing.assert_array_equal(b[k], a, err_msg=jax.tree_util.keystr(path))
  # The two seeds really differ (weights, alphas and data order).
  assert not np.allclose(many['state'].alphas['normal'][0], many['state'].alphas['normal'][1])


def _steps(config, epochs):
  setup = search_setup.build_search(config)
  state = search_setup.init_state(setup)
  for epoch in epochs:
    step = search_setup.make_step_fn(setup, setup.phase(epoch))
    inputs = search_setup.epoch_inputs(setup, epoch)
    state, _ = step(state, search_setup.init_sums(setup), setup.data, *inputs)
  return jax.device_get(state)


# One node per cell: a seed's slice of the program does not depend on the cell's size, and one
# node's programs compile in about half the time of two.
ONE_NODE = {'model__steps': 1, 'model__multiplier': 1}


@functools.cache
def _single_seed_steps(k, epochs):
  return _steps(tiny_search_config(seed=k, data_seed=k, **ONE_NODE), epochs)


@pytest.mark.parametrize('program', ['vmap', 'map'])
def test_one_program_seed_k_steps_equal_single_seed_steps_to_rounding(program):
  epochs = (1, 1)  # two search steps (one program per variant)
  config = tiny_search_config(
    search__num_seeds=2, search__seeds_share_data=False, search__seeds_program=program, **ONE_NODE
  )
  many = _steps(config, epochs)
  for k in range(2):
    single = _single_seed_steps(k, epochs)
    assert not np.array_equal(many.alphas['normal'][1 - k], single.alphas['normal'])
    for (path, a), b in zip(
      jax.tree_util.tree_leaves_with_path(single), jax.tree.leaves(many), strict=True
    ):
      scale = float(np.abs(a).max()) or 1.0
      np.testing.assert_allclose(
        b[k], a, rtol=0, atol=1e-5 * scale, err_msg=jax.tree_util.keystr(path)
      )


def test_each_seed_writes_its_own_genotype_and_metrics(runs):
  many, _ = runs
  workdir = many['workdir']
  for k in range(2):
    with open(os.path.join(workdir, f'seed_{k}', 'genotype.json')) as f:
      assert json.load(f) == many['seeds'][k]['genotype']
    with open(os.path.join(workdir, f'seed_{k}', 'metrics.jsonl')) as f:
      records = [json.loads(line) for line in f]
    assert [r['epoch'] for r in records] == [1, 2, 3]
    assert all(r['seed'] == k for r in records)
  assert sorted(map(int, os.listdir(os.path.join(workdir, 'checkpoints')))) == [4, 8, 12]
  # A multi-seed workdir names which seed to retrain.
  with pytest.raises(ConfigError, match=r'2 seeds; pass one seed.s genotype'):
    genotype_source.resolve_genotype(workdir)
  geno, source = genotype_source.resolve_genotype(os.path.join(workdir, 'seed_1', 'genotype.json'))
  assert list(map(list, geno.normal)) == many['seeds'][1]['genotype']['normal']


def test_num_seeds_below_one_is_refused():
  with pytest.raises(ConfigError, match='config.search.num_seeds=0 is not allowed; allowed: an '):
    validate_search_config(tiny_search_config(search__num_seeds=0))
