"""`unreal-nas bench`: times the jitted steps, one JSON record per case.

Step records (search and retraining): case, order, hypergradient, batch, images/s, median and
min step ms, and where the time before the first step goes: `data_s` (building the dataset),
`init_s` (the jitted initialisation), `lower_s` (tracing and lowering in Python, which no compile
cache saves), `hlo_ops` (the lowered program's StableHLO operations: its size, which drives
compile time), `compile_s` and `first_step_s`; peak memory, device kind and count, and the sizes.

Data records (case 'data', one per dataset): the one-off cost of building the dataset (for rlgd:
the category search and the rendering, in images/s) and the per-step data cost, the time the
jitted batch function takes to produce one train and one val batch, which the search step
includes. Datasets read through tfds are skipped, with the reason, when they are not prepared.

With a target (`--target=tpu:v5e:2x4`, `gpu:h100`; `unreal_nas_jax.targets`) nothing runs: each
step case is lowered from shapes on a mesh of that machine's devices and compiled by its
compiler, here, without the device; the record then holds `target`, `compile_s`, the device
memory (peak, temporary, arguments) and whether it `fits`, flops and bytes per step, and the
roofline lower bound of the step time with the peak figures it used; on a TPU also the sum of
its compiler's per-kernel cycle estimates (`estimated_cycles`).

The 'torch_reference' case times the DARTS reference's first-order search step in PyTorch at the
paper's size on the same machine (`unreal_nas_jax/torch_reference.py`; needs torch installed).
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import ml_collections

from unreal_nas_jax import parallel, targets, timing
from unreal_nas_jax.config_utils import ConfigError, load_config
from unreal_nas_jax.data import search_data, tfds_cifar
from unreal_nas_jax.ops.depthwise import resolve_depthwise_impl
from unreal_nas_jax.search import seeds
from unreal_nas_jax.search import setup as search_setup
from unreal_nas_jax.search.validate import validate_search_config

BUILTIN_CASES = (
  'paper',
  'small',
  'sgas',
  'pc_darts',
  'data',
  'train_cifar',
  'train_imagenet',
  'torch_reference',
  'checkpoint',
)
CONFIG_CASES = ('steps', 'data', 'seeds')  # with a config: its search steps, dataset, N seeds
# What a compile-only target can do: the step cases (nothing runs, so no data, seeds or torch).
TARGET_CASES = ('paper', 'small', 'sgas', 'pc_darts', 'train_cifar', 'train_imagenet')
TARGET_DEFAULT_CASES = ('paper', 'train_cifar')
DATA_CASE_DATASETS = ('rlrn', 'rlgd', 'rlrd', 'cifar10')


def builtin_config(case: str) -> ml_collections.ConfigDict:
  """'paper': C=16, 8 cells, batch 64, 32x32, 5000 classes; 'small': the quick preset; 'sgas',
  'pc_darts': the paper size with those methods' presets (SGAS at its first batch, 64; PC-DARTS
  at its 256), first order;
  'train_cifar': DARTS_V2 in the CIFAR-10 network (C=36, 20 cells, batch 96); 'train_imagenet':
  DARTS_V2 in the ImageNet network (C=48, 14 cells, 224x224, batch 128 as in DARTS)."""
  if case == 'paper':
    return load_config('configs/search.py:rlrn')
  if case == 'small':
    return load_config('configs/search.py:rlrn,quick')
  if case in ('sgas', 'pc_darts'):
    return load_config(f'configs/search.py:rlrn,{case}')
  if case in ('train_cifar', 'train_imagenet'):
    config = load_config(
      f'configs/train.py:{"cifar10" if case == "train_cifar" else "imagenet"},fake_data'
    )
    config.genotype = 'DARTS_V2'
    if case == 'train_imagenet':
      config.train.batch_size = 128
    return config
  raise ValueError(f'unknown bench case {case!r}; allowed: {", ".join(BUILTIN_CASES)}')


def _peak_memory() -> dict[str, Any]:
  stats = jax.local_devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    return {'peak_device_mb': round(stats['peak_bytes_in_use'] / 2**20, 1)}
  # CPU backends keep no device statistics: report the process's peak resident memory instead.
  return {'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _time_step(
  step_fn, state, sums, inputs, *, steps: int, batch: int, mesh, timer: timing.Phases
) -> dict[str, Any]:
  """Lowers, compiles and times `step_fn(state, sums, *inputs) -> (state, sums)`.

  Program size and compile time are reported beside the step time because for these programs
  they are real costs: `lower_s` (tracing and lowering in Python, which no cache saves),
  `hlo_ops` (StableHLO operations of the lowered program), `compile_s` and `first_step_s`.
  """
  with timer('lower step') as line:
    lowered = step_fn.lower(state, sums, *inputs)
    hlo_ops = timing.count_ops(lowered)
    line.info = f'{hlo_ops:,} ops'
  with timer('compile step'):
    compiled = lowered.compile()
  with timer('first step'):
    state, sums = jax.block_until_ready(compiled(state, sums, *inputs))
  times = []
  with timer(f'{steps} timed steps'):
    for _ in range(steps):
      t0 = time.perf_counter()
      state, sums = compiled(state, sums, *inputs)
      jax.block_until_ready(state)
      times.append(time.perf_counter() - t0)
  timer.close()
  lower_s, compile_s = timer.seconds['lower step'], timer.seconds['compile step']
  first_step_s = timer.seconds['first step']
  median = statistics.median(times)
  device = jax.devices()[0]
  return {
    'batch': batch,
    'images_per_s': round(batch / median, 2),
    'median_step_ms': round(1000 * median, 2),
    'min_step_ms': round(1000 * min(times), 2),
    'lower_s': round(lower_s, 2),
    'hlo_ops': hlo_ops,
    'compile_s': round(compile_s, 2),
    'first_step_s': round(first_step_s, 2),
    **_peak_memory(),
    'device_kind': device.device_kind,
    'platform': device.platform,
    'device_count': mesh.devices.size,
    'timed_steps': steps,
  }


def _compile_for_target(
  step_fn, args, *, target: targets.Target, mesh, timer: timing.Phases, compute_dtype: str
) -> dict[str, Any]:
  """Lowers and compiles `step_fn(*args)` for `target`'s devices (nothing runs): the compiler's
  time, the program's device memory, flops and bytes, and the roofline bound."""
  with timer('lower step') as line:
    lowered = step_fn.lower(*args)
    hlo_ops = timing.count_ops(lowered)
    line.info = f'{hlo_ops:,} ops'
  analysis: dict[str, Any]
  with timer(f'compile step for {target.spec}'):
    try:
      compiled = lowered.compile()
    except Exception as e:  # noqa: BLE001 - only the compiler's out-of-memory refusal is a result
      analysis = targets.out_of_memory(e, target)
      if analysis is None:
        raise
    else:
      analysis = targets.analyse(compiled, target, compute_dtype)
  timer.close()
  device = mesh.devices.flat[0]
  return {
    'target': target.spec,
    'device_kind': device.device_kind,
    'platform': device.platform,
    'device_count': mesh.devices.size,
    'lower_s': round(timer.seconds['lower step'], 2),
    'hlo_ops': hlo_ops,
    'compile_s': round(timer.seconds[f'compile step for {target.spec}'], 2),
    **analysis,
  }


