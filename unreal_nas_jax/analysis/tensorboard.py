"""TensorBoard event files of a finished run, `DIR/tensorboard/`, from its metrics.jsonl (the
events the loops write as they run, for a run made without them)."""

from __future__ import annotations

from unreal_nas_jax.analysis import runs as runs_lib
from unreal_nas_jax.train.tensorboard import (
  SummaryWriter,
  search_epoch_scalars,
  train_epoch_scalars,
)


def write_run_events(run_dir: str) -> list[str]:
  """Writes the TensorBoard events of an existing search or training run from its metrics.jsonl
  (per seed directory for an N-seed search); returns the tensorboard directories written."""
  written = []
  for run in runs_lib.read_runs(run_dir):
    to_scalars = search_epoch_scalars if run.kind == 'search' else train_epoch_scalars
    with SummaryWriter(run.path, enabled=True) as writer:
      for record in run.records:
        writer.scalars(record['epoch'], to_scalars(record))
      written.append(writer.logdir)
  return written
