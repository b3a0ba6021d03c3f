"""A search killed with SIGKILL at any point resumes to the bits of an uninterrupted run."""

import json
import os

import numpy as np

from tests.helpers import TINY_FLAGS, run_cli, run_until_killed
from unreal_nas_jax import checkpointing


def _run_until(workdir, marker):
  """Starts a search and SIGKILLs it as soon as it prints a line containing `marker`."""
  run_until_killed('search', *TINY_FLAGS, f'--workdir={workdir}', marker=marker)


def _comparable(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  for r in records:
    r.pop('wall_s'), r.pop('images_per_s')
  with open(os.path.join(workdir, 'genotype.json')) as f:
    genotype = json.load(f)
  state, record, step = checkpointing.restore_raw(os.path.join(workdir, 'checkpoints'))
  return records, genotype, state, step


def test_sigkill_anywhere_then_resume_is_bit_identical(tmp_path):
  reference = tmp_path / 'reference'
  result = run_cli('search', *TINY_FLAGS, f'--workdir={reference}')
  assert result.returncode == 0, result.stderr

  killed = tmp_path / 'killed'
  # Killed during the warm-up, before any checkpoint: the rerun starts from scratch.
  _run_until(killed, 'epoch 1/3 warmup step 3/4')
  assert not [d for d in os.listdir(killed / 'checkpoints') if d.isdigit()]
  # Killed in the middle of the last epoch, after two checkpoints.
  _run_until(killed, 'epoch 3/3 search step 2/4')
  assert sorted(d for d in os.listdir(killed / 'checkpoints') if d.isdigit()) == ['1', '2']
  result = run_cli('search', *TINY_FLAGS, f'--workdir={killed}')
  assert result.returncode == 0, result.stderr
  assert 'resuming' in result.stdout and 'after epoch 2' in result.stdout

  ref_records, ref_genotype, ref_state, ref_step = _comparable(reference)
  records, genotype, state, step = _comparable(killed)
  assert step == ref_step == 3
  assert records == ref_records
  assert genotype == ref_genotype
  for key in ('normal', 'reduce'):
    np.testing.assert_array_equal(state['alphas'][key], ref_state['alphas'][key])
  np.testing.assert_array_equal(
    state['params']['classifier']['kernel'], ref_state['params']['classifier']['kernel']
  )
