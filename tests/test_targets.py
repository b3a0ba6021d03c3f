"""Compiling for an accelerator that is not here (`unreal-nas bench --target`): the target names,
the records of deviceless compiles for each toolchain that is installed (libtpu; the CUDA plugin
and ptxas), a program that does not fit, the XLA:GPU abort the supernet's forms avoid, and the
one-line error where a toolchain is missing. The compile tests are skipped, with the reason,
where their toolchain is not installed (`pip install '.[tpu-aot,gpu-aot]'`; CI runs them in a
venv of their own)."""

import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from unreal_nas_jax import bench, targets, timing
from unreal_nas_jax.config_utils import load_config
from unreal_nas_jax.models.layers import FactorizedReduce
from unreal_nas_jax.search import setup as search_setup

TARGETS = ('tpu:v5e', 'gpu:h100')


def _tiny_search_config():
  config = load_config('configs/search.py:rlrn,quick')
  config.data.num_examples, config.data.num_classes, config.data.image_size = 32, 10, 8
  config.model.channels, config.model.layers = 4, 3
  config.model.steps, config.model.multiplier = 2, 2
  config.search.batch_size = 8
  return config


@functools.cache
def _mesh_or_reason(spec: str):
  targets.prepare_environment()
  try:
    return targets.target_mesh(targets.parse_target(spec)), None
  except targets.TargetError as e:
    return None, str(e)


def _require(spec: str):
  mesh, reason = _mesh_or_reason(spec)
  if mesh is None:
    pytest.skip(reason)
  return mesh


@pytest.mark.parametrize(
  'spec, chips, platform',
  [
    ('tpu:v5e', 1, 'tpu'),
    ('tpu:v5e:2x4', 8, 'tpu'),
    ('gpu:h200:8', 8, 'gpu'),
    ('GPU:H100', 1, 'gpu'),
  ],
)
def test_target_names(spec, chips, platform):
  target = targets.parse_target(spec)
  assert (target.num_chips, target.platform) == (chips, platform)


@pytest.mark.parametrize(
  'spec, message',
  [
    ('tpu', "--target='tpu' is not allowed; allowed: tpu:<chip>[:<topology>]"),
    ('tpu:v9', "unknown tpu 'v9'"),
    ('gpu:v5e', "unknown gpu 'v5e'"),
    ('tpu:v5e:2by2', "topology '2by2' is not allowed"),
    ('gpu:h100:16', "GPU count '16' is not allowed; allowed: 1 to 8"),
  ],
)
def test_bad_target_names_are_one_line_errors(spec, message):
  with pytest.raises(targets.TargetError, match=message.replace('[', r'\[').replace(']', r'\]')):
    targets.parse_target(spec)


@pytest.mark.parametrize('spec', TARGETS)
def test_deviceless_compile_record_of_a_search_step(spec):
  _require(spec)
  (record,) = bench.run_bench(_tiny_search_config(), cases=['steps'], orders=(1,), target=spec)
  assert record['target'] == spec and record['platform'] == spec.split(':')[0]
  assert record['device_count'] == 1 and record['hlo_ops'] > 1000
  assert record['compile_s'] > 0 and record['lower_s'] > 0
  assert 0 < record['peak_memory_gb'] < 1 and record['fits'] is True
  assert record['gflop'] > 0 and record['bytes_gb'] > 0
  assert record['cost_source'] == ('compiler' if spec.startswith('tpu') else 'xla_generic')
  # The roofline bound is the larger of the two bounds, from the peak figures it names.
  chip = targets.CHIPS[spec.split(':')[1]]
  assert record['hbm_gb_per_s'] == chip.hbm_gb_per_s
  assert record['memory_bound_ms'] == pytest.approx(
    record['bytes_gb'] / chip.hbm_gb_per_s * 1e3, rel=0.02, abs=1e-3
  )
  assert record['roofline_ms'] == max(record['memory_bound_ms'], record['compute_bound_ms'])
  # Only the TPU compiler writes a cycle estimate into its kernels.
  if spec.startswith('tpu'):
    assert record['estimated_cycles'] > 10_000
  else:
    assert 'estimated_cycles' not in record
  # The accelerators' supernet form, not the CPU's.
  assert record['depthwise_impl'] == 'xla'
  assert record['xla_optimization_level'] == 'O0'  # the quick preset's


def test_optimization_level_reaches_the_tpu_compiler():
  # O0 is the quick preset's level: the TPU compiler then keeps no buffer in on-chip memory
  # (memory space S(1) in the compiled program); its default places many there.
  mesh = _require('tpu:v5e')
  programs = {}
  for level in ('default', 'O0'):
    config = _tiny_search_config()
    config.parallel.xla_optimization_level = level
    setup = search_setup.build_search(config, mesh, abstract=True)
    step = search_setup.make_step_fn(setup, 'search')
    programs[level] = step.lower(*search_setup.abstract_step_args(setup)).compile().as_text()
  assert programs['default'].count('S(1)') > 10
  assert 'S(1)' not in programs['O0']
  # What O0 gives up, by the compiler's own estimate: slower kernels.
  cycles = {level: targets.kernel_cycles(text) for level, text in programs.items()}
  assert cycles['O0'] > 1.5 * cycles['default'] > 0


