"""A retraining run killed with SIGKILL mid-epoch resumes to the bits of an uninterrupted one."""

import json
import os

import jax
import numpy as np

from tests.helpers import run_cli, run_until_killed
from unreal_nas_jax import checkpointing

TRAIN_FLAGS = (
  '--config=configs/train.py:cifar10,quick,fake_data', '--config.genotype=DARTS_V2',
  '--config.model.channels=4', '--config.model.layers=3', '--config.train.batch_size=8',
  '--config.train.epochs=2', '--config.data.num_train_examples=32',
  '--config.data.num_eval_examples=8', '--config.log.progress=lines',
  '--config.log.every_steps=1',
)  # fmt: skip


def _comparable(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  for r in records:
    r.pop('wall_s'), r.pop('images_per_s')
  state, _, step = checkpointing.restore_raw(os.path.join(workdir, 'checkpoints'))
  return records, state, step


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
  reference = tmp_path / 'reference'
  done = run_cli('train', *TRAIN_FLAGS, f'--workdir={reference}')
  assert done.returncode == 0, done.stderr

  killed = tmp_path / 'killed'
  run_until_killed('train', *TRAIN_FLAGS, f'--workdir={killed}', marker='epoch 2/2 train step 2/4')
  assert sorted(d for d in os.listdir(killed / 'checkpoints') if d.isdigit()) == ['1']

  resumed = run_cli('train', *TRAIN_FLAGS, f'--workdir={killed}')
  assert resumed.returncode == 0, resumed.stderr
  assert 'resuming' in resumed.stdout and 'after epoch 1' in resumed.stdout

  ref_records, ref_state, ref_step = _comparable(reference)
  records, state, step = _comparable(killed)
  assert step == ref_step == 2 and records == ref_records
  for a, b in zip(
    jax.tree.leaves(state['params']), jax.tree.leaves(ref_state['params']), strict=True
  ):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
