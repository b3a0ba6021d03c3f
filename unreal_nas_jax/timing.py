"""Phase lines: what a command is doing and how long each part of it took, on every platform.

Every command names each phase when it starts and prints its duration when it ends, so a user
sees where the time goes (building the data, initialising the state, tracing and lowering,
compiling each step, the first step) and nothing is silent for more than a few seconds:

  [   0.0s] build data: rlrn, 512 examples
  [   0.1s] build data: 0.06s
  [   0.1s] init state
  [   4.2s] init state: 4.1s
  [   4.2s] lower search step
  [   7.9s] lower search step: 3.7s, 19,608 ops
  [   7.9s] compile search step
  [  12.9s] compile search step: still running after 5s
  ...

The clock on the left counts from the command's start. A phase that runs in the background (a
step compiling while an epoch runs) prints its start and end but no heartbeat in between.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

HEARTBEAT_S = 5.0


class Phase:
  """One running phase; `info` (set while it runs) is appended to its end line."""

  def __init__(self, phases: Phases, name: str, background: bool):
    self.phases, self.name, self.background = phases, name, background
    self.start = time.perf_counter()
    self.last_line = self.start
    self.info = ''
    self.seconds: float | None = None

  def done(self, info: str | None = None) -> float:
    """Ends the phase (prints its duration once); returns the seconds it took."""
    if self.seconds is None:
      self.seconds = time.perf_counter() - self.start
      if info is not None:
        self.info = info
      self.phases._finish(self)
    return self.seconds


class Phases:
  """Prints phase lines to `stream` (stderr by default, so stdout keeps a command's results).

  Durations are also kept in `seconds` ({name: s}) for records and tests.
  """

  def __init__(self, enabled: bool = True, stream: TextIO | None = None, heartbeat_s=HEARTBEAT_S):
    self.enabled = enabled
    self.stream = stream
    self.heartbeat_s = heartbeat_s
    self.t0 = time.perf_counter()
    self.seconds: dict[str, float] = {}
    self._open: list[Phase] = []
    self._lock = threading.Lock()
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  def _print(self, text: str) -> None:
    if self.enabled:
      stream = self.stream or sys.stderr
      print(f'[{time.perf_counter() - self.t0:7.1f}s] {text}', file=stream, flush=True)

  def start(self, name: str, detail: str = '', *, background: bool = False) -> Phase:
    """Starts a phase and prints its name (and `detail`); end it with `.done()`."""
    phase = Phase(self, name, background)
    with self._lock:
      self._open.append(phase)
    self._print(f'{name}: {detail}' if detail else name)
    self._ensure_heartbeat()
    return phase

  @contextlib.contextmanager
  def __call__(self, name: str, detail: str = '') -> Iterator[Phase]:
    """`with phases('init state') as p: ...; p.info = '1,930,618 weights'`."""
    phase = self.start(name, detail)
    try:
      yield phase
    finally:
      phase.done()

  def _finish(self, phase: Phase) -> None:
    with self._lock:
      if phase in self._open:
        self._open.remove(phase)
    self.seconds[phase.name] = round(phase.seconds, 3)
    self._print(
      f'{phase.name}: {_format(phase.seconds)}' + (f', {phase.info}' if phase.info else '')
    )

  def _ensure_heartbeat(self) -> None:
    if not self.enabled or self._thread is not None:
      return
    self._thread = threading.Thread(target=self._heartbeat, name='phase-heartbeat', daemon=True)
    self._thread.start()

  def _heartbeat(self) -> None:
    while not self._stop.wait(min(1.0, self.heartbeat_s)):
      now = time.perf_counter()
      with self._lock:
        due = [p for p in self._open if not p.background and now - p.last_line >= self.heartbeat_s]
        for p in due:
          p.last_line = now
      for p in due:
        self._print(f'{p.name}: still running after {now - p.start:.0f}s')

  def close(self) -> None:
    self._stop.set()


def _format(seconds: float) -> str:
  return f'{seconds:.2f}s' if seconds < 10 else f'{seconds:.1f}s'


_OP_LINE = re.compile(r'^\s*(?:%[^=\n]+=\s*)?"?(?:stablehlo|chlo|mhlo|func)\.[a-z_]+', re.M)


def count_ops(lowered: Any) -> int:
  """The number of operations in a lowered program's StableHLO text (each function once)."""
  return len(_OP_LINE.findall(lowered.as_text()))
