"""Two processes (jax.distributed, gloo CPU collectives) run a search, a search of 2 seeds split
one per process (`parallel.seed_shards=2`) and a retraining together and end with the bits of one
process with two devices; each restores the other's checkpoints.

The checkpoints are swapped for the retraining only: its state is saved and restored the same way
as the search's (replicated pytrees through `train.run.Run`), and each first step of a new program
costs two processes on this CPU about 20 s of collective set-up."""

import os
import shutil
import socket
import subprocess
import sys

import numpy as np

from tests.testing import REPO, cli_env


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _run(num_processes, *jobs):
  """Runs the worker's `jobs` ((dir, epochs, what)) as `num_processes` processes (1: one process
  with two CPU devices); returns each job's final state leaves."""
  port = _free_port()
  env = cli_env(XLA_FLAGS='--xla_force_host_platform_device_count=2' if num_processes == 1 else '')
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        '-m',
        'tests.multihost_worker',
        str(i),
        str(num_processes),
        str(port),
        *(f'{d}:{e}:{w}' for d, e, w in jobs),
      ],
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )  # fmt: skip
    for i in range(num_processes)
  ]
  for proc in procs:
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:]
  return [dict(np.load(os.path.join(d, 'final.npz'))) for d, _, _ in jobs]


def _assert_same(a, b):
  assert sorted(a) == sorted(b) and any(k.startswith('train') for k in a)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_two_processes_equal_one_process_with_two_devices_and_swap_checkpoints(tmp_path):
  (one,) = _run(1, (tmp_path / 'one', 1, 'search,seeds,train'))
  assert any(k.startswith('search') for k in one) and any(k.startswith('seeds') for k in one)
  shutil.copytree(tmp_path / 'one', tmp_path / 'one_then_two')
  # Two processes: a fresh run (its 2 seeds one per process), and one more epoch of the
  # one-process run's checkpoints.
  two, one_then_two = _run(
    2, (tmp_path / 'two', 1, 'search,seeds,train'), (tmp_path / 'one_then_two', 2, 'train')
  )
  _assert_same(two, one)
  shutil.copytree(tmp_path / 'two', tmp_path / 'two_then_one')
  (two_then_one,) = _run(1, (tmp_path / 'two_then_one', 2, 'train'))
  _assert_same(two_then_one, one_then_two)
