"""Running a reproduction's phases in order, each through the loops' own resumable run core.

Which phases have finished is read once, before anything runs (every process of a multi-host
run reads the same files, so all take the same path); a finished phase is skipped, a started one
resumes from its last checkpoint inside `run_search` / `run_train`. Each phase's console output
also goes to its log, `ROOT/logs/<NN>_<phase>.log` (appended to by a rerun). A phase that fails
stops the reproduction with `PhaseFailed`: one line that names the phase, its workdir and its log
(where the traceback is); what finished before stays finished. SIGTERM or Ctrl-C inside a phase
stops it as it stops `unreal-nas search` (a checkpoint, `Preempted`), naming the phase.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import TextIO

from unreal_nas_jax import files, parallel
from unreal_nas_jax.checkpointing import CheckpointError
from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.reproduce import plan as plan_lib
from unreal_nas_jax.train import outputs, retrain, search_loop
from unreal_nas_jax.train.run import Preempted


class PhaseFailed(Exception):
  """A phase raised; the message is one line naming the phase, its workdir and log."""

  def __init__(self, message: str, exit_code: int):
    super().__init__(message)
    self.exit_code = exit_code


def log_path(root: str, index: int, phase: plan_lib.Phase) -> str:
  return files.join(root, 'logs', f'{index:02d}_{phase.slug}.log')


class _Tee(io.TextIOBase):
  """Writes to a console stream and a log; not a terminal, so progress comes as plain lines."""

  def __init__(self, console: TextIO, log: TextIO | None):
    self.console, self.log = console, log

  def write(self, text: str) -> int:
    self.console.write(text)
    if self.log is not None:
      self.log.write(text)
    return len(text)

  def flush(self) -> None:
    self.console.flush()
    if self.log is not None:
      self.log.flush()

  def isatty(self) -> bool:
    return False


@contextlib.contextmanager
def _logged(path: str) -> Iterator[TextIO | None]:
  """stdout and stderr also into the log at `path` (process 0; local or cloud storage)."""
  log = None
  if outputs.is_writer():
    files.make_dirs(files.as_path(path).parent)
    # Cloud storage cannot append: there the log is kept in memory and written whole at the end.
    log = io.StringIO() if files.is_remote(path) else files.as_path(path).open('a')
    log.write(f'=== {time.strftime("%Y-%m-%d %H:%M:%S")} ===\n')
  try:
    with (
      contextlib.redirect_stdout(_Tee(sys.stdout, log)),
      contextlib.redirect_stderr(_Tee(sys.stderr, log)),
    ):
      yield log
  finally:
    if isinstance(log, io.StringIO):
      before = files.read_text(path) if files.exists(path) else ''
      files.write_text_atomic(path, before + log.getvalue())
    elif log is not None:
      log.close()


def run_phase(phase: plan_lib.Phase) -> None:
  """Runs (or resumes) one phase in this process, as its command would."""
  if phase.kind == 'search':
    search_loop.run_search(phase.config(), phase.workdir)
  elif phase.kind == 'train':
    retrain.run_train(phase.config(), phase.workdir)
  else:
    result = retrain.run_eval(phase.workdir)
    print(json.dumps(result), flush=True)
    if outputs.is_writer():
      files.write_json_atomic(files.join(phase.workdir, plan_lib.EVAL_FILE), result)


def run_phases(
  plan: plan_lib.Plan,
  statuses: list[str],
  *,
  after_phase: Callable[[], None] = lambda: None,
  run: Callable[[plan_lib.Phase], None] = run_phase,
) -> None:
  """Runs every phase whose status (read before, `plan.phase_status`) is not DONE, in order;
  `after_phase()` after each one that ran.

  Raises:
    PhaseFailed: a phase raised (exit status 2 for a config, device or checkpoint error).
    Preempted: SIGTERM/SIGINT in a phase (its checkpoint saved).
  """
  total = len(plan.phases)
  for index, (phase, status) in enumerate(zip(plan.phases, statuses, strict=True), 1):
    where = f'phase {index}/{total} ({phase.name})'
    if status == plan_lib.DONE:
      print(f'[{where}] finished before; skipped', flush=True)
      continue
    log = log_path(plan.root, index, phase)
    verb = 'resuming' if status == plan_lib.STARTED else 'running'
    print(f'[{where}] {verb} in {phase.workdir}; log {log}', flush=True)
    with _logged(log) as log_file:
      try:
        run(phase)
      except Preempted as e:
        raise Preempted(f'{where}: {e}', e.exit_code - 128) from None
      except Exception as e:  # noqa: BLE001 - any failure of a phase stops the reproduction
        if log_file is not None:
          traceback.print_exc(file=log_file)
        usage = isinstance(e, ConfigError | parallel.DeviceError | CheckpointError)
        cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PhaseFailed(
          f'{where} failed: {cause}; workdir {phase.workdir}, log {log}', 2 if usage else 1
        ) from None
    after_phase()
