"""N seeds split over groups of devices (`config.parallel.seed_shards`): each group holds only its
seeds, the searches equal the same seeds on every device to rounding (the same genotypes), a run
stopped and resumed in that layout equals the uninterrupted one bit for bit, and its checkpoints
resume on a mesh without the split and read back in a process of one device. Bad splits fail
with one line.

The runs are in a subprocess because the device count must be fixed before JAX starts.
"""

import json
import re
import textwrap

import jax
import pytest

from tests.testing import run_on_devices, tiny_search_config
from unreal_nas_jax import checkpointing
from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.search import derivation
from unreal_nas_jax.search.validate import validate_search_config
from unreal_nas_jax.space import genotypes

SCRIPT = textwrap.dedent(
  """
  import shutil, sys
  import jax, numpy as np
  from tests.testing import (Killed, assert_same_outputs, run_outputs, stopped_after,
                             tiny_search_config)
  from unreal_nas_jax import parallel
  from unreal_nas_jax.search import setup as search_setup
  from unreal_nas_jax.train import search_loop

  assert jax.device_count() == 4, jax.devices()
  tmp = sys.argv[1]

  def config(shards):
    # Two seeds, one node per cell, no warm-up (one program): the split depends on none of them.
    c = tiny_search_config(search__num_seeds=2, search__seeds_program='vmap',
                           search__warmup_epochs=0, model__steps=1, model__multiplier=1)
    c.parallel.seed_shards, c.parallel.num_devices = shards, 2 * shards
    c.checkpoint.every_steps = 3
    return c

  def run(shards, name):
    return search_loop.run_search(config(shards), f'{tmp}/{name}')['state']

  everywhere = jax.device_get(run(1, 'everywhere'))  # both seeds on 2 devices
  split_state = run(2, 'split')  # one seed on each pair of devices
  alphas = split_state.alphas['normal']
  assert alphas.sharding.spec == jax.sharding.PartitionSpec('seeds'), alphas.sharding
  assert {s.data.shape[0] for s in alphas.addressable_shards} == {1}
  split = jax.device_get(split_state)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(everywhere), jax.tree.leaves(split),
                          strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))
  assert np.abs(everywhere.alphas['normal']).max() > 1e-4  # the alphas did move
  for k in range(2):
    want = open(f'{tmp}/everywhere/seed_{k}/genotype.json').read()
    assert open(f'{tmp}/split/seed_{k}/genotype.json').read() == want, k

  # Killed after step 7 of 8 (its newest checkpoint: step 6), then resumed in the same layout ...
  with stopped_after(7, 'kill'):
    try:
      run(2, 'stopped')
    except Killed:
      pass
    else:
      raise AssertionError('the run was not stopped')
  shutil.copytree(f'{tmp}/stopped', f'{tmp}/moved')
  run(2, 'stopped')
  assert_same_outputs(run_outputs(f'{tmp}/stopped'), run_outputs(f'{tmp}/split'))
  # ... and on 2 devices that step both seeds: the split checkpoint restores there.
  moved = jax.device_get(run(1, 'moved'))
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(everywhere), jax.tree.leaves(moved),
                          strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))

  # A split that does not divide the devices, and a batch that does not divide a group.
  for fields, message in (
    ({'search__num_seeds': 3, 'parallel__seed_shards': 3},
     'config.parallel.seed_shards=3 does not divide the 4 device(s)'),
    ({'search__num_seeds': 2, 'parallel__seed_shards': 2, 'search__batch_size': 5},
     'config.search.batch_size=5 does not divide by the 2 devices of each seed group'),
  ):
    try:
      search_setup.build_search(tiny_search_config(**fields))
    except parallel.DeviceError as e:
      assert message in str(e), e
    else:
      raise AssertionError(f'{fields} was accepted')
  print('OK')
  """
)


def test_seeds_split_over_devices_equal_seeds_on_every_device_and_resume_across(tmp_path):
  run_on_devices(SCRIPT, 4, tmp_path)
  # This process has one device: the checkpoints of 2 and 4 devices read back here, as a search
  # run on a slice is read for retraining elsewhere, and give the genotypes the runs wrote.
  config = tiny_search_config(model__steps=1, model__multiplier=1)
  for name in ('everywhere', 'split'):
    state, _, _ = checkpointing.restore_raw(tmp_path / name / 'checkpoints')
    for k in range(2):
      genotype = derivation.search_genotype(
        jax.tree.map(lambda x, k=k: x[k], state['alphas']),
        jax.tree.map(lambda x, k=k: x[k], state['decisions']),
        method='darts',
        steps=config.model.steps,
        multiplier=config.model.multiplier,
      )
      written = json.loads((tmp_path / name / f'seed_{k}' / 'genotype.json').read_text())
      assert genotype == genotypes.genotype_from_json(written), (name, k)


@pytest.mark.parametrize(
  'fields, message',
  [
    (
      {'search__num_seeds': 3, 'parallel__seed_shards': 2},
      'config.parallel.seed_shards=2 is not allowed; allowed: a divisor of search.num_seeds=3',
    ),
    (
      {'search__num_seeds': 2, 'parallel__seed_shards': 2, 'search__seeds_program': 'loop'},
      "config.search.seeds_program='loop' is not allowed; allowed: 'auto' or 'vmap' when",
    ),
    ({'parallel__seed_shards': 0}, 'config.parallel.seed_shards=0 is not allowed'),
  ],
)
def test_seed_shards_that_cannot_work_are_refused(fields, message):
  with pytest.raises(ConfigError, match='^' + re.escape(message)):
    validate_search_config(tiny_search_config(**fields))
