"""The CPU kernels' build, cache key and every fallback to the pure-JAX form (stderr, not stdout).

The fallback tests call `build_and_register` (what the cached `available()` runs once per
process) with fake compilers: shell scripts that answer the toolchain probe (`-E -v`) with a
cc1 line and then fail the build, or "build" a file that is not a library.
"""

import os
import subprocess
import sys

import pytest

from tests.testing import REPO, cli_env
from unreal_nas_jax.ops import cpu_kernels

# Prints a cc1 line naming $FAKE_MARCH for the probe; otherwise runs BUILD with $out the -o file.
FAKE_COMPILER = """#!/bin/sh
case " $* " in *" -E "*) echo " cc1plus -E -march=${FAKE_MARCH:-fake} -mavx2" >&2; exit 0;; esac
out=; prev=
for a in "$@"; do [ "$prev" = -o ] && out=$a; prev=$a; done
BUILD
"""


def _fake_compiler(tmp_path, monkeypatch, build, name='fake-c++'):
  path = tmp_path / name
  path.write_text(FAKE_COMPILER.replace('BUILD', build))
  path.chmod(0o755)
  monkeypatch.setenv('CXX', str(path))
  monkeypatch.setenv(cpu_kernels.CACHE_ENV, str(tmp_path / 'cache'))
  monkeypatch.delenv(cpu_kernels.DISABLE_ENV, raising=False)
  return str(path)


def _stderr_lines(capsys):
  out, err = capsys.readouterr()
  assert out == '', out  # stdout holds a command's results only
  return err.splitlines()


def test_disabled_by_the_environment_without_a_word(monkeypatch, capsys):
  monkeypatch.setenv(cpu_kernels.DISABLE_ENV, '1')
  monkeypatch.setattr(cpu_kernels, '_compiler', lambda: pytest.fail('compiler looked for'))
  assert cpu_kernels.build_and_register() is False
  assert _stderr_lines(capsys) == []


def test_no_compiler_falls_back_with_one_line(monkeypatch, capsys):
  monkeypatch.delenv('CXX', raising=False)
  monkeypatch.delenv(cpu_kernels.DISABLE_ENV, raising=False)
  monkeypatch.setattr(cpu_kernels.shutil, 'which', lambda name: None)
  assert cpu_kernels.build_and_register() is False
  (line,) = _stderr_lines(capsys)
  assert 'no C++ compiler' in line and 'pure-JAX' in line


def test_a_failed_build_falls_back_with_the_compiler_error(tmp_path, monkeypatch, capsys):
  _fake_compiler(tmp_path, monkeypatch, 'echo "fake-c++: error: no space left" >&2; exit 1')
  assert cpu_kernels.build_and_register() is False
  compiling, failed = _stderr_lines(capsys)
  assert 'compiling the CPU depthwise kernels' in compiling
  assert 'failed (fake-c++: error: no space left)' in failed and 'pure-JAX' in failed
  assert not list((tmp_path / 'cache').glob('*.so'))  # nothing half-built left to load


def test_a_library_that_does_not_load_falls_back(tmp_path, monkeypatch, capsys):
  # As a noexec cache directory, a glibc mismatch or a damaged file would.
  _fake_compiler(tmp_path, monkeypatch, 'echo "not a shared library" > "$out"')
  assert cpu_kernels.build_and_register() is False
  compiling, compiled, failed = _stderr_lines(capsys)
  assert 'compiled the CPU depthwise kernels' in compiled
  (library,) = (tmp_path / 'cache').glob('*.so')
  assert f'loading the CPU depthwise kernels from {library} failed' in failed
  assert cpu_kernels.CACHE_ENV in failed


def test_the_cache_key_holds_the_toolchain_the_cpu_and_the_flags(tmp_path, monkeypatch):
  compiler = _fake_compiler(tmp_path, monkeypatch, 'exit 1')
  monkeypatch.setenv('FAKE_MARCH', 'neoverse-n1')
  arm = cpu_kernels.library_path(compiler)
  assert cpu_kernels.library_path(compiler) == arm
  # What -march=native resolves to (aarch64's /proc/cpuinfo names no model and no flags).
  monkeypatch.setenv('FAKE_MARCH', 'neoverse-v2')
  assert cpu_kernels.library_path(compiler) != arm
  monkeypatch.setenv('FAKE_MARCH', 'neoverse-n1')
  monkeypatch.setattr(cpu_kernels, 'BUILD_FLAGS', (*cpu_kernels.BUILD_FLAGS, '-ffast-math'))
  assert cpu_kernels.library_path(compiler) != arm


@pytest.mark.skipif(cpu_kernels._compiler() is None, reason='no C++ compiler here')
def test_a_real_build_says_so_on_stderr_and_is_then_reused(tmp_path, monkeypatch):
  """A fresh cache in a fresh process: stdout keeps only the result, and the library lands where
  the next process looks for it (so it builds once)."""
  env = cli_env(**{cpu_kernels.CACHE_ENV: str(tmp_path)})
  env.pop(cpu_kernels.DISABLE_ENV, None)
  code = 'from unreal_nas_jax.ops import cpu_kernels; print(cpu_kernels.available())'
  proc = subprocess.run(
    [sys.executable, '-c', code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
  )
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout == 'True\n'
  assert 'compiled the CPU depthwise kernels in' in proc.stderr
  # Registering it here too would clash with this process's own library: check the key only.
  monkeypatch.setenv(cpu_kernels.CACHE_ENV, str(tmp_path))
  library = cpu_kernels.library_path(cpu_kernels._compiler())
  assert os.listdir(tmp_path) == [library.name]
