"""The shape every loop has, written once: `run_epochs(run, loop)`.

The search, the probe and the retraining each describe themselves as a `Loop` (their schedule,
state, step programs and records), and `run_epochs` runs it in a `train.run.Run`:

  start (or restore) the state in the background, lowering and compiling the step programs
  meanwhile -> wait for the state -> resume where its checkpoint left off -> for each epoch: the
  steps (checkpoints inside the epoch and a stop on a signal are the Run's), the loop's end of
  epoch, a checkpoint, the loop's records, then a stop if a signal arrived.

A checkpoint holds `{'state': ..., 'sums': ...}` (the epoch accumulators, fresh at an epoch end),
named by global step, with the record `{'epoch': finished epochs, 'step_in_epoch': steps of the
next epoch done, **loop.record_fields(epoch)}`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import jax

from unreal_nas_jax import parallel
from unreal_nas_jax.train import startup
from unreal_nas_jax.train.run import Run

# A compiled step of the loop: (state, sums, 1-based step in the epoch) -> (state, sums).
Step = Callable[[Any, Any, int], tuple[Any, Any]]


class Loop(Protocol):
  """What is a loop's own; every epoch index is 0-based."""

  total_epochs: int
  mesh: jax.sharding.Mesh

  def epoch_start(self, epoch: int) -> int:
    """The global step at which `epoch` starts (`epoch_start(total_epochs)`: the run's end)."""

  def phase(self, epoch: int) -> str:
    """The name progress lines give `epoch`."""

  def record_fields(self, epoch: int) -> dict[str, Any]:
    """What a checkpoint taken in or at the end of `epoch` records besides its position."""

  def init_state(self) -> Any:
    """A fresh state, on the mesh."""

  def abstract_state(self) -> Any:
    """The state's shapes and shardings (what a checkpoint restores into)."""

  def new_sums(self) -> Any:
    """Fresh epoch accumulators (not yet placed on devices)."""

  def num_weights(self, abstract_state: Any) -> int:
    """The weights a start-up line reports."""

  def program(self, epoch: int) -> str:
    """The name of the compiled step program `epoch` runs."""

  def ahead(self, epoch: int) -> list[str]:
    """The programs to compile while the state starts, for a run that continues at `epoch`."""

  def step_program(self, name: str, abstract: dict[str, Any], epoch: int, done: int):
    """(jitted step, example arguments to lower it from) of program `name`; `abstract`: the
    state's and sums' shapes; (`epoch`, `done`): where the run most likely starts using it."""

  def epoch_step(self, epoch: int, done: int, compiled) -> Step:
    """`epoch`'s step from step `done` + 1 on, through the `compiled` program."""

  def check_finite(self, epoch: int, sums: Any) -> None:
    """Raises NonFiniteLossError when the host `sums` of `epoch` hold a NaN or Inf loss."""

  def resumed(self, state: Any, epoch: int) -> None:
    """Called once the run knows it continues at `epoch` (logs cut back to it, for instance)."""

  def end_epoch(self, epoch: int, state: Any, sums: Any, wall_s: float, done: int):
    """(state, records) after `epoch`'s last step, before its checkpoint: `sums` on the host,
    `wall_s` the seconds of the steps run, `done` the steps run before a resume."""

  def log(self, records: Any) -> str:
    """Writes `records` after the epoch's checkpoint; returns the epoch's summary line(s)."""


