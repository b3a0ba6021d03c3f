"""TensorBoard event files for search and training runs, `DIR/tensorboard/`.

Event files are TFRecord files of `Event` protocol buffers (TensorBoard's own proto modules, no
TensorFlow: the search process stays free of it); each scalar is a `simple_value`, which
TensorBoard's scalar plugin shows; `tensorboard --logdir DIR` shows the curves.

Loops call `search_epoch_scalars(record)` or `train_epoch_scalars(record)` on the record they
append to metrics.jsonl and pass the result to `SummaryWriter.scalars(epoch, ...)`;
`write_run_events` does the same afterwards from a finished run's metrics.jsonl.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2

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


def _crc32c_table() -> list[int]:
  table = []
  for n in range(256):
    c = n
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
  return table


_CRC32C_TABLE = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
  """The TFRecord framing checksum: CRC-32C, rotated and offset ("masked")."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  crc ^= 0xFFFFFFFF
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _record(data: bytes) -> bytes:
  length = struct.pack('<Q', len(data))
  return (
    length
    + struct.pack('<I', _masked_crc32c(length))
    + data
    + struct.pack('<I', _masked_crc32c(data))
  )


class SummaryWriter:
  """Scalars into `workdir/tensorboard/` on process 0; a no-op on every other process.

  Usage: `writer = SummaryWriter(workdir)`, then `writer.scalars(epoch, {...})` per epoch,
  `writer.close()` at the end (also a context manager). Each run start writes one event file,
  rewritten whole (atomically, through `files`, so gs:// works) at every `scalars` call: a run
  has a few hundred scalars per epoch at most. A resumed run adds a new event file; epochs it
  redoes (those after the last checkpoint of a killed run) then have two points at one step.
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
    first = event_pb2.Event(wall_time=time.time(), file_version='brain.Event:2')
    self._data = bytearray(_record(first.SerializeToString()))

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
    event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
    self._data += _record(event.SerializeToString())
    self.flush()

  def flush(self) -> None:
    if self.enabled:
      files.make_dirs(self.logdir)
      files.write_bytes_atomic(self._path, bytes(self._data))

  def close(self) -> None:
    self.flush()
    self.enabled = False

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
  out: dict[str, dict[int, float]] = {}
  for name in files.list_dir(logdir):
    if 'tfevents' not in name:
      continue
    data = files.as_path(files.join(logdir, name)).read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack_from('<Q', data, offset)
      event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        out.setdefault(value.tag, {})[int(event.step)] = float(value.simple_value)
  return out
