"""`unreal-nas bench`: times the jitted search step after compilation, one JSON record per case.

Each record: case, order, hypergradient, batch, images/s (training images per second of search
step), median and min step ms, compile s, peak memory, device kind and count, and the sizes.
Compile time is reported beside step time because the supernet's compile is a real cost.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import ml_collections

from unreal_nas_jax.config_utils import load_config
from unreal_nas_jax.search import darts
from unreal_nas_jax.train import search_loop

BUILTIN_CASES = ('paper', 'small')


def builtin_config(case: str) -> ml_collections.ConfigDict:
  """'paper': C=16, 8 cells, batch 64, 32x32, 5000 classes; 'small': the quick preset."""
  if case == 'paper':
    return load_config('configs/search.py:rlrn')
  if case == 'small':
    return load_config('configs/search.py:rlrn,quick')
  raise ValueError(f'unknown bench case {case!r}; allowed: {", ".join(BUILTIN_CASES)}')


def _peak_memory() -> dict[str, Any]:
  stats = jax.local_devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    return {'peak_device_mb': round(stats['peak_bytes_in_use'] / 2**20, 1)}
  # CPU backends keep no device statistics: report the process's peak resident memory instead.
  return {'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def time_search_step(config: ml_collections.ConfigDict, steps: int) -> dict[str, Any]:
  """Compiles the search-phase step of `config` and times `steps` executions of it."""
  setup = search_loop.build_search(config)
  state = search_loop.init_state(setup)
  step_fn = search_loop.make_step_fn(setup, 'search')
  train_perm, val_perm, lr = search_loop.epoch_inputs(setup, 0)
  sums = darts.init_metrics()
  args = (state, sums, setup.data, train_perm, val_perm, lr)

  t0 = time.perf_counter()
  compiled = step_fn.lower(*args).compile()
  compile_s = time.perf_counter() - t0
  state, sums = compiled(*args)
  jax.block_until_ready(state)
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, sums = compiled(state, sums, setup.data, train_perm, val_perm, lr)
    jax.block_until_ready(state)
    times.append(time.perf_counter() - t0)
  median = statistics.median(times)
  device = jax.devices()[0]
  return {
    'order': config.search.order,
    'hypergradient': config.search.hypergradient if config.search.order == 2 else None,
    'batch': config.search.batch_size,
    'images_per_s': round(config.search.batch_size / median, 2),
    'median_step_ms': round(1000 * median, 2),
    'min_step_ms': round(1000 * min(times), 2),
    'compile_s': round(compile_s, 2),
    **_peak_memory(),
    'device_kind': device.device_kind,
    'platform': device.platform,
    'device_count': setup.mesh.devices.size,
    'channels': config.model.channels,
    'layers': config.model.layers,
    'image_size': config.data.image_size,
    'num_classes': config.data.num_classes,
    'depthwise_impl': config.model.depthwise_impl,
    'timed_steps': steps,
  }


def run_bench(
  config: ml_collections.ConfigDict | None,
  *,
  cases: Sequence[str] = BUILTIN_CASES,
  orders: Sequence[int] = (1, 2),
  steps: int = 5,
) -> Iterator[dict[str, Any]]:
  """Yields one record per (case, order): the given config, or the built-in sizes."""
  named = [('config', config)] if config is not None else [(c, builtin_config(c)) for c in cases]
  for order in orders:
    if order not in (1, 2):
      raise ValueError(f'bench order {order!r} is not allowed; allowed: 1, 2')
  for name, base in named:
    for order in orders:
      cfg = ml_collections.ConfigDict(base.to_dict())
      cfg.search.order = order
      yield {'case': name, **time_search_step(cfg, steps)}
