"""What a run leaves in its workdir, and what it shows while it runs.

Files (written by process 0 only): config.json, metrics.jsonl (one JSON object per epoch),
genotype.json (rewritten atomically every epoch). Progress: a tqdm bar with rate and ETA on a
terminal, plain log lines otherwise.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import jax

from unreal_nas_jax import files
from unreal_nas_jax.config_utils import ConfigError, incompatible_keys
from unreal_nas_jax.files import write_json_atomic, write_text_atomic


def is_writer() -> bool:
  return jax.process_index() == 0


def prepare_workdir(workdir: str) -> None:
  """Creates `workdir` (local or cloud storage) and checks that it is writable (one-line
  ConfigError otherwise); nothing is left behind by the check."""
  probe = files.join(workdir, f'.write_test_{jax.process_index()}')
  try:
    files.make_dirs(workdir)
    if is_writer():
      files.write_text_atomic(probe, '')
      files.as_path(probe).unlink()
  except OSError as e:
    raise ConfigError(f'workdir {workdir!r} is not writable: {e.strerror or e}') from None


def check_config(workdir: str, config: dict[str, Any], has_checkpoint: bool) -> None:
  """Refuses a workdir whose saved run differs in more than run length or logging.

  A workdir with a config.json (or a checkpoint) belongs to one run; resuming it with another
  config would mix two runs, so the workdir is left untouched and a ConfigError names the keys.
  """
  path = files.join(workdir, 'config.json')
  if files.exists(path):
    try:
      saved = files.read_json(path)
    except json.JSONDecodeError as e:
      raise ConfigError(f'{path} is not valid JSON ({e}); move it away to start afresh') from None
    keys = incompatible_keys(saved, config)
    if keys:
      shown = ', '.join(
        f'{k} (saved {_get(saved, k)!r}, now {_get(config, k)!r})' for k in keys[:4]
      )
      more = f' and {len(keys) - 4} more' if len(keys) > 4 else ''
      raise ConfigError(
        f'workdir {workdir!r} holds a run with a different config: {shown}{more}; '
        'use a new --workdir or the saved config'
      )
  elif has_checkpoint:
    raise ConfigError(
      f'workdir {workdir!r} has checkpoints but no config.json; use a new --workdir'
    )


def write_config(workdir: str, config: dict[str, Any]) -> None:
  if is_writer():
    write_json_atomic(files.join(workdir, 'config.json'), config, indent=2)


def _get(tree: dict[str, Any], dotted: str) -> Any:
  for part in dotted.split('.'):
    if not isinstance(tree, dict) or part not in tree:
      return '<missing>'
    tree = tree[part]
  return tree


class MetricsLog:
  """metrics.jsonl: one JSON object per finished epoch, keyed by `epoch`.

  The file is rewritten whole (atomically) at each append: cloud storage has no appends, and a
  run has at most a few hundred lines.
  """

  def __init__(self, workdir: str):
    self.path = files.join(workdir, 'metrics.jsonl')
    self._lines: list[str] | None = None

  def read(self) -> list[dict[str, Any]]:
    if not files.exists(self.path):
      return []
    return [json.loads(line) for line in files.read_text(self.path).splitlines() if line.strip()]

  def truncate(self, num_epochs: int) -> None:
    """Keeps only epochs < num_epochs (a killed run may have logged past its last checkpoint)."""
    kept = []
    if files.exists(self.path):
      for line in files.read_text(self.path).splitlines():
        try:
          record = json.loads(line)
        except json.JSONDecodeError:
          break  # a line cut by a kill: nothing after it is trustworthy
        if record.get('epoch', num_epochs) < num_epochs:
          kept.append(line + '\n')
    self._lines = kept
    if is_writer() and files.exists(self.path):
      write_text_atomic(self.path, ''.join(kept))

  def append(self, record: dict[str, Any]) -> None:
    if self._lines is None:
      self.truncate(record['epoch'])
    self._lines.append(json.dumps(record) + '\n')
    if is_writer():
      write_text_atomic(self.path, ''.join(self._lines))


def _format_seconds(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


class Progress:
  """Per-epoch progress: a tqdm bar on a terminal, plain lines every `every_steps` otherwise."""

  def __init__(self, mode: str, every_steps: int, total_epochs: int):
    if mode == 'auto':
      mode = 'bar' if sys.stderr.isatty() else 'lines'
    self.mode = mode if is_writer() else 'none'
    self.every_steps = every_steps
    self.total_epochs = total_epochs
    self._bar = None

  def start_epoch(self, epoch: int, phase: str, steps: int, done: int = 0) -> None:
    """Starts an epoch of `steps` steps of which `done` ran before a resume."""
    self.epoch, self.phase, self.steps = epoch, phase, steps
    self.done = self.first = done
    self.t0 = time.perf_counter()
    if self.mode == 'bar':
      import tqdm  # only on terminals

      desc = f'epoch {epoch + 1}/{self.total_epochs} {phase}'
      self._bar = tqdm.tqdm(
        total=steps, initial=done, desc=desc, unit='step', dynamic_ncols=True, leave=False
      )

  def will_print(self, step_in_epoch: int) -> bool:
    return self.mode == 'lines' and (
      step_in_epoch % self.every_steps == 0 or step_in_epoch == self.steps
    )

  def update(self, step_in_epoch: int) -> None:
    """Called after step `step_in_epoch` (1-based) has been launched and, periodically, synced."""
    if self.mode == 'bar':
      self._bar.update(step_in_epoch - self.done)
    elif self.will_print(step_in_epoch):
      elapsed = time.perf_counter() - self.t0
      rate = (step_in_epoch - self.first) / elapsed if elapsed > 0 else 0.0
      eta = (self.steps - step_in_epoch) / rate if rate > 0 else 0.0
      print(
        f'epoch {self.epoch + 1}/{self.total_epochs} {self.phase} step {step_in_epoch}/{self.steps}'
        f' {rate:.2f} steps/s ETA {_format_seconds(eta)}',
        flush=True,
      )
    self.done = step_in_epoch

  def end_epoch(self, summary: str) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    if self.mode != 'none' and summary:
      print(summary, flush=True)
