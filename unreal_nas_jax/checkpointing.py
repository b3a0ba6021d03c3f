"""Orbax checkpoints of a run: pytrees plus a small JSON record, named by global step.

Saves are synchronous and atomic (Orbax writes to a temporary directory and renames it), so a
process killed mid-save leaves the previous checkpoint as the latest complete one. A checkpoint
that cannot be restored (damaged files, a partial copy) is moved aside, never deleted, and the
next newer-to-older one is tried. Retention is ours rather than Orbax's, so that it can tell
epoch-end checkpoints (kept by `max_to_keep`/`keep_period`) from mid-epoch ones (only the newest
is kept, and only while no epoch end is newer).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp

from unreal_nas_jax import files

# The name of the directory beside `checkpoints/` that unusable checkpoints are moved into.
UNUSABLE_DIR = 'checkpoints_unusable'


class CheckpointError(ValueError):
  """No checkpoint of a run could be restored (one line naming what was tried)."""


def make_manager(directory: files.PathLike, *, create: bool = True, item_handlers=None):
  """A synchronous Orbax manager of `directory` (local or cloud storage), without retention.
  `item_handlers` ({item: handler}): lets it read the saved items' shapes (`item_metadata`)."""
  options = ocp.CheckpointManagerOptions(create=create, enable_async_checkpointing=False)
  return ocp.CheckpointManager(
    files.as_path(directory), item_handlers=item_handlers, options=options
  )


def save(manager, step: int, items: dict[str, Any], record: dict[str, Any]) -> None:
  """Saves the pytrees `items` (e.g. {'state': ..., 'sums': ...}) and `record` as `step`."""
  saves = {name: ocp.args.StandardSave(tree) for name, tree in items.items()}
  manager.save(step, args=ocp.args.Composite(**saves, record=ocp.args.JsonSave(record)))
  manager.wait_until_finished()


def restore(manager, step: int, abstract_items: dict[str, Any]) -> tuple[dict[str, Any], dict]:
  """Restores `step` onto the shapes and shardings of `abstract_items` (from jax.eval_shape)."""
  restores = {name: ocp.args.StandardRestore(tree) for name, tree in abstract_items.items()}
  restored = manager.restore(
    step, args=ocp.args.Composite(**restores, record=ocp.args.JsonRestore())
  )
  return {name: restored[name] for name in abstract_items}, restored['record']


def one_line(error: BaseException) -> str:
  """The first line of an exception's message (Orbax and TensorStore errors run to pages)."""
  text = str(error).strip()
  if not text:
    return type(error).__name__
  first = text.splitlines()[0].split(' See full ')[0]  # TensorStore appends pages of details
  return first if len(first) <= 160 else first[:157] + '...'


def restore_newest(
  manager, abstract_items: dict[str, Any], *, warn: Callable[[str], None] = print
) -> tuple[dict[str, Any], dict, int] | None:
  """The newest checkpoint that restores: (items, record, step); None if there is none.

  Newer checkpoints that fail are moved to `checkpoints_unusable/` beside the checkpoint
  directory (by process 0, after one restored), each with a one-line warning, so the run goes on
  from the newest good one and later saves do not collide with them. If none restores, nothing is
  moved and a CheckpointError lists every step tried and why.
  """
  failed: list[tuple[int, str]] = []
  _ignore_closed_event_loop_callbacks()
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      items, record = _quietly(restore, manager, step, abstract_items)
    except Exception as e:  # Orbax/TensorStore raise many types for damaged or foreign files
      failed.append((step, one_line(e)))
      continue
    if failed:
      _move_aside(manager, [s for s, _ in failed], warn, dict(failed))
    return items, record, step
  if failed:
    tried = '; '.join(f'{step} ({why})' for step, why in failed)
    raise CheckpointError(
      f'no checkpoint in {manager.directory} restores into the state this config builds; tried '
      f'{tried}; move that directory away to start afresh'
    )
  return None


def _quietly(fn, *args):
  """Calls `fn` with Orbax's own error logging silenced (its failures are reported in one line)."""
  logger = logging.getLogger('absl')
  level = logger.level
  logger.setLevel(logging.CRITICAL)
  try:
    return fn(*args)
  finally:
    logger.setLevel(level)


def _ignore_closed_event_loop_callbacks() -> None:
  """After a failed restore, TensorStore reads still in flight complete into Orbax's asyncio loop,
  which is closed by then; Python reports each as 'Exception ignored ... Event loop is closed'.
  They are harmless (the failure was reported in one line), so exactly those are not printed."""
  previous = sys.unraisablehook
  if getattr(previous, 'ignores_closed_event_loop', False):
    return

  def hook(unraisable):
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == 'Event loop is closed':
      return
    previous(unraisable)

  hook.ignores_closed_event_loop = True
  sys.unraisablehook = hook


def _move_aside(manager, steps: list[int], warn, reasons: dict[int, str]) -> None:
  directory = files.as_path(manager.directory)
  aside = directory.parent / UNUSABLE_DIR
  for step in steps:
    target = aside / str(step)
    n = 1
    while target.exists():
      target = aside / f'{step}.{n}'
      n += 1
    if jax.process_index() == 0:
      aside.mkdir(parents=True, exist_ok=True)
      (directory / str(step)).rename(target)
    warn(f'warning: checkpoint {step} cannot be restored ({reasons[step]}); moved to {target}')
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices('unreal_nas_jax checkpoints moved aside')
  manager.reload()


def apply_retention(
  manager,
  epochs_at: Callable[[int], int | None],
  *,
  max_to_keep: int,
  keep_period: int,
) -> list[int]:
  """Deletes the checkpoints the retention policy no longer keeps; returns their steps.

  `epochs_at(step)` is the number of finished epochs if `step` ends an epoch, else None. Epoch-end
  checkpoints: the newest `max_to_keep` (0: all) and every one whose epoch count is a multiple of
  `keep_period` (0: none extra). Mid-epoch checkpoints: only the newest checkpoint of all, when it
  is one (a resume point newer than any epoch end).
  """
  steps = sorted(manager.all_steps())
  ends = [s for s in steps if epochs_at(s) is not None]
  keep = set(ends[-max_to_keep:] if max_to_keep else ends)
  if keep_period:
    keep |= {s for s in ends if epochs_at(s) % keep_period == 0}
  if steps and epochs_at(steps[-1]) is None:
    keep.add(steps[-1])
  deleted = [s for s in steps if s not in keep]
  for step in deleted:
    manager.delete(step)
  return deleted


def restore_raw(directory: files.PathLike, step: int | None = None):
  """Restores a checkpoint's state without a target (numpy leaves), e.g. a search's alphas, on
  whatever devices this process has: a search saved on a TPU slice or 8 GPUs reads back on one.

  Returns (state, record, step).
  """
  handlers = {
    'state': ocp.StandardCheckpointHandler(),
    'sums': ocp.StandardCheckpointHandler(),
    'record': ocp.JsonCheckpointHandler(),
  }
  manager = make_manager(directory, create=False, item_handlers=handlers)
  try:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {directory}')
    # The saved shapes, placed on this process's first device: without a target Orbax would
    # rebuild the saving run's shardings, which need its device count.
    saved = manager.item_metadata(step)['state']
    saved = getattr(saved, 'tree', saved)  # a tree of shapes (newer Orbax: the tree itself)
    here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here), saved)
    restored = manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), record=ocp.args.JsonRestore()
      ),
    )
  finally:
    manager.close()
  return jax.device_get(restored['state']), restored['record'], step
