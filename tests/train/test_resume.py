"""Runs killed (SIGKILL) or preempted (SIGTERM) at random moments resume mid-epoch to the bits of an
uninterrupted run: the search and the retraining, through the CLI as a user runs them."""

import re
import signal

import jax
import numpy as np
import pytest

from tests.helpers import TINY_FLAGS, comparable_run, interrupted_at_random_moments, run_cli

# A checkpoint every 3 steps: some interruptions land on one, others between two (those resume
# from an older step and repeat the steps after it).
SEARCH_FLAGS = (*TINY_FLAGS, '--config.checkpoint.every_steps=3')
SEARCH_MOMENTS = [
  f'epoch {e}/3 {"warmup" if e == 1 else "search"} step {s}/4'
  for e in (1, 2, 3)
  for s in (1, 2, 3, 4)
]
TRAIN_FLAGS = (
  '--config=configs/train.py:cifar10,quick,fake_data', '--config.genotype=DARTS_V2',
  '--config.model.channels=4', '--config.model.layers=3', '--config.train.batch_size=8',
  '--config.train.epochs=2', '--config.data.num_train_examples=32',
  '--config.data.num_eval_examples=8', '--config.log.progress=lines',
  '--config.log.every_steps=1', '--config.checkpoint.every_steps=3',
)  # fmt: skip
TRAIN_MOMENTS = [f'epoch {e}/2 train step {s}/4' for e in (1, 2) for s in (1, 2, 3, 4)]
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL)


def _check_interruptions(outputs):
  for _, signum, code, out in outputs:
    if signum == signal.SIGKILL:
      assert code == -signal.SIGKILL, out
      continue
    # SIGTERM: a checkpoint of the current step, one line saying how to resume, exit 143.
    assert code == 128 + signal.SIGTERM, out
    stopped = re.search(
      r'stopped by SIGTERM at (step (\d+)/4 of epoch (\d+)|the end of epoch)', out
    )
    assert stopped and 'rerun the same command to resume' in out, out
    assert 'Traceback' not in out, out


def _assert_same_run(workdir, reference):
  records, state, step = comparable_run(workdir)
  ref_records, ref_state, ref_step = comparable_run(reference)
  assert step == ref_step
  assert records == ref_records
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
  'command,flags,moments,seed',
  [('search', SEARCH_FLAGS, SEARCH_MOMENTS, 1), ('train', TRAIN_FLAGS, TRAIN_MOMENTS, 2)],
)
def test_interrupted_three_times_is_bit_identical(tmp_path, command, flags, moments, seed):
  reference = run_cli(command, *flags, f'--workdir={tmp_path / "reference"}')
  assert reference.returncode == 0, reference.stderr
  outputs, final = interrupted_at_random_moments(
    command, flags, tmp_path / 'run', moments, seed=seed, signals=SIGNALS
  )
  _check_interruptions(outputs)
  assert 'resuming' in final.stdout
  _assert_same_run(tmp_path / 'run', tmp_path / 'reference')
