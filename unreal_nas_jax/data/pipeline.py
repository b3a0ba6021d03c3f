"""The retraining input pipeline: global batches of tfds datasets, image folders, label CSVs or
fake data, by the host or on the device.

Two ways to feed a step, chosen by `PipelineSpec.on_device` ('auto': on the device for CIFAR and
image folders whose decoded training images fit in `device_batches.DEVICE_DATA_BYTES`, crop/flip
augmentation):
  host    each process reads its shard, decodes and augments on the host CPU with TensorFlow (kept
          off every accelerator: `tfds_source`, `file_source`, `host_augment`), and
          `global_batches` turns the per-process batches into global device arrays on the `data`
          mesh axis, one batch ahead of the step (a background thread).
  device  the split is decoded once into a uint8 array on every device; each batch is gathered
          and augmented (crop with padding, flip, normalisation, cutout) by one jitted function
          (`device_batches`).
`Source.batches(split, epoch, start_step)` gives the global batches of either; `fake_source` gives
random data of the right shapes.

Every random choice is a stateless function of (seed, epoch, example position): the order of an
epoch and its augmentations are the same every time the epoch runs, and `start_step` skips the
first batches of an epoch without decoding them (host) or computing them (device), so a run
resumed mid-epoch sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from unreal_nas_jax.data import device_batches, fake_source, file_source, tfds_source
from unreal_nas_jax.data.pipeline_spec import PipelineSpec, batches_per_epoch


def resolve(spec: PipelineSpec) -> PipelineSpec:
  """`spec` with the class (label) names and normalisation statistics of a folder or CSV dataset.

  Raises the one-line ConfigError of a bad layout, CSV or policy now, before a run writes anything.
  """
  if spec.source == 'tfds':
    return spec
  if spec.fake_data:
    return fake_source.resolve(spec)
  return file_source.resolve(spec)


def split_size(spec: PipelineSpec, split: str) -> int:
  """Examples of `split` the run uses (all processes together)."""
  if spec.fake_data:
    return fake_source.split_size(spec, split)
  if spec.source != 'tfds':
    return file_source.split_size(spec, split)
  return tfds_source.split_size(spec, split)


def check_prepared(spec: PipelineSpec) -> None:
  """Raises the one-line not-prepared (or bad layout) error now, before a run writes anything."""
  if spec.fake_data:
    return
  if spec.source != 'tfds':
    file_source.check_prepared(spec)
  else:
    tfds_source.check_prepared(spec)


def steps_per_epoch(spec: PipelineSpec, split: str) -> int:
  """Whole global batches per epoch (training drops the remainder; eval pads the last batch)."""
  return batches_per_epoch(split_size(spec, split), spec.batch_size, split)


def batch_shapes(spec: PipelineSpec) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes and dtypes of a global training batch (every path yields these)."""
  b, size = spec.batch_size, spec.image_size
  shapes = {
    'image': jax.ShapeDtypeStruct((b, size, size, spec.image_channels), jnp.float32),
    'label': jax.ShapeDtypeStruct((b,), jnp.int32),
    'mask': jax.ShapeDtypeStruct((b,), jnp.float32),
  }
  if spec.multilabel:
    shapes['label'] = jax.ShapeDtypeStruct((b, spec.num_classes), jnp.float32)
    shapes['label_mask'] = jax.ShapeDtypeStruct((b, spec.num_classes), jnp.float32)
  return shapes


def host_batches(
  spec: PipelineSpec, split: str, epoch: int, start_step: int = 0
) -> Iterator[dict[str, np.ndarray]]:
  """This process's batches of one epoch from batch `start_step` on (host decoding).

  Yields {'image': (b, H, W, C) float32, 'label': (b,) int32 or (b, L) float32, 'mask': (b,)} and,
  for multi-label data, 'label_mask' (b, L). `mask` is 0 for the padding examples of the last
  eval batch (so metrics count real examples). The skipped batches are never decoded.
  """
  per_process = spec.batch_size // jax.process_count()
  steps = steps_per_epoch(spec, split)
  if spec.fake_data:
    yield from fake_source.batches(spec, split, epoch, per_process, steps, start_step)
  elif spec.source != 'tfds':
    yield from file_source.batches(spec, split, epoch, per_process, steps, start_step)
  else:
    yield from tfds_source.batches(spec, split, epoch, per_process, steps, start_step)


class Source:
  """The global batches of a run's dataset, on the device or through the host (`uses_device`).

  The device path loads a split to the devices on its first use and keeps it for the run.
  """

  def __init__(self, spec: PipelineSpec, mesh):
    self.spec = spec
    self.mesh = mesh
    self.on_device = device_batches.uses_device(spec)
    self._device = device_batches.DeviceBatches(spec, mesh) if self.on_device else None

  def batches(self, split: str, epoch: int, start_step: int = 0) -> Iterator[dict[str, jax.Array]]:
    """Global batches of `split` in `epoch` from batch `start_step` on."""
    if self._device is None:
      return global_batches(host_batches(self.spec, split, epoch, start_step), self.mesh)
    return self._device.batches(split, epoch, start_step, steps_per_epoch(self.spec, split))


def global_batches(batches: Iterator[dict[str, np.ndarray]], mesh, prefetch: int = 2):
  """Turns per-process host batches into global arrays on the `data` axis, `prefetch` ahead."""
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  buffer: queue.Queue = queue.Queue(maxsize=prefetch)
  done = object()

  def produce():
    try:
      for batch in batches:
        buffer.put(
          {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
        )
      buffer.put(done)
    except BaseException as e:  # re-raised in the consumer
      buffer.put(e)

  thread = threading.Thread(target=produce, daemon=True)
  thread.start()
  while True:
    item = buffer.get()
    if item is done:
      return
    if isinstance(item, BaseException):
      raise item
    yield item


def measure_rate(spec: PipelineSpec, steps: int = 20, mesh=None, split: str = 'train') -> dict:
  """Input-pipeline rate of `spec` on this host: global images per second over `steps` batches.

  The first batch (loading, tracing, the tf.data start) is timed apart and not in the rate; each
  batch is waited for on the device, as a step would. Runs at most one epoch's batches.
  """
  if mesh is None:
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
  source = Source(spec, mesh)
  t0 = time.perf_counter()
  batches = source.batches(split, 0)
  jax.block_until_ready(next(batches))
  first_s = time.perf_counter() - t0
  count = 0
  t0 = time.perf_counter()
  for batch in batches:
    jax.block_until_ready(batch)
    count += 1
    if count == steps:
      break
  seconds = time.perf_counter() - t0
  images = count * spec.batch_size
  return {
    'dataset': spec.dataset,
    'path': 'device' if source.on_device else 'host',
    'image_size': spec.image_size,
    'batch_size': spec.batch_size,
    'batches': count,
    'first_batch_s': round(first_s, 3),
    'images_per_s': round(images / seconds, 1) if seconds > 0 and count else None,
  }