def time_search_step(
  config: ml_collections.ConfigDict, steps: int, target: targets.Target | None = None
) -> dict[str, Any]:
  """Builds, initialises, lowers, compiles and times `steps` search-phase steps of `config`;
  with a `target`, compiles the step for it from shapes instead (nothing built or run)."""
  validate_search_config(config)
  timer = timing.Phases()
  header = {
    'method': config.search.method,
    'num_seeds': config.search.num_seeds,
    'order': config.search.order,
    'hypergradient': config.search.hypergradient if config.search.order == 2 else None,
    'xla_optimization_level': config.parallel.xla_optimization_level,
  }
  sizes = {
    'channels': config.model.channels,
    'layers': config.model.layers,
    'image_size': config.data.image_size,
    'num_classes': config.data.num_classes,
  }
  batch = config.search.batch_size * config.search.num_seeds
  if target is not None:
    mesh = targets.target_mesh(target)
    setup = search_setup.build_search(config, mesh, abstract=True)
    _check_one_program(setup)
    record = _compile_for_target(
      search_setup.make_step_fn(setup, 'search'),
      search_setup.abstract_step_args(setup),
      target=target,
      mesh=mesh,
      timer=timer,
      compute_dtype=config.model.compute_dtype,
    )
    return {**header, **_seeds_field(setup), 'batch': batch, **record, **sizes,
            'depthwise_impl': setup.model.depthwise_impl, 'edge_form': setup.model.edge_form,
            'compute_dtype': config.model.compute_dtype}  # fmt: skip
  with timer('build data', config.data.name):
    setup = search_setup.build_search(config)
    jax.block_until_ready(setup.data)
  _check_one_program(setup)
  with timer('init state'):
    state = jax.block_until_ready(search_setup.init_state(setup))
  data_s, init_s = timer.seconds['build data'], timer.seconds['init state']
  step_fn = search_setup.make_step_fn(setup, 'search')
  inputs = (setup.data, *search_setup.epoch_inputs(setup, 0))
  timing_record = _time_step(
    step_fn,
    state,
    search_setup.init_sums(setup),
    inputs,
    steps=steps,
    batch=batch,
    mesh=setup.mesh,
    timer=timer,
  )
  return {
    **header,
    **_seeds_field(setup),
    **timing_record,
    'data_s': round(data_s, 2),
    'init_s': round(init_s, 2),
    **sizes,
    'depthwise_impl': resolve_depthwise_impl(setup.model.depthwise_impl),
  }


