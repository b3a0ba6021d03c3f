"""Accelerators to compile for without owning one: `unreal-nas bench --target=tpu:v5e:2x4`.

JAX compiles ahead of time for devices that are not there: a TPU through `libtpu` (its
compile-only topologies) and an NVIDIA GPU through the CUDA PJRT plugin with a
`GpuTargetConfigProto` device description (kept in `unreal_nas_jax/target_specs/`). The program
is lowered from `ShapeDtypeStruct` inputs that carry `NamedSharding`s on a mesh of those devices
and compiled by the real compiler, so its compile time, device memory and (TPU) cost analysis
are the ones a user would see on the chip. Nothing runs.

A target is `tpu:<chip>[:<topology>]` (chips: v5e, v6e, v5p; topology in chips, e.g. 2x2 or
2x4 for a v5e-8; default one chip) or `gpu:<name>[:<count>]` (h100, h200; count GPUs of one
host, default 1). Several chips compile the program a run would use there: the batch split on
the `data` axis, the state replicated (or N seeds split over a `seeds` axis in front, with
`config.parallel.seed_shards`); figures are per chip.

The toolchains are optional extras: `pip install 'unreal_nas_jax[tpu-aot]'` (libtpu) and
`'unreal_nas_jax[gpu-aot]'` (jax-cuda12-plugin for the jaxlib installed, and ptxas from
nvidia-cuda-nvcc-cu12). `prepare_environment` must run before JAX starts a backend.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import os
import re
import sys
from typing import Any

SPECS_PACKAGE = 'unreal_nas_jax.target_specs'


class TargetError(ValueError):
  """A target that cannot be compiled for here (one-line message: what to install or allow)."""


@dataclasses.dataclass(frozen=True)
class Chip:
  """One accelerator chip's public figures, for `fits` and the roofline bound.

  Attributes:
    name: the name in a target ('v5e', 'h100').
    platform: 'tpu' or 'gpu'.
    memory_gb: device memory per chip (HBM), GB (1e9 bytes): the TPU's 16/32/95 GiB, the GPU
      description's `device_memory_size`. A TPU program that needs more does not compile (the
      record then has the compiler's `needed_gb` and `available_gb`).
    hbm_gb_per_s: its bandwidth, GB/s.
    bf16_tflops: dense bfloat16 matrix peak, TFLOP/s.
    f32_tflops: what a float32 matrix product peaks at under JAX's default precision there: on a
      TPU a single bfloat16 pass (the bfloat16 peak), on an H100/H200 TF32 tensor cores.
    description: GPU: the `GpuTargetConfigProto` file in `target_specs/`.
    topology: TPU: libtpu's name of the chip generation in a topology ('v5e').
    figures: where the figures come from.
  """

  name: str
  platform: str
  memory_gb: float
  hbm_gb_per_s: float
  bf16_tflops: float
  f32_tflops: float
  description: str = ''
  topology: str = ''
  figures: str = ''


CHIPS = {
  chip.name: chip
  for chip in (
    Chip('v5e', 'tpu', 17.18, 819.0, 197.0, 197.0, topology='v5e',
         figures='Cloud TPU v5e: 197 TFLOP/s bf16, 16 GiB HBM2 at 819 GB/s per chip'),
    Chip('v6e', 'tpu', 34.36, 1640.0, 918.0, 918.0, topology='v6e',
         figures='Cloud TPU v6e (Trillium): 918 TFLOP/s bf16, 32 GiB HBM at 1,640 GB/s per chip'),
    Chip('v5p', 'tpu', 102.0, 2765.0, 459.0, 459.0, topology='v5p',
         figures='Cloud TPU v5p: 459 TFLOP/s bf16, 95 GiB HBM2e at 2,765 GB/s per chip'),
    Chip('h100', 'gpu', 84.98, 3350.0, 989.0, 494.0, description='h100_sxm.txtpb',
         figures='H100 SXM: 989 TFLOP/s dense bf16, 494 dense TF32, 80 GB HBM3 at 3.35 TB/s'),
    Chip('h200', 'gpu', 150.75, 4800.0, 989.0, 494.0, description='h200_sxm.txtpb',
         figures='H200 SXM: 989 TFLOP/s dense bf16, 494 dense TF32, 141 GB HBM3e at 4.8 TB/s'),
  )
}  # fmt: skip

_TOPOLOGY = re.compile(r'^\d+(x\d+){1,2}$')


@dataclasses.dataclass(frozen=True)
class Target:
  """A parsed `--target`: a chip and how many of them (TPU: a topology of chips)."""

  spec: str
  chip: Chip
  topology: str  # TPU: '2x2' / '2x2x1'; GPU: the GPU count as a string
  num_chips: int

  @property
  def platform(self) -> str:
    return self.chip.platform


def parse_target(spec: str) -> Target:
  """'tpu:v5e', 'tpu:v5e:2x4', 'gpu:h100', 'gpu:h200:8' -> Target; TargetError otherwise."""
  parts = spec.strip().lower().split(':')
  allowed = (
    'tpu:<chip>[:<topology>] (chips: '
    + ', '.join(c.name for c in CHIPS.values() if c.platform == 'tpu')
    + '; e.g. tpu:v5e:2x4) or gpu:<name>[:<count>] (names: '
    + ', '.join(c.name for c in CHIPS.values() if c.platform == 'gpu')
    + '; e.g. gpu:h100:8)'
  )
  if len(parts) not in (2, 3) or parts[0] not in ('tpu', 'gpu'):
    raise TargetError(f'--target={spec!r} is not allowed; allowed: {allowed}')
  platform, name = parts[0], parts[1]
  chip = CHIPS.get(name)
  if chip is None or chip.platform != platform:
    raise TargetError(f'--target={spec!r}: unknown {platform} {name!r}; allowed: {allowed}')
  if platform == 'tpu':
    topology = parts[2] if len(parts) == 3 else '1x1'
    if not _TOPOLOGY.match(topology):
      raise TargetError(
        f'--target={spec!r}: topology {topology!r} is not allowed; allowed: chips per axis, '
        'e.g. 1x1, 2x2, 2x4 (v5e, v6e) or 2x2x1 (v5p)'
      )
    count = 1
    for n in topology.split('x'):
      count *= int(n)
  else:
    topology = parts[2] if len(parts) == 3 else '1'
    if not topology.isdigit() or not 1 <= int(topology) <= 8:
      raise TargetError(
        f'--target={spec!r}: GPU count {topology!r} is not allowed; allowed: 1 to 8 (one host)'
      )
    count = int(topology)
  return Target(spec, chip, topology, count)


def prepare_environment() -> None:
  """Settings a compile-only run needs before JAX starts: the CPU as the only backend (there is
  no device; the topologies come from the plugins), libtpu told not to look for a TPU VM's
  metadata server or other hosts, and allowed to load beside another compiling process."""
  os.environ['JAX_PLATFORMS'] = 'cpu'
  if 'jax' in sys.modules:  # imported already: its platforms setting was read at import
    sys.modules['jax'].config.update('jax_platforms', 'cpu')
  os.environ.setdefault('TPU_SKIP_MDS_QUERY', '1')
  os.environ.setdefault('TPU_WORKER_HOSTNAMES', 'localhost')
  os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
  # TensorFlow's and XLA's C++ start-up chatter (no CUDA driver here, which is expected).
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def _missing(target: Target, detail: str) -> TargetError:
  extra = f'{target.platform}-aot'
  what = 'libtpu' if target.platform == 'tpu' else 'jax-cuda12-plugin and ptxas'
  return TargetError(
    f'compiling for {target.spec} needs {what} for jax '
    f'{_jax_version()}: pip install "unreal_nas_jax[{extra}]" ({detail})'
  )


def _jax_version() -> str:
  import jax

  return jax.__version__


def gpu_description(chip: Chip) -> str:
  """The chip's GpuTargetConfigProto text with the cuDNN and CUDA versions set to those the
  installed CUDA plugin was built against (the compiler picks kernels by them)."""
  text = importlib.resources.files(SPECS_PACKAGE).joinpath(chip.description).read_text()
  try:
    from jax_cuda12_plugin import _versions  # compiled into the plugin, no CUDA needed
  except ImportError:
    return text
  cudnn, cuda = _versions.cudnn_build_version(), _versions.cuda_runtime_build_version()
  text = re.sub(
    r'dnn_version_info \{[^}]*\}',
    f'dnn_version_info {{ major: {cudnn // 10000} minor: {cudnn // 100 % 100} }}',
    text,
  )
  return re.sub(
    r'runtime_version \{[^}]*\}',
    f'runtime_version {{ major: {cuda // 1000} minor: {cuda // 10 % 100} }}',
    text,
  )


@functools.cache
def target_mesh(target: Target):
  """A one-axis ('data') mesh over the target's compile-only devices (a search splits it into
  seed groups itself, `search.setup.search_mesh`)."""
  import jax
  import numpy as np
  from jax.experimental import topologies

  from unreal_nas_jax.parallel import DATA_AXIS

  if target.platform == 'tpu':
    dims = [int(n) for n in target.topology.split('x')]
    bounds = (*dims[:2], 1) if len(dims) == 2 else (*dims[:2], 1)
    try:
      topology = topologies.get_topology_desc(
        platform='tpu',
        topology_name=f'{target.chip.topology}:{target.topology}',
        chips_per_host_bounds=bounds,
      )
    except Exception as e:  # noqa: BLE001 - libtpu missing, or a topology libtpu rejects
      message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      if 'topology' in message.lower() and 'invalid' in message.lower():
        raise TargetError(f'--target={target.spec}: libtpu rejects it ({message})') from None
      raise _missing(target, message[:160]) from None
  else:
    try:
      topology = topologies.get_topology_desc(
        platform='cuda',
        target_config=gpu_description(target.chip),
        topology=f'1x1x{target.num_chips}',
      )
    except Exception as e:  # noqa: BLE001 - the CUDA plugin missing
      message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise _missing(target, message[:160]) from None
  devices = np.asarray(topology.devices)
  return jax.sharding.Mesh(devices.reshape(-1), (DATA_AXIS,))


def peak_tflops(chip: Chip, compute_dtype: str) -> float:
  return chip.bf16_tflops if compute_dtype == 'bfloat16' else chip.f32_tflops


# The TPU compiler's refusals: "... required for HLO temporaries (23.88G) exceeds available HBM
# (15.75G)" or "Used 20.5G of 15.48G hbm" (binary units).
_HBM_NEEDED = (
  re.compile(r'\(([0-9.]+)([KMGT])?\) exceeds available HBM \(([0-9.]+)([KMGT])?\)', re.I),
  re.compile(r'Used ([0-9.]+)([KMGT])? of ([0-9.]+)([KMGT])? hbm', re.I),
)


def _gb(value: str, unit: str | None) -> float:
  scale = {'K': 2**10, 'M': 2**20, 'G': 2**30, 'T': 2**40}.get((unit or '').upper(), 1)
  return float(value) * scale / 1e9


def out_of_memory(error: Exception, target: Target) -> dict[str, Any] | None:
  """The record of a compile the compiler refused for lack of device memory, else None."""
  text = str(error)
  if 'RESOURCE_EXHAUSTED' not in text and 'out of memory' not in text.lower():
    return None
  record: dict[str, Any] = {
    'fits': False,
    'chip_memory_gb': target.chip.memory_gb,
    'compile_error': text.strip().splitlines()[0][:300],
  }
  for pattern in _HBM_NEEDED:
    found = pattern.search(text)
    if found:
      record['needed_gb'] = round(_gb(found.group(1), found.group(2)), 2)
      record['available_gb'] = round(_gb(found.group(3), found.group(4)), 2)
      break
  return record


def analyse(compiled, target: Target, compute_dtype: str = 'float32') -> dict[str, Any]:
  """Device memory, flops, bytes and the roofline lower bound of a compiled program (per chip).

  Flops and bytes are the target compiler's own cost analysis where it has one (TPU), else XLA's
  generic HLO cost analysis of the optimised program the target compiler produced (GPU).
  """
  memory = compiled.memory_analysis()
  chip = target.chip
  argument = memory.argument_size_in_bytes
  output, alias = memory.output_size_in_bytes, memory.alias_size_in_bytes
  temp = memory.temp_size_in_bytes
  peak = getattr(memory, 'peak_memory_in_bytes', 0) or argument + output - alias + temp
  cost, source = _cost(compiled)
  flops, nbytes = cost.get('flops'), cost.get('bytes accessed')
  record: dict[str, Any] = {
    'peak_memory_gb': round(peak / 1e9, 3),
    'temp_memory_gb': round(temp / 1e9, 3),
    'argument_memory_gb': round(argument / 1e9, 3),
    'output_memory_gb': round(output / 1e9, 3),
    'alias_memory_gb': round(alias / 1e9, 3),
    'chip_memory_gb': chip.memory_gb,
    'fits': bool(peak <= chip.memory_gb * 1e9),
    'gflop': None if flops is None else round(flops / 1e9, 2),
    'bytes_gb': None if nbytes is None else round(nbytes / 1e9, 2),
    'cost_source': source,
  }
  if target.platform == 'tpu':
    record['estimated_cycles'] = kernel_cycles(compiled.as_text())
  if flops is not None and nbytes is not None:
    tflops = peak_tflops(chip, compute_dtype)
    compute_ms = flops / (tflops * 1e12) * 1e3
    memory_ms = nbytes / (chip.hbm_gb_per_s * 1e9) * 1e3
    record.update(
      roofline_ms=round(max(compute_ms, memory_ms), 3),
      compute_bound_ms=round(compute_ms, 3),
      memory_bound_ms=round(memory_ms, 3),
      bound_by='memory' if memory_ms >= compute_ms else 'compute',
      peak_tflops=tflops,
      hbm_gb_per_s=chip.hbm_gb_per_s,
    )
  return record


# The TPU compiler writes its cost model's estimate into each kernel's backend config.
_CYCLES = re.compile(r'"estimated_cycles":"(\d+)"')
_COMPUTATION = re.compile(r'^(ENTRY )?%([\w.\-]+) ', re.M)
_WHILE = re.compile(r' while\(.*?condition=%([\w.\-]+), body=%([\w.\-]+)')
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"')
# What a kernel the cost model cannot estimate carries (2**60 and up).
_NO_ESTIMATE = 2**60


def kernel_cycles(hlo_text: str) -> int | None:
  """The TPU compiler's estimated cycles for one run of a compiled program, else None.

  The sum of its per-kernel `estimated_cycles` over the entry computation, with each while loop's
  body counted its known trip count times (once where unknown). Kernels without an estimate
  (select-and-scatter, custom calls, the cost model's 2**60 placeholder) count nothing and
  overlapped copies count in full, so the figure compares programs on one chip rather than timing
  them.
  """
  starts = list(_COMPUTATION.finditer(hlo_text))
  ends = [start.start() for start in starts[1:]] + [len(hlo_text)] if starts else []
  bodies = {
    start.group(2): hlo_text[start.end() : end] for start, end in zip(starts, ends, strict=True)
  }
  entry = next((start.group(2) for start in starts if start.group(1)), None)
  if entry is None:
    return None

  @functools.cache
  def cycles(name: str) -> int:
    total = 0
    for line in bodies[name].splitlines():
      loop = _WHILE.search(line)
      if loop:
        trips = _TRIP_COUNT.search(line)
        total += (int(trips.group(1)) if trips else 1) * cycles(loop.group(2))
      else:
        found = _CYCLES.search(line)
        cycles_of_kernel = int(found.group(1)) if found else 0
        total += cycles_of_kernel if cycles_of_kernel < _NO_ESTIMATE else 0
    return total

  total = cycles(entry)
  return total or None


def _cost(compiled) -> tuple[dict[str, float], str]:
  cost = compiled.cost_analysis()
  if isinstance(cost, list | tuple):
    cost = cost[0] if cost else None
  if cost and 'bytes accessed' in cost:
    return dict(cost), 'compiler'
  try:
    from jax._src import xla_bridge
    from jax._src.lib import xla_client

    modules = compiled.runtime_executable().hlo_modules()
    generic = xla_client._xla.hlo_module_cost_analysis(xla_bridge.get_backend('cpu'), modules[0])
    return dict(generic), 'xla_generic'
  except Exception:  # noqa: BLE001 - private API: report no figures rather than fail the compile
    return {}, 'none'