def test_kernel_cycles_count_each_while_body_its_trip_count_times():
  program = """HloModule m

%body (p: f32[]) -> f32[] {
  %a = f32[] fusion(%p), kind=kLoop, calls=%f, backend_config={"estimated_cycles":"10"}
}

%f (q: f32[]) -> f32[] {
  %n = f32[] negate(%q), backend_config={"estimated_cycles":"999"}
}

ENTRY %main (x: f32[]) -> f32[] {
  %w = f32[] while(%x), condition=%c, body=%body, backend_config={"known_trip_count":{"n":"7"}}
  %u = f32[] while(%w), condition=%c, body=%body, backend_config={}
  %y = f32[] fusion(%u), kind=kLoop, calls=%f, backend_config={"estimated_cycles":"5"}
  %z = f32[] fusion(%y), kind=kLoop, calls=%f, backend_config={"estimated_cycles":"1152921504606846976"}
}
"""
  # A fusion's own estimate counts, not the kernels inside its body; an unknown trip count is one;
  # the cost model's placeholder for a kernel it cannot estimate (2**60) counts nothing.
  assert targets.kernel_cycles(program) == 7 * 10 + 10 + 5
  assert targets.kernel_cycles('HloModule m') is None


def test_data_parallel_target_splits_the_batch_over_its_chips():
  _require('tpu:v5e:2x2')
  config = _tiny_search_config()
  (one,) = bench.run_bench(config, cases=['steps'], orders=(1,), target='tpu:v5e')
  (four,) = bench.run_bench(config, cases=['steps'], orders=(1,), target='tpu:v5e:2x2')
  assert four['device_count'] == 4 and four['batch'] == one['batch'] == 8
  # Per chip: a quarter of the examples' activations, the same weights.
  assert four['bytes_gb'] < one['bytes_gb']


def test_seeds_split_over_chips_give_each_chip_one_seeds_program():
  # `parallel.seed_shards=4`: each of 4 chips holds and steps one of 4 seeds, so per chip the
  # program is about one seed's on one chip (4 seeds on one chip: about 4 times its bytes).
  _require('tpu:v5e:2x2')
  (one,) = bench.run_bench(_tiny_search_config(), cases=['steps'], orders=(1,), target='tpu:v5e')
  config = _tiny_search_config()
  config.search.num_seeds, config.parallel.seed_shards = 4, 4
  (split,) = bench.run_bench(config, cases=['steps'], orders=(1,), target='tpu:v5e:2x2')
  assert (split['seed_shards'], split['seeds_program'], split['batch']) == (4, 'vmap', 32)
  assert split['argument_memory_gb'] == one['argument_memory_gb']
  assert split['peak_memory_gb'] <= 1.2 * one['peak_memory_gb']
  assert split['bytes_gb'] <= 1.2 * one['bytes_gb']


@pytest.mark.parametrize('spec', TARGETS)
def test_a_program_that_does_not_fit_is_reported_not_raised(spec):
  mesh = _require(spec)
  target = targets.parse_target(spec)
  side = 40_000 if target.platform == 'tpu' else 110_000  # 6.4 or 48 GB per operand, float32
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  x = jax.ShapeDtypeStruct((side, side), jnp.float32, sharding=sharding)
  record = bench._compile_for_target(
    jax.jit(lambda a, b: (a @ b, a + b)),
    (x, x),
    target=target,
    mesh=mesh,
    timer=timing.Phases(),
    compute_dtype='float32',
  )
  assert record['fits'] is False
  if 'needed_gb' in record:  # the TPU compiler refuses it and says how much it needs
    assert record['needed_gb'] > record['available_gb'] > 0.9 * target.chip.memory_gb
    assert 'RESOURCE_EXHAUSTED' in record['compile_error']
  else:
    assert record['peak_memory_gb'] > target.chip.memory_gb


@pytest.mark.parametrize('spec', ['gpu:h100', 'gpu:h200'])
def test_factorized_reduce_of_a_cell_output_compiles_for_gpus(spec):
  # The pattern that aborted XLA:GPU's Triton GEMM fusion with jaxlib 0.10.2 (every search and
  # retraining step): ReLU of a concatenation of slices, the two offset pixel grids through 1x1
  # convolutions, BatchNorm, gradients. Compiled with FactorizedReduce's own form; an abort would
  # end the test process.
  mesh = _require(spec)
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  module = FactorizedReduce(32)
  stacked = jnp.zeros((4, 8, 16, 16, 8))
  variables = jax.eval_shape(
    lambda: module.init(jax.random.PRNGKey(0), jnp.concatenate(list(stacked), -1), True)
  )

  def loss(variables, stacked):
    x = jnp.concatenate([stacked[i] for i in range(4)], -1)
    y, _ = module.apply(variables, x, True, mutable=['batch_stats'])
    return jnp.mean(y**2)

  abstract = jax.tree.map(
    lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), (variables, stacked)
  )
  jax.jit(jax.grad(loss, argnums=(0, 1))).lower(*abstract).compile()


@pytest.mark.parametrize('spec', TARGETS)
def test_missing_toolchain_is_one_line_naming_the_extra(spec):
  if _mesh_or_reason(spec)[0] is not None:
    pytest.skip(f'the {spec} toolchain is installed here')
  result = subprocess.run(
    [sys.executable, '-m', 'unreal_nas_jax.cli.main', 'bench', f'--target={spec}'],
    capture_output=True,
    text=True,
  )
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('unreal-nas bench: error: compiling for')
  assert f'pip install "unreal_nas_jax[{spec.split(":")[0]}-aot]"' in lines[0]