def _check_one_program(setup) -> None:
  if setup.num_seeds > 1 and setup.seeds_program == 'loop':
    raise ConfigError(
      f'bench times one program per step; config.search.seeds_program={setup.seeds_program!r} '
      f'runs {setup.num_seeds} programs: set it to vmap or map, or use --cases=seeds'
    )


def _seeds_field(setup) -> dict[str, Any]:
  if setup.num_seeds == 1:
    return {}
  return {'seeds_program': setup.seeds_program, 'seed_shards': parallel.seed_shards(setup.mesh)}


def time_seeds(config: ml_collections.ConfigDict, steps: int) -> dict[str, Any]:
  """N searches as one program ('vmap' and 'map') against one search's step run N times (the
  'loop' form), one record. N is `config.search.num_seeds`, or 4 when the config has one seed."""
  n = config.search.num_seeds if config.search.num_seeds > 1 else 4
  record: dict[str, Any] = {'num_seeds': n, 'auto': seeds.seeds_program('auto')}
  for count, program in ((1, None), (n, 'vmap'), (n, 'map')):
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.search.num_seeds = count
    cfg.search.seeds_program = program or 'auto'
    record[program or 'single_seed'] = time_search_step(cfg, steps)
  sequential_s = n * record['single_seed']['median_step_ms'] / 1000
  record['sequential_step_s'] = round(sequential_s, 3)
  for program in ('vmap', 'map'):
    step_s = record[program]['median_step_ms'] / 1000
    record[f'{program}_speedup_vs_sequential'] = round(sequential_s / step_s, 2)
  return record


def time_train_step(
  config: ml_collections.ConfigDict, steps: int, target: targets.Target | None = None
) -> dict[str, Any]:
  """Compiles the retraining step of a train config and times it on one fake batch; with a
  `target`, compiles it for that machine from shapes instead."""
  from unreal_nas_jax.data import pipeline
  from unreal_nas_jax.train import retrain, retrain_step

  input_rate = _input_rate(config, steps) if target is None else {}
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.fake_data = True  # the step's cost, not the input pipeline's
  mesh = targets.target_mesh(target) if target is not None else None
  setup = retrain.build_train(config, mesh)
  train_fn, _ = retrain.make_steps(setup)
  header = {'network': config.data.name, 'genotype': config.genotype}
  sizes = {
    'channels': config.model.channels,
    'layers': config.model.layers,
    'image_size': config.data.image_size,
    'compute_dtype': config.model.compute_dtype,
    'xla_optimization_level': config.parallel.xla_optimization_level,
  }
  timer = timing.Phases()
  if target is not None:
    scalar = parallel.abstract(jax.ShapeDtypeStruct((), jax.numpy.float32), setup.mesh)
    batch = parallel.abstract(
      pipeline.batch_shapes(setup.spec), setup.mesh, jax.sharding.PartitionSpec('data')
    )
    args = (
      retrain.abstract_state(setup),
      parallel.abstract_replicated(retrain_step.epoch_sums, setup.mesh),
      batch,
      scalar,
      scalar,
    )
    record = _compile_for_target(
      train_fn,
      args,
      target=target,
      mesh=setup.mesh,
      timer=timer,
      compute_dtype=config.model.compute_dtype,
    )
    return {**header, 'batch': config.train.batch_size, **record, **sizes}
  batches = pipeline.host_batches(setup.spec, 'train', 0)
  batch = next(pipeline.global_batches(batches, setup.mesh))
  with timer('init state'):
    state = jax.block_until_ready(retrain.init_state(setup))
  init_s = timer.seconds['init state']
  timing_record = _time_step(
    train_fn,
    state,
    retrain_step.epoch_sums(),
    (batch, jax.numpy.float32(0.01), jax.numpy.float32(0.1)),
    steps=steps,
    batch=config.train.batch_size,
    mesh=setup.mesh,
    timer=timer,
  )
  return {**header, **timing_record, 'init_s': round(init_s, 2), **sizes, **input_rate}