def run_epochs(run: Run, loop: Loop) -> Any:
  """Runs (or resumes) `loop` in `run`'s workdir; returns the last state."""
  timer = run.timer
  # The sums have a leading seed axis where the state has (N seeds), split over the mesh's
  # `seeds` axis if it has one: `parallel.per_seed` is replicated on a mesh without.
  sums_sharding = parallel.per_seed(loop.mesh)
  run.epochs_at = {loop.epoch_start(e): e for e in range(loop.total_epochs + 1)}.get
  abstract = {
    'state': loop.abstract_state(),
    'sums': parallel.abstract(jax.eval_shape(loop.new_sums), loop.mesh, sums_sharding.spec),
  }

  def fresh_sums():
    return parallel.place(loop.new_sums(), sums_sharding)

  state_future = run.start_state(
    lambda: {'state': loop.init_state(), 'sums': fresh_sums()},
    abstract,
    loop.num_weights(abstract['state']),
  )
  latest = run.manager.latest_step()  # where the run most likely resumes (before it restores)
  epoch, done = (0, 0) if latest is None else _position(loop, latest)

  def compile_programs(names, epoch, done):
    programs = {name: loop.step_program(name, abstract, epoch, done) for name in names}
    return startup.compile_steps(timer, programs)

  compiling = compile_programs(loop.ahead(epoch), epoch, done)
  items, record = startup.wait_state(state_future)
  state, restored_sums = items['state'], items['sums']
  start_epoch, done = run.resume_point(record)
  run.announce_resume(record)
  loop.resumed(state, start_epoch)

  first_step = True
  for epoch in range(start_epoch, loop.total_epochs):
    done_before = done if epoch == start_epoch else 0  # steps run before a resume
    name = loop.program(epoch)
    if name not in compiling:
      compiling.update(compile_programs([name], epoch, done_before))
    compiled = startup.wait_compiled(compiling, name)
    following = loop.program(epoch + 1) if epoch + 1 < loop.total_epochs else name
    if following not in compiling:
      compiling.update(compile_programs([following], epoch + 1, 0))  # behind this epoch
    step = loop.epoch_step(epoch, done_before, compiled)
    sums = restored_sums if done_before else fresh_sums()
    state, sums, wall_s = _steps(run, loop, epoch, done_before, step, state, sums, first_step)
    first_step = False
    state, records = loop.end_epoch(epoch, state, sums, wall_s, done_before)
    end = loop.epoch_start(epoch + 1)
    run.save(
      end,
      {'state': state, 'sums': fresh_sums()},
      {'epoch': epoch + 1, 'step_in_epoch': 0, **loop.record_fields(epoch)},
    )
    run.progress.end_epoch(loop.log(records))
    run.stop_if_requested(epoch, end)
  timer.close()
  return state


def _position(loop: Loop, global_step: int) -> tuple[int, int]:
  """(epoch, steps of it done) of a checkpoint at `global_step` (the run's end past its last)."""
  epoch = 0
  while epoch < loop.total_epochs and loop.epoch_start(epoch + 1) <= global_step:
    epoch += 1
  return epoch, global_step - loop.epoch_start(epoch)


def _steps(run: Run, loop: Loop, epoch: int, done: int, step: Step, state, sums, first_step: bool):
  """Runs steps `done + 1 ..` of `epoch`; returns (state, the epoch's sums on the host, already
  checked, and the seconds the steps took). Mid-epoch checkpoints and a stop on a signal happen
  here; the epoch end is `run_epochs`'."""
  t0 = time.perf_counter()
  start = loop.epoch_start(epoch)
  steps = loop.epoch_start(epoch + 1) - start
  run.progress.start_epoch(epoch, loop.phase(epoch), steps, done=done)
  run.checkpoint_seconds = 0.0
  sync_every = run.config.log.sync_every_steps
  for i in range(done + 1, steps + 1):
    if first_step:
      with run.timer('first step'):
        state, sums = jax.block_until_ready(step(state, sums, i))
      first_step = False
    else:
      state, sums = step(state, sums, i)
    if (sync_every and i % sync_every == 0) or run.progress.will_print(i):
      # Waits for the device without copying anything back, so progress shows real steps.
      jax.block_until_ready(jax.tree.leaves(sums)[0])
    run.progress.update(i)
    if i == steps:
      break
    stop = run.signals.stop_requested(start + i)
    if stop or run.checkpoint_due(start + i):
      loop.check_finite(epoch, jax.device_get(parallel.gather(sums)))
      record = {'epoch': epoch, 'step_in_epoch': i, **loop.record_fields(epoch)}
      run.save(start + i, {'state': state, 'sums': sums}, record)
    if stop:
      run.progress.end_epoch('')
      run.raise_preempted(epoch, i, steps, start + i)
  sums = jax.device_get(parallel.gather(sums))
  wall_s = time.perf_counter() - t0
  loop.check_finite(epoch, sums)
  return state, sums, wall_s
