"""Builds, caches and registers the compiled CPU depthwise kernels (`depthwise_cpu.cc`).

The kernels are XLA FFI custom calls. They are compiled on first use with the machine's C++
compiler against jaxlib's FFI headers (`BUILD_FLAGS`, with `-march=native`; a few seconds) into a
cache keyed by the source, the jax and jaxlib versions, the flags and the toolchain: the
compiler's version and the architecture and features `-march=native` resolves to here, so a
cache shared between machines (a network home) never hands one CPU a library built for another.
Then they are registered with JAX for the CPU platform. Where they cannot be used (no compiler,
a failed build, a library that does not load, `UNREAL_NAS_DISABLE_CPU_KERNELS=1`), `available()`
is False and the depthwise convolution uses its pure-JAX form; each of these but the last says
so in one line on stderr, where every message of this module goes (stdout holds a command's
results).
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
BUILD_FLAGS = ('-O3', '-march=native', '-std=c++17', '-shared', '-fPIC', '-fopenmp-simd', '-w')
FALLBACK = 'using the slower pure-JAX CPU depthwise convolution'


def cache_dir() -> pathlib.Path:
  default = pathlib.Path('~/.cache/unreal_nas_jax/kernels').expanduser()
  return pathlib.Path(os.environ.get(CACHE_ENV, default)).expanduser()


def _say(message: str) -> None:
  print(f'unreal_nas_jax: {message}', file=sys.stderr, flush=True)


def _compiler() -> str | None:
  for name in (os.environ.get('CXX'), 'c++', 'g++', 'clang++'):
    if name and shutil.which(name):
      return name
  return None


def _toolchain(compiler: str) -> str:
  """What the compiler says it runs with these flags: its version and the cc1 command line, where
  GCC and Clang spell out `-march=native` as this CPU's architecture and features (about 10 ms;
  `/proc/cpuinfo` names neither on aarch64)."""
  probe = subprocess.run(
    [compiler, *BUILD_FLAGS, '-E', '-v', '-x', 'c++', os.devnull],
    capture_output=True,
    text=True,
    check=True,
    timeout=60,
    env={**os.environ, 'LC_ALL': 'C'},  # untranslated, so one key per toolchain
  )
  return probe.stderr


def library_path(compiler: str) -> pathlib.Path:
  """The cached library for this source, jax, flags, compiler and CPU."""
  parts = (
    SOURCE.read_bytes(),
    jax.__version__.encode(),
    jax.lib.__version__.encode(),
    platform.machine().encode(),
    ' '.join(BUILD_FLAGS).encode(),
    _toolchain(compiler).encode(),
  )
  key = hashlib.sha256(b'\0'.join(parts)).hexdigest()[:16]
  return cache_dir() / f'depthwise_cpu_{key}.so'


def _build(target: pathlib.Path, compiler: str) -> None:
  cmd = [compiler, *BUILD_FLAGS, f'-I{jax.ffi.include_dir()}', str(SOURCE)]
  target.parent.mkdir(parents=True, exist_ok=True)
  # Build beside the target, then rename: concurrent first uses never load a half-written file.
  with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
    out = pathlib.Path(tmp) / target.name
    subprocess.run([*cmd, '-o', str(out)], check=True, capture_output=True, text=True)
    os.replace(out, target)


def build_and_register() -> bool:
  """Builds the kernels unless cached, loads and registers them; False (and one stderr line)
  where any of that fails. `available()` is this, once per process."""
  if os.environ.get(DISABLE_ENV, '0') == '1':
    return False
  compiler = _compiler()
  if compiler is None:
    _say(f'no C++ compiler (CXX, c++, g++, clang++); {FALLBACK}')
    return False
  try:
    library = library_path(compiler)
    if not library.exists():
      t0 = time.perf_counter()
      _say(f'compiling the CPU depthwise kernels with {compiler} (once per machine)...')
      _build(library, compiler)
      _say(f'compiled the CPU depthwise kernels in {time.perf_counter() - t0:.1f}s')
  except (OSError, subprocess.SubprocessError) as e:
    detail = (getattr(e, 'stderr', None) or str(e)).strip().replace('\n', ' ')
    _say(f'building the CPU depthwise kernels with {compiler} failed ({detail[:300]}); {FALLBACK}')
    return False
  try:
    lib = ctypes.cdll.LoadLibrary(str(library))
    functions = {name: getattr(lib, symbol) for name, symbol in TARGETS.items()}
  except (OSError, AttributeError) as e:
    _say(
      f'loading the CPU depthwise kernels from {library} failed ({e}); {FALLBACK} '
      f'({CACHE_ENV}=DIR builds them into another directory)'
    )
    return False
  for name, function in functions.items():
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(function), platform='cpu')
  return True


@functools.cache
def available() -> bool:
  """Whether the kernels are registered: built (once per machine and version) and loaded."""
  return build_and_register()
