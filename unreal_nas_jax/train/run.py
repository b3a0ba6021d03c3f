"""What every run does around its loop, shared by the search, the probe and the retraining.

A `Run` opens and checks the workdir (refusing another run's), restores the newest checkpoint
that restores (moving unusable ones aside), names the start-up phases, shows progress, stops on a
NaN/Inf loss with `NonFiniteLossError`, and checkpoints: at every epoch end, every
`checkpoint.every_steps` steps and every `checkpoint.every_minutes` minutes inside an epoch, and
when SIGTERM or SIGINT arrives (then it raises `Preempted`, and the same command resumes).
`train.loop.run_epochs` drives a loop's epochs through it.

A checkpoint holds the loop's state and its epoch accumulators (`sums`), named by global step,
with a record `{'epoch': finished epochs, 'step_in_epoch': steps of the next epoch done, ...}`;
a run resumed from it repeats exactly the steps an uninterrupted run takes, because every random
choice of a step is a function of the state's step counter and the epoch, never of the host's
history.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import ml_collections
import numpy as np

from unreal_nas_jax import checkpointing, files, timing
from unreal_nas_jax.config_utils import to_dict
from unreal_nas_jax.train import outputs, startup, tensorboard


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or Inf; the run stopped without saving the bad state."""


class Preempted(Exception):
  """SIGTERM or SIGINT arrived; a checkpoint of the current step was saved."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.exit_code = 128 + signum


class StopSignals:
  """Turns SIGTERM and SIGINT into a flag that the step loop polls between steps.

  A second SIGINT raises KeyboardInterrupt at once (the previous checkpoint stays the latest).
  In a multi-process run SIGTERM is left to JAX's preemption service, which makes every process
  stop at the same step (`multihost_utils.reached_preemption_sync_point`).
  """

  def __init__(self):
    self.received: int | None = None
    self._previous: dict[int, Any] = {}

  def _handle(self, signum, frame):
    if signum == signal.SIGINT and self.received == signal.SIGINT:
      raise KeyboardInterrupt
    self.received = signum

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      wanted = [signal.SIGINT] + ([signal.SIGTERM] if jax.process_count() == 1 else [])
      for signum in wanted:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous.clear()

  def stop_requested(self, global_step: int) -> bool:
    if self.received is not None:
      return True
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      try:
        if multihost_utils.reached_preemption_sync_point(global_step):
          self.received = signal.SIGTERM
          return True
      except RuntimeError:  # no preemption service in this distributed setup
        return False
    return False


def checkpoint_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Where a run's checkpoints are: `checkpoint.dir`, or WORKDIR/checkpoints."""
  return config.checkpoint.get('dir', '') or files.join(workdir, 'checkpoints')


