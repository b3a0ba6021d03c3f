"""Data parallelism: 8 forced CPU devices give the state of 1 device; bad batch sizes fail clearly.

Runs in a subprocess because the device count must be fixed before JAX starts.
"""

import textwrap

from tests.testing import run_on_devices

SCRIPT = textwrap.dedent(
  """
  import jax, numpy as np
  from tests.testing import tiny_search_config
  from unreal_nas_jax import parallel
  from unreal_nas_jax.search import darts
  from unreal_nas_jax.search import setup as search_setup

  assert jax.device_count() == 8, jax.devices()
  # One node per cell: data parallelism does not depend on the cell, and the four programs (two
  # phases, one and eight devices) compile twice as fast as with two nodes.
  config = tiny_search_config(
    search__batch_size=16, data__num_examples=64, model__steps=1, model__multiplier=1
  )

  def three_steps(num_devices):
    mesh = parallel.make_mesh(num_devices)
    setup = search_setup.build_search(config, mesh)
    state = search_setup.init_state(setup)
    sums = parallel.replicate(darts.init_metrics(), mesh)
    for phase, epoch in (('warmup', 0), ('search', 1), ('search', 1)):
      step = search_setup.make_step_fn(setup, phase)
      inputs = search_setup.epoch_inputs(setup, epoch)
      state, sums = step(state, sums, setup.data, *inputs)
    return jax.device_get(state), jax.device_get(sums), state

  one, one_sums, _ = three_steps(1)
  eight, eight_sums, eight_state = three_steps(8)
  assert len(eight_state.params['classifier']['kernel'].sharding.device_set) == 8
  leaves = jax.tree_util.tree_leaves_with_path(one)
  for (path, a), b in zip(leaves, jax.tree.leaves(eight), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=jax.tree_util.keystr(path))
  assert np.abs(one.alphas['normal']).max() > 1e-4  # the alphas did move
  for key in ('train_loss', 'val_loss', 'steps'):
    np.testing.assert_allclose(one_sums[key], eight_sums[key], rtol=1e-5)

  try:
    search_setup.build_search(tiny_search_config(search__batch_size=12, data__num_examples=64))
  except parallel.DeviceError as e:
    assert 'config.search.batch_size=12 does not divide by the 8 devices' in str(e), e
  else:
    raise AssertionError('batch 12 on 8 devices was accepted')
  # SGAS grows the batch after each decision: every batch it will reach must divide too.
  grows = tiny_search_config(
    search__method='sgas', search__batch_size=16, search__sgas_batch_increase=4,
    data__num_examples=64,
  )
  try:
    search_setup.build_search(grows)
  except parallel.DeviceError as e:
    assert 'the batch after 1 SGAS decisions' in str(e) and '=20 does not divide' in str(e), e
  else:
    raise AssertionError('an SGAS batch growing to 20 on 8 devices was accepted')
  print('OK')
  """
)


def test_eight_devices_match_one_device():
  run_on_devices(SCRIPT, 8)
