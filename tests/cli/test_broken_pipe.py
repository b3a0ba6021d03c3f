"""`unreal-nas ... | head -1`: a reader that closes the pipe early ends the command quietly.

Self-contained: the command runs in a subprocess whose stdout is a pipe that this test closes
before the command writes to it, which is what `head -1` does to any output after its first line.
"""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
# `python -m unreal_nas_jax.cli.main` runs the console script's `entry_point`.
CLI = [sys.executable, '-m', 'unreal_nas_jax.cli.main']


@pytest.mark.parametrize('args', [('--help',), ('genotype', '--help')])
def test_closed_stdout_pipe_gives_no_traceback(args):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env['PYTHONPATH'] = os.pathsep.join(filter(None, (str(REPO), env.get('PYTHONPATH'))))
  proc = subprocess.Popen(
    [*CLI, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )
  proc.stdout.close()  # the reader is gone before the command prints anything
  try:
    _, stderr = proc.communicate(timeout=300)
  finally:
    proc.kill()
  status = proc.returncode
  assert 'Traceback' not in stderr, stderr
  assert 'BrokenPipeError' not in stderr, stderr
  assert status == 1, (status, stderr)
