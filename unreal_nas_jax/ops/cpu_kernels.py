"""Builds, caches and registers the compiled CPU depthwise kernels (`depthwise_cpu.cc`).

The kernels are XLA FFI custom calls. They are compiled on first use with the machine's C++
compiler against jaxlib's FFI headers (`-O3 -march=native`, a few seconds) into a cache keyed by
the source, the jaxlib version and the CPU, and registered with JAX for the CPU platform. Where
no compiler is available, `available()` is False and the depthwise convolution falls back to its
pure-JAX form.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import jax

SOURCE = pathlib.Path(__file__).with_name('depthwise_cpu.cc')
TARGETS = {
  'unreal_nas_depthwise_forward': 'UnrealNasDepthwiseForward',
  'unreal_nas_depthwise_input_grad': 'UnrealNasDepthwiseInputGrad',
  'unreal_nas_depthwise_kernel_grad': 'UnrealNasDepthwiseKernelGrad',
}
CACHE_ENV = 'UNREAL_NAS_KERNEL_CACHE'
DISABLE_ENV = 'UNREAL_NAS_DISABLE_CPU_KERNELS'


def cache_dir() -> pathlib.Path:
  default = pathlib.Path('~/.cache/unreal_nas_jax/kernels').expanduser()
  return pathlib.Path(os.environ.get(CACHE_ENV, default)).expanduser()


def _cpu_signature() -> str:
  """The CPU model and flags: a library built with -march=native runs only where it was built."""
  try:
    with open('/proc/cpuinfo') as f:
      lines = [line for line in f if line.startswith(('model name', 'flags'))][:2]
  except OSError:
    lines = []
  return platform.machine() + platform.processor() + ''.join(lines)


def _compiler() -> str | None:
  for name in (os.environ.get('CXX'), 'c++', 'g++', 'clang++'):
    if name and shutil.which(name):
      return name
  return None


def _build(target: pathlib.Path, compiler: str) -> None:
  cmd = [
    compiler,
    '-O3',
    '-march=native',
    '-std=c++17',
    '-shared',
    '-fPIC',
    '-fopenmp-simd',
    '-w',
    f'-I{jax.ffi.include_dir()}',
    str(SOURCE),
  ]
  target.parent.mkdir(parents=True, exist_ok=True)
  # Build beside the target, then rename: concurrent first uses never load a half-written file.
  with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
    out = pathlib.Path(tmp) / target.name
    subprocess.run([*cmd, '-o', str(out)], check=True, capture_output=True, text=True)
    os.replace(out, target)


@functools.cache
def available() -> bool:
  """Builds (once per machine and version) and registers the kernels; False if that fails."""
  if os.environ.get(DISABLE_ENV, '0') == '1':
    return False
  compiler = _compiler()
  source = SOURCE.read_bytes()
  key = hashlib.sha256(
    source + jax.__version__.encode() + jax.lib.__version__.encode() + _cpu_signature().encode()
  ).hexdigest()[:16]
  library = cache_dir() / f'depthwise_cpu_{key}.so'
  if not library.exists():
    if compiler is None:
      print('unreal_nas_jax: no C++ compiler; using the slower pure-JAX CPU depthwise convolution',
            file=sys.stderr)  # fmt: skip
      return False
    t0 = time.perf_counter()
    print('compiling the CPU depthwise kernels (once per machine)...', flush=True)
    try:
      _build(library, compiler)
    except (OSError, subprocess.CalledProcessError) as e:
      detail = getattr(e, 'stderr', '') or str(e)
      print(f'unreal_nas_jax: building the CPU depthwise kernels failed ({detail.strip()[:200]}); '
            'using the slower pure-JAX form', file=sys.stderr)  # fmt: skip
      return False
    print(f'compiled the CPU depthwise kernels in {time.perf_counter() - t0:.1f}s', flush=True)
  lib = ctypes.cdll.LoadLibrary(str(library))
  for name, symbol in TARGETS.items():
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, symbol)), platform='cpu')
  return True