def _input_rate(config: ml_collections.ConfigDict, steps: int) -> dict[str, Any]:
  """The config's input pipeline on this host, beside its step: images/s and where it runs (fake
  data when the config asks for it; a dataset that is not prepared gives the reason)."""
  from unreal_nas_jax.data import pipeline
  from unreal_nas_jax.train import retrain

  try:
    setup = retrain.build_train(config)
    rate = pipeline.measure_rate(setup.spec, max(steps, 5), setup.mesh)
  except ConfigError as e:
    return {'input_skipped': str(e).splitlines()[0]}
  return {
    'input_images_per_s': rate['images_per_s'],
    'input_path': 'fake' if config.data.fake_data else rate['path'],
    'input_first_batch_s': rate['first_batch_s'],
  }


def time_checkpoints(repeats: int = 3) -> Iterator[dict[str, Any]]:
  """Seconds per save and per restore of the paper-size search state and the CIFAR retraining
  state (`train.run.Run` saves: state plus epoch sums), into a temporary local directory."""
  import tempfile

  from unreal_nas_jax import checkpointing, parallel
  from unreal_nas_jax.train import retrain, retrain_step

  paper = builtin_config('paper')
  paper_setup = search_setup.build_search(paper)
  train_setup = retrain.build_train(builtin_config('train_cifar'))
  states = {
    'search_paper': lambda: {
      'state': search_setup.init_state(paper_setup),
      'sums': search_setup.init_sums(paper_setup),
    },
    'train_cifar': lambda: {
      'state': retrain.init_state(train_setup),
      'sums': parallel.replicate(retrain_step.epoch_sums(), train_setup.mesh),
    },
  }
  for name, make in states.items():
    items = jax.block_until_ready(make())
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                            items)  # fmt: skip
    nbytes = sum(x.nbytes for x in jax.tree.leaves(items))
    with tempfile.TemporaryDirectory() as directory:
      manager = checkpointing.make_manager(directory)
      saves = []
      for step in range(1, repeats + 1):
        t0 = time.perf_counter()
        checkpointing.save(manager, step, items, {'epoch': step})
        saves.append(time.perf_counter() - t0)
      t0 = time.perf_counter()
      checkpointing.restore(manager, repeats, abstract)
      restore_s = time.perf_counter() - t0
      manager.close()
    yield {
      'case': 'checkpoint',
      'state': name,
      'megabytes': round(nbytes / 2**20, 1),
      'save_s': round(statistics.median(saves), 3),
      'restore_s': round(restore_s, 3),
      'saves': repeats,
    }


def _timed(fn, *args):
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return out, time.perf_counter() - t0


