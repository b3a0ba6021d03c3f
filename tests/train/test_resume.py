"""A run stopped anywhere, killed or preempted by SIGTERM, resumes to the bits of an uninterrupted
run: every loop in this process (the search, SGAS, N seeds, fractals searched into the workdir,
the probe, the retraining); and through the CLI, as a user's process receives the signals."""

import os
import re
import signal

import pytest

from tests.testing import (
  TINY_FLAGS,
  Killed,
  assert_same_outputs,
  run_cli,
  run_outputs,
  run_until_signalled,
  stopped_after,
  tiny_probe_config,
  tiny_search_config,
)
from unreal_nas_jax.config_utils import load_config
from unreal_nas_jax.train import probe, retrain, search_loop
from unreal_nas_jax.train.run import Preempted


def _rlgd_config():
  """A search on 3 fractal categories (searched for on device and written to the workdir, which a
  resumed run reads back), no warm-up, 2 epochs of 4 steps."""
  config = tiny_search_config(
    search__warmup_epochs=0, data__name='rlgd', data__fractal_categories=3
  )
  config.preset = load_config('configs/search.py:rlgd,quick').preset
  return config


def _probe_config():
  """Two random architectures of one node per cell trained together, 2 epochs of 4 steps."""
  config = tiny_probe_config(num_architectures=2)
  config.model.steps = config.model.multiplier = 1
  return config


# case: (the loop, the uninterrupted run (a finished run of conftest.py, or the config of one to
# run here), the stops: one per run, each (after global step, 'kill' or 'term', the step of the
# newest checkpoint then)). The stopped runs checkpoint every 3 steps besides the epoch ends: a kill
# between two checkpoints resumes from the older one and repeats the steps after it. Epochs have
# 4 steps, but SGAS's (48 examples at batches 8, 8, 12, 16: epochs end at steps 6, 12, 16, 19).
CASES = {
  # Killed mid-epoch after a mid-epoch checkpoint, then preempted at an epoch end.
  'search': (search_loop.run_search, 'search_run', [(7, 'kill', 6), (8, 'term', 8)]),
  # Preempted mid-epoch at a grown batch, after two decisions.
  'sgas': (search_loop.run_search, 'sgas_run', [(14, 'term', 14)]),
  # Two seeds in one state, killed mid-epoch.
  'seeds': (search_loop.run_search, 'seeds_run', [(11, 'kill', 9)]),
  # Killed in epoch 2 before its mid-epoch checkpoint: the resumed run renders its fractals from
  # the categories the workdir holds.
  'rlgd': (search_loop.run_search, _rlgd_config, [(6, 'kill', 4)]),
  'probe': (probe.run_probe, _probe_config, [(7, 'kill', 6)]),
  'retrain': (retrain.run_train, 'train_run', [(7, 'kill', 6)]),
}


def _newest_checkpoint(workdir):
  return max(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())


@pytest.mark.parametrize('case', CASES)
def test_stopped_and_resumed_equals_uninterrupted(case, request, tmp_path):
  run, uninterrupted, stops = CASES[case]
  if callable(uninterrupted):
    config, reference = uninterrupted(), tmp_path / 'reference'
    run(config, str(reference))
  else:
    config, reference, _ = request.getfixturevalue(uninterrupted)
  config = config.copy_and_resolve_references()
  config.checkpoint.every_steps = 3

  workdir = str(tmp_path / 'run')
  for step, how, newest in stops:
    with stopped_after(step, how), pytest.raises(Killed if how == 'kill' else Preempted) as stop:
      run(config, workdir)
    if how == 'term':
      assert stop.value.exit_code == 128 + signal.SIGTERM
      assert re.fullmatch(
        r'stopped by SIGTERM at (step \d+/\d+ of epoch \d+|the end of epoch \d+); checkpoint '
        rf'{step} saved in \S+; rerun the same command to resume',
        str(stop.value),
      ), stop.value
    assert _newest_checkpoint(workdir) == newest
  run(config, workdir)
  assert_same_outputs(run_outputs(workdir), run_outputs(reference))


def test_sigterm_through_the_cli_is_one_line_and_the_same_command_resumes(search_run, tmp_path):
  _, reference, _ = search_run
  flags = (*TINY_FLAGS, f'--workdir={tmp_path}')
  # SIGKILL first, as a machine that goes away kills a run: the rerun resumes from epoch 1's end.
  code, out = run_until_signalled(
    'search', *flags, marker='epoch 2/3 search step 1/4', signum=signal.SIGKILL
  )
  assert code == -signal.SIGKILL, out
  code, out = run_until_signalled(
    'search', *flags, marker='epoch 3/3 search step 1/4', signum=signal.SIGTERM
  )
  # SIGTERM: a checkpoint of the step it arrived in, one line saying how to resume, exit 143.
  assert code == 128 + signal.SIGTERM, out
  assert 'resuming' in out and 'Traceback' not in out, out
  (line,) = [line for line in out.splitlines() if 'SIGTERM' in line]
  stopped = re.fullmatch(
    r'unreal-nas search: stopped by SIGTERM at step (\d)/4 of epoch 3; checkpoint (\d+) saved in '
    r'(\S+); rerun the same command to resume',
    line,
  )
  assert stopped, line
  assert int(stopped[2]) == 8 + int(stopped[1])
  assert os.path.isdir(os.path.join(stopped[3], stopped[2]))
  resumed = run_cli('search', *flags)
  assert resumed.returncode == 0, resumed.stderr
  assert f'resuming {tmp_path} after step {stopped[1]} of epoch 3' in resumed.stdout
  assert_same_outputs(run_outputs(tmp_path), run_outputs(reference))
