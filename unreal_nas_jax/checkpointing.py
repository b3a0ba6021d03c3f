"""Orbax checkpoints of a run: the state pytree plus a small JSON record, one per epoch.

Saves are synchronous and atomic (Orbax writes to a temporary directory and renames it), so a
process killed mid-save leaves the previous checkpoint as the latest complete one.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
  """A checkpoint whose structure does not match the state the config builds."""


def make_manager(directory: str, *, max_to_keep: int = 0, keep_period: int = 0):
  options = ocp.CheckpointManagerOptions(
    max_to_keep=max_to_keep or None,
    keep_period=keep_period or None,
    create=True,
    enable_async_checkpointing=False,
  )
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save(manager, step: int, state: Any, record: dict[str, Any]) -> None:
  manager.save(
    step,
    args=ocp.args.Composite(state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)),
  )
  manager.wait_until_finished()


def restore(manager, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
  """Restores `step` onto the shapes and shardings of `abstract_state` (from jax.eval_shape)."""
  try:
    restored = manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), record=ocp.args.JsonRestore()
      ),
    )
  except (ValueError, KeyError, TypeError) as e:
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise CheckpointMismatchError(
      f'checkpoint {step} in {manager.directory} does not match the state this config builds '
      f'({first_line})'
    ) from e
  return restored['state'], restored['record']


def restore_raw(directory: str, step: int | None = None) -> tuple[Any, dict[str, Any], int]:
  """Restores a checkpoint without a target (numpy leaves), e.g. to read a search's alphas."""
  manager = make_manager(directory)
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'no checkpoint in {directory}')
  restored = manager.restore(
    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), record=ocp.args.JsonRestore())
  )
  return jax.device_get(restored['state']), restored['record'], step
