"""TensorBoard event files for search and training runs, `DIR/tensorboard/`.

Events are written by TensorFlow's summary writer (TensorFlow is already a dependency for tfds;
it is kept off every accelerator first). A scalar is written as TensorBoard's scalar plugin
writes it (a float32 tensor tagged with the `scalars` plugin), through `tf.summary.write`, which
needs no TensorBoard package in the writing process; `tensorboard --logdir DIR` shows the curves.

Loops call `search_epoch_scalars(record)` or `train_epoch_scalars(record)` on the record they
append to metrics.jsonl and pass the result to `SummaryWriter.scalars(epoch, ...)`;
`write_run_events` does the same afterwards from a finished run's metrics.jsonl.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

TENSORBOARD_DIR = 'tensorboard'


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def edge_entropies(weights: Any) -> np.ndarray:
  """The entropy (nats) of each edge's op distribution, rows of softmax weights (edges, ops)."""
  p = np.asarray(weights, np.float64)
  p = p / np.sum(p, axis=-1, keepdims=True)
  return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def search_epoch_scalars(record: Mapping[str, Any]) -> dict[str, float]:
  """The scalars of one search metrics.jsonl record (null values, e.g. warm-up val, left out).

  Tags: `loss/train`, `loss/val`, `accuracy/train`, `accuracy/val`, `lr`,
  `skip_connects/normal`, `alpha_entropy/{normal,reduce}/edge_<k>` (k = 0..13 in the edge order
  of metrics.jsonl's alphas), `alpha_entropy/{normal,reduce}/mean`, `speed/images_per_s`,
  `speed/epoch_s`, and `batch_size` (SGAS grows it).
  """
  names = {
    'train_loss': 'loss/train',
    'val_loss': 'loss/val',
    'train_acc': 'accuracy/train',
    'val_acc': 'accuracy/val',
    'lr': 'lr',
    'skip_connects_normal': 'skip_connects/normal',
    'images_per_s': 'speed/images_per_s',
    'wall_s': 'speed/epoch_s',
    'batch_size': 'batch_size',
  }
  scalars = {tag: float(record[key]) for key, tag in names.items() if _is_number(record.get(key))}
  alphas = record.get('alphas')
  if isinstance(alphas, Mapping):
    for cell in ('normal', 'reduce'):
      if alphas.get(cell) is None:
        continue
      entropies = edge_entropies(alphas[cell])
      for k, h in enumerate(entropies):
        scalars[f'alpha_entropy/{cell}/edge_{k:02d}'] = float(h)
      scalars[f'alpha_entropy/{cell}/mean'] = float(np.mean(entropies))
  return scalars


def train_epoch_scalars(record: Mapping[str, Any]) -> dict[str, float]:
  """The scalars of one retraining metrics.jsonl record (null values left out).

  Tags: `loss/train`, `loss/eval`, `accuracy/train`, `accuracy/eval_top1`,
  `accuracy/eval_top5`, `lr`, `drop_path`, `speed/images_per_s`, `speed/epoch_s`.
  """
  names = {
    'train_loss': 'loss/train',
    'eval_loss': 'loss/eval',
    'train_acc': 'accuracy/train',
    'eval_top1': 'accuracy/eval_top1',
    'eval_top5': 'accuracy/eval_top5',
    'lr': 'lr',
    'drop_path': 'drop_path',
    'images_per_s': 'speed/images_per_s',
    'wall_s': 'speed/epoch_s',
  }
  return {tag: float(record[key]) for key, tag in names.items() if _is_number(record.get(key))}


class SummaryWriter:
  """Scalars into `workdir/tensorboard/` on process 0; a no-op on every other process.

  Usage: `writer = SummaryWriter(workdir)`, then `writer.scalars(epoch, {...})` per epoch,
  `writer.close()` at the end (also a context manager). A resumed run adds a new event file to
  the directory; epochs it redoes (those after the last checkpoint of a killed run) then have
  two points at the same step.
  """

  def __init__(self, workdir: str, *, enabled: bool | None = None):
    """`enabled`: None (default) writes on process 0 only; True/False force it (tests)."""
    if enabled is None:
      import jax

      enabled = jax.process_index() == 0
    self.logdir = os.path.join(workdir, TENSORBOARD_DIR)
    self._writer = None
    if not enabled:
      return
    from unreal_nas_jax.data.tfds_cifar import hide_accelerators_from_tensorflow

    hide_accelerators_from_tensorflow()
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    self._tf = tf
    # What TensorBoard's scalar plugin attaches to a scalar (its ScalarPluginData, version 0,
    # serialises to empty content).
    self._metadata = summary_pb2.SummaryMetadata(
      plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name='scalars', content=b'')
    )
    os.makedirs(self.logdir, exist_ok=True)
    self._writer = tf.summary.create_file_writer(self.logdir)

  @property
  def enabled(self) -> bool:
    return self._writer is not None

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    """Writes `values` ({tag: number}) at `step`; None values are skipped."""
    if self._writer is None:
      return
    tf = self._tf
    with self._writer.as_default():
      for tag, value in values.items():
        if value is None:
          continue
        tensor = tf.constant(float(value), dtype=tf.float32)
        tf.summary.write(tag, tensor, step=int(step), metadata=self._metadata)

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None

  def __enter__(self) -> SummaryWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def write_run_events(run_dir: str) -> list[str]:
  """Writes the TensorBoard events of an existing search or training run from its metrics.jsonl
  (per seed directory for an N-seed search); returns the tensorboard directories written."""
  from unreal_nas_jax.analysis import runs as runs_lib

  written = []
  for run in runs_lib.read_runs(run_dir):
    to_scalars = search_epoch_scalars if run.kind == 'search' else train_epoch_scalars
    with SummaryWriter(run.path) as writer:
      for record in run.records:
        writer.scalars(record['epoch'], to_scalars(record))
      written.append(writer.logdir)
  return written


def read_scalars(logdir: str) -> dict[str, dict[int, float]]:
  """{tag: {step: value}} of every scalar event under `logdir` (tests, quick checks)."""
  from unreal_nas_jax.data.tfds_cifar import hide_accelerators_from_tensorflow

  hide_accelerators_from_tensorflow()
  import tensorflow as tf
  from tensorflow.core.util import event_pb2

  out: dict[str, dict[int, float]] = {}
  for name in sorted(os.listdir(logdir)):
    if 'tfevents' not in name:
      continue
    for raw in tf.data.TFRecordDataset(os.path.join(logdir, name)):
      event = event_pb2.Event.FromString(raw.numpy())
      for value in event.summary.value:
        if value.HasField('tensor'):
          number = float(tf.make_ndarray(value.tensor))
        else:
          number = float(value.simple_value)
        out.setdefault(value.tag, {})[int(event.step)] = number
  return out