def time_data(config: ml_collections.ConfigDict, steps: int) -> dict[str, Any]:
  """The build cost and the per-step batch cost of `config`'s dataset (one record)."""
  validate_search_config(config)
  d = config.data
  record: dict[str, Any] = {
    'dataset': d.name,
    'num_examples': d.num_examples,
    'image_size': d.image_size,
    'batch': config.search.batch_size,
  }
  try:
    # The first build includes compiling the generators; the parts are then timed compiled.
    data, build_s = _timed(search_data.make_search_data, d, config.data_seed)
  except tfds_cifar.DatasetNotPreparedError as e:
    return {**record, 'skipped': str(e)}
  record['build_s'] = round(build_s, 2)
  if d.name == 'rlgd':
    (categories, _), search_s = _timed(search_data.fractal_categories, d, config.data_seed, None)
    _, render_s = _timed(search_data.render_fractals, d, config.data_seed, categories)
    record['fractal_categories'] = d.fractal_categories
    record['category_search_s'] = round(search_s, 2)
    record['render_images_per_s'] = round(d.num_examples / render_s, 1)

  def both_batches(arrays, indices, step):
    key = jax.random.fold_in(jax.random.PRNGKey(0), step)
    return data.batch_fn(arrays, indices, 'train', key), data.batch_fn(arrays, indices, 'val', key)

  batches = jax.jit(both_batches)
  perm, _ = search_data.epoch_permutations(0, 0, d.num_examples)
  batch = config.search.batch_size
  jax.block_until_ready(batches(data.arrays, perm[:batch], 0))
  times = [
    _timed(batches, data.arrays, perm[i * batch : (i + 1) * batch], i)[1]
    for i in range(1, max(steps, 3) + 1)
  ]
  record['step_data_ms'] = round(1000 * statistics.median(times), 3)
  device = jax.devices()[0]
  record['device_kind'], record['platform'] = device.device_kind, device.platform
  return record


def run_bench(
  config: ml_collections.ConfigDict | None,
  *,
  cases: Sequence[str] | None = None,
  orders: Sequence[int] = (1, 2),
  steps: int = 5,
  target: str | None = None,
) -> Iterator[dict[str, Any]]:
  """Yields the records of `cases`.

  Without a config the cases are built-in: 'paper' and 'small' (search steps of those sizes) and
  'data' (every dataset at the paper's size). With a config: 'steps' (its search steps) and
  'data' (its dataset). `cases=None` runs all of them. `target` (e.g. 'tpu:v5e:2x4') compiles
  the step cases for that machine instead of timing them here (`TARGET_CASES`; default
  `TARGET_DEFAULT_CASES`, or the config's steps).
  """
  for order in orders:
    if order not in (1, 2):
      raise ConfigError(f'bench order {order!r} is not allowed; allowed: 1, 2')
  compile_for = targets.parse_target(target) if target is not None else None
  if compile_for is not None:
    allowed = ('steps',) if config is not None else TARGET_CASES
    default = allowed if config is not None else TARGET_DEFAULT_CASES
  else:
    allowed = CONFIG_CASES if config is not None else BUILTIN_CASES
    default = allowed
  cases = default if cases is None else tuple(cases)
  for case in cases:
    if case not in allowed:
      with_config = 'with' if config is not None else 'without'
      which = ' and --target' if compile_for is not None else ''
      raise ConfigError(
        f'bench case {case!r} is not allowed {with_config} --config{which}; allowed: '
        f'{", ".join(allowed)}'
      )
  if config is not None and 'train' in config:
    # A retraining config (configs/train.py): its step is the only case.
    yield {'case': 'config', **time_train_step(config, steps, compile_for)}
    return
  if 'data' in cases:
    if config is not None:
      yield {'case': 'data', **time_data(config, steps)}
    else:
      for dataset in DATA_CASE_DATASETS:
        yield {'case': 'data', **time_data(load_config(f'configs/search.py:{dataset}'), steps)}
  if config is not None and 'seeds' in cases and 'train' not in config:
    yield {'case': 'seeds', **time_seeds(config, steps)}
  if config is not None:
    named = [('config', config)] if 'steps' in cases else []
  else:
    named = [(c, builtin_config(c)) for c in cases if c in ('paper', 'small', 'sgas', 'pc_darts')]
  for name, base in named:
    first_order_only = base.search.method != 'darts'  # SGAS and PC-DARTS are first order
    for order in (1,) if first_order_only else orders:
      cfg = ml_collections.ConfigDict(base.to_dict())
      cfg.search.order = order
      yield {'case': name, **time_search_step(cfg, steps, compile_for)}
  if config is None:
    for case in cases:
      if case.startswith('train_'):
        yield {'case': case, **time_train_step(builtin_config(case), steps, compile_for)}
    if 'checkpoint' in cases:
      yield from time_checkpoints()
    if 'torch_reference' in cases:
      from unreal_nas_jax import torch_reference

      yield {'case': 'torch_reference', **torch_reference.time_in_subprocess(steps)}
