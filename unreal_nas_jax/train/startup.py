"""What every run does before its first step, shared by the search and the retraining loop.

The state is initialised (or restored) in a thread while the steps are traced and lowered from
its shapes, and the lowered steps compile in threads of their own, so the jitted initialisation,
the lowering and XLA's compilations overlap. Each part is a phase line (`unreal_nas_jax.timing`).
A compiled executable cannot retrace, so each step compiles exactly once.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Mapping
from typing import Any

import jax

from unreal_nas_jax import timing


def start_state(
  timer: timing.Phases,
  init_fn: Callable[[], Any],
  restore_fn: Callable[[], tuple[Any, dict]] | None,
  detail: str,
) -> concurrent.futures.Future:
  """A Future of (state, checkpoint record or None): `init_fn()` when `restore_fn` is None (a new
  run), else `restore_fn()`."""
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
  if restore_fn is None:
    line = timer.start('init state', detail, background=True)
    future = pool.submit(lambda: (jax.block_until_ready(init_fn()), None))
  else:
    line = timer.start('restore checkpoint', background=True)
    future = pool.submit(restore_fn)
  future.add_done_callback(lambda _: line.done())
  pool.shutdown(wait=False)
  future.phase = line
  return future


def wait_state(future: concurrent.futures.Future):
  """(state, record) of `start_state`, with heartbeat lines while it is not ready."""
  future.phase.background = False
  return future.result()


def compile_steps(timer: timing.Phases, steps: Mapping[str, tuple[Any, tuple]]):
  """Lowers `{name: (jitted_fn, example_args)}` one after the other, then compiles them in
  threads; only the first is waited for at once, the others compile behind the run.

  Returns:
    {name: (Future of the compiled step, its compile phase)}; use `wait_compiled`.
  """
  lowered = {}
  for name, (fn, args) in steps.items():
    with timer(f'lower {name}') as line:
      lowered[name] = fn.lower(*args)
      line.info = f'{timing.count_ops(lowered[name]):,} ops'
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(len(lowered), 1))
  compiling = {}
  for i, (name, low) in enumerate(lowered.items()):
    line = timer.start(f'compile {name}', background=i > 0)
    compiling[name] = (pool.submit(_compile, low, line), line)
  pool.shutdown(wait=False)
  return compiling


def _compile(lowered, line: timing.Phase):
  compiled = lowered.compile()
  line.done()
  return compiled


def wait_compiled(compiling, name: str):
  """The compiled step `name`, waiting for it (with heartbeat lines) if it is not ready."""
  future, line = compiling[name]
  line.background = False
  return future.result()