class Run:
  """The workdir, checkpoints, phases, progress and signals of one search, probe or retraining.

  Args:
    config: the validated config (`checkpoint.*`, `log.*` fields are read here).
    workdir: local path or cloud URI.
    total_epochs: of the whole run (progress lines).

  Attributes:
    epochs_at: global step -> finished epochs if the step ends an epoch, else None (checkpoint
      retention; `train.loop.run_epochs` sets it from the loop's schedule before the first save).
  """

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    total_epochs: int,
  ):
    self.config, self.workdir, self.total_epochs = config, workdir, total_epochs
    self.epochs_at: Callable[[int], int | None] | None = None
    outputs.prepare_workdir(workdir)
    self.manager = checkpointing.make_manager(checkpoint_dir(config, workdir))
    outputs.check_config(workdir, to_dict(config), has_checkpoint=bool(self.manager.all_steps()))
    self.timer = timing.Phases(enabled=config.log.progress != 'none' and outputs.is_writer())
    self.progress = outputs.Progress(config.log.progress, config.log.every_steps, total_epochs)
    self.signals = StopSignals()
    self.checkpoint_seconds = 0.0  # of the current epoch
    self._last_save = time.monotonic()
    self._tensorboard: dict[str, tensorboard.SummaryWriter] = {}

  @property
  def checkpoint_dir(self) -> str:
    return str(self.manager.directory)

  def write_config(self) -> None:
    outputs.write_config(self.workdir, to_dict(self.config))

  # Start-up ------------------------------------------------------------------------------------

  def start_state(self, init_fn: Callable[[], Any], abstract_items: dict[str, Any], weights: int):
    """A Future of (items, record or None): `init_fn()`'s items, or the newest checkpoint that
    restores into `abstract_items`' shapes (`startup.wait_state` waits for it)."""
    has_checkpoint = bool(self.manager.all_steps())
    return startup.start_state(
      self.timer,
      init_fn,
      (lambda: self._restore(abstract_items)) if has_checkpoint else None,
      f'{weights:,} weights',
    )

  def _restore(self, abstract_items):
    found = checkpointing.restore_newest(self.manager, abstract_items, warn=self._warn)
    if found is None:  # every checkpoint moved aside meanwhile: impossible, but be explicit
      raise checkpointing.CheckpointError(f'no checkpoint in {self.checkpoint_dir}')
    items, record, _ = found
    return items, record

  def _warn(self, message: str) -> None:
    if outputs.is_writer():
      print(message, file=sys.stderr, flush=True)

  @staticmethod
  def resume_point(record: dict | None) -> tuple[int, int]:
    """(0-based epoch, steps of it done) where a run with checkpoint `record` continues."""
    if record is None:
      return 0, 0
    return int(record['epoch']), int(record.get('step_in_epoch', 0))

  def announce_resume(self, record: dict | None) -> None:
    if record is None or not outputs.is_writer():
      return
    epoch, done = self.resume_point(record)
    where = f'epoch {epoch}' if not done else f'step {done} of epoch {epoch + 1}'
    print(f'resuming {self.workdir} after {where}', flush=True)

  # Inside and at the end of an epoch ------------------------------------------------------------

  def checkpoint_due(self, global_step: int) -> bool:
    """Whether a mid-epoch checkpoint is due after `global_step` (`checkpoint.every_*`)."""
    c = self.config.checkpoint
    every_steps, every_minutes = c.get('every_steps', 0), c.get('every_minutes', 0.0)
    due = bool(every_steps) and global_step % every_steps == 0
    if every_minutes and not due:
      elapsed = time.monotonic() - self._last_save >= 60 * every_minutes
      if jax.process_count() > 1:
        # Every process must save at the same step: process 0's clock decides, asked at a
        # fixed cadence so that the question itself is a rare collective.
        if global_step % max(self.config.log.sync_every_steps, 1):
          return False
        from jax.experimental import multihost_utils

        elapsed = bool(multihost_utils.broadcast_one_to_all(np.asarray(elapsed)))
      due = elapsed
    return due

  def save(self, global_step: int, items: dict[str, Any], record: dict[str, Any]) -> None:
    """Saves a checkpoint, then applies the retention policy."""
    t0 = time.perf_counter()
    checkpointing.save(self.manager, global_step, items, {**record, 'global_step': global_step})
    checkpointing.apply_retention(
      self.manager,
      self.epochs_at,
      max_to_keep=self.config.checkpoint.max_to_keep,
      keep_period=self.config.checkpoint.keep_period,
    )
    self._last_save = time.monotonic()
    self.checkpoint_seconds += time.perf_counter() - t0

  def log_epoch(self, directory: str, metrics_log, record: dict, scalars: dict) -> None:
    """Appends an epoch's record to `metrics_log` and its scalars to `directory/tensorboard/`."""
    metrics_log.append(record)
    if directory not in self._tensorboard:
      self._tensorboard[directory] = tensorboard.SummaryWriter(directory)
    self._tensorboard[directory].scalars(record['epoch'], scalars)

  def stop_if_requested(self, epoch: int, global_step: int) -> None:
    """After an epoch-end checkpoint: raises Preempted if a signal arrived during the epoch."""
    if self.signals.stop_requested(global_step):
      self.raise_preempted(epoch + 1, 0, 0, global_step)

  def raise_preempted(self, epoch: int, done: int, steps: int, global_step: int) -> None:
    name = signal.Signals(self.signals.received).name
    where = f'step {done}/{steps} of epoch {epoch + 1}' if done else f'the end of epoch {epoch}'
    raise Preempted(
      f'stopped by {name} at {where}; checkpoint {global_step} saved in {self.checkpoint_dir}; '
      'rerun the same command to resume',
      self.signals.received,
    )

  @contextlib.contextmanager
  def running(self) -> Iterator[Run]:
    """Signals handled and the checkpoint manager closed however the run ends."""
    try:
      with self.signals:
        yield self
    finally:
      self.timer.close()
      self.manager.close()
