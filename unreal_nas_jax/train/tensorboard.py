"""TensorBoard event files of search, probe and training runs, `DIR/tensorboard/`.

Loops call `search_epoch_scalars(record)` or `train_epoch_scalars(record)` on the record they
append to metrics.jsonl and pass the result to `SummaryWriter.scalars(epoch, ...)`;
`tensorboard --logdir DIR` shows the curves. The events are TensorBoard's own: its `Event`
protocol buffers in its TFRecord framing (`tensorboard.summary.writer.record_writer`), each scalar
a `simple_value`. Its `EventFileWriter` is not used: it writes through `tf.io.gfile`, which imports
TensorFlow into the search process (5 s, measured) and bypasses `files`, the layer every workdir
file (local or gs://) goes through.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from unreal_nas_jax import files

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
  `writer.close()` at the end (also a context manager). Each writer writes one event file, and
  each `scalars` call appends its event to it through `files.append_bytes` (in cloud storage,
  which has no appends, the object is rewritten whole: a run has a few hundred scalars per epoch
  at most). A resumed run adds a new event file; for a step written twice (an epoch redone after
  the last checkpoint of a killed run) TensorBoard's EventAccumulator keeps the later point.
  """

  def __init__(self, workdir: str, *, enabled: bool | None = None):
    """`enabled`: None (default) writes on process 0 only; True/False force it (tests)."""
    if enabled is None:
      import jax

      enabled = jax.process_index() == 0
    self.logdir = files.join(workdir, TENSORBOARD_DIR)
    self.enabled = bool(enabled)
    self._path = files.join(
      self.logdir, f'events.out.tfevents.{time.time():.6f}.{socket.gethostname()}'
    )
    self._unwritten = io.BytesIO()  # framed records not yet in the event file
    self._records = RecordWriter(self._unwritten)
    self._add(event_pb2.Event(wall_time=time.time(), file_version='brain.Event:2'))

  def _add(self, event: event_pb2.Event) -> None:
    self._records.write(event.SerializeToString())

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    """Writes `values` ({tag: number}) at `step`; None values are skipped."""
    if not self.enabled:
      return
    summary = summary_pb2.Summary(
      value=[
        summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
        for tag, value in values.items()
        if value is not None
      ]
    )
    self._add(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
    self.flush()

  def flush(self) -> None:
    data = self._unwritten.getvalue()
    if self.enabled and data:
      files.make_dirs(self.logdir)
      files.append_bytes(self._path, data)
      self._unwritten.seek(0)
      self._unwritten.truncate()

  def close(self) -> None:
    self.flush()
    self.enabled = False

  def __enter__(self) -> SummaryWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
