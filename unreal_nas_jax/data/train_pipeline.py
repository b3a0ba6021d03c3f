"""Retraining input pipelines: tfds CIFAR-10/100 and ImageNet, or fake data of the same shapes.

Each process reads its own shard of the split (`tfds.split_for_jax_process`), decodes and augments
on the host CPU with TensorFlow (kept off every accelerator), and yields per-process batches that
`global_batches` turns into global device arrays sharded on the `data` mesh axis, one batch ahead
of the step (a background thread), so the device does not wait for the host.

Every random choice is a stateless function of (seed, epoch, example position): the order of an
epoch and its augmentations are the same every time the epoch runs, so a run resumed at an epoch
boundary sees exactly the batches of an uninterrupted one.

CIFAR (spec section 6): random crop 32 with 4-pixel zero padding, horizontal flip, normalisation,
then cutout 16 (a 16x16 square at a random centre, clipped at the borders, set to 0). ImageNet:
random-resized crop 224 (scale 0.08-1, ratio 3/4-4/3), flip, colour jitter (brightness, contrast,
saturation 0.4, hue 0.2 on a [0, 1] scale), normalisation; evaluation resizes the short side to 256
and centre-crops 224.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Iterator

import jax
import numpy as np

from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.data import tfds_cifar
from unreal_nas_jax.data.datasets import DATASETS


@dataclasses.dataclass(frozen=True)
class PipelineSpec:
  dataset: str  # 'cifar10' | 'cifar100' | 'imagenet'
  image_size: int
  batch_size: int  # global batch
  seed: int
  tfds_data_dir: str = ''
  manual_dir: str = ''  # ImageNet's downloaded tar files
  download: bool = False
  fake_data: bool = False
  num_train_examples: int = 0  # 0: the whole split
  num_eval_examples: int = 0
  cutout: int = 16
  crop_padding: int = 4

  @property
  def num_classes(self) -> int:
    return DATASETS[self.dataset].num_classes


def _stats(dataset: str):
  return DATASETS[dataset].mean, DATASETS[dataset].std


def split_size(spec: PipelineSpec, split: str) -> int:
  """Examples of `split` the run uses (all processes together)."""
  limit = spec.num_train_examples if split == 'train' else spec.num_eval_examples
  if spec.fake_data:
    full = DATASETS[spec.dataset].split_sizes[split]
  else:
    try:
      full = _builder(spec).info.splits[split].num_examples
    except KeyError:
      full = 0  # no split metadata (e.g. tfds.testing.mock_data): trust the configured limit
    if not full and not limit:
      raise _not_prepared(spec, KeyError(split))
  return min(limit, full) if limit and full else (limit or full)


def check_prepared(spec: PipelineSpec) -> None:
  """Raises the one-line not-prepared error now, before a run writes anything."""
  if spec.fake_data:
    return
  builder = _builder(spec)
  for split in ('train', DATASETS[spec.dataset].eval_split):
    try:
      builder.as_dataset(split=split)
    except (AssertionError, FileNotFoundError) as e:
      raise _not_prepared(spec, e) from None


def steps_per_epoch(spec: PipelineSpec, split: str) -> int:
  """Whole global batches per epoch (training drops the remainder; eval pads the last batch)."""
  n = split_size(spec, split)
  if split == 'train':
    return max(n // spec.batch_size, 1)
  return -(-n // spec.batch_size)


def _builder(spec: PipelineSpec):
  tfds_cifar.hide_accelerators_from_tensorflow()
  import tensorflow_datasets as tfds

  name = DATASETS[spec.dataset].tfds_name
  download_config = None
  if spec.manual_dir:
    download_config = tfds.download.DownloadConfig(manual_dir=spec.manual_dir)
  builder = tfds.builder(name, data_dir=spec.tfds_data_dir or None)
  if spec.download or (spec.dataset == 'imagenet' and spec.manual_dir):
    if not builder.is_prepared():
      builder.download_and_prepare(download_config=download_config)
  return builder


def _not_prepared(spec: PipelineSpec, error: Exception) -> ConfigError:
  name = DATASETS[spec.dataset].tfds_name
  where = spec.tfds_data_dir or '~/tensorflow_datasets'
  if spec.dataset == 'imagenet':
    how = (
      'download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org into a '
      'directory and pass it as --config.data.manual_dir=DIR (prepared once into '
      '--config.data.tfds_data_dir), or use the fake_data modifier'
    )
  else:
    how = tfds_cifar.prepare_instructions(name, spec.tfds_data_dir or None)
  return tfds_cifar.DatasetNotPreparedError(
    f'{name} is not prepared in {where} ({type(error).__name__}); {how}'
  )


def _preprocess_fn(spec: PipelineSpec, train: bool):
  import tensorflow as tf

  mean, std = (tf.constant(s, tf.float32) for s in _stats(spec.dataset))
  size = spec.image_size

  def cifar(image, seed):
    image = tf.cast(image, tf.float32) / 255.0
    if image.shape[0] != size:
      image = tf.image.resize(image, (size, size), antialias=True)
    if train:
      s = tf.random.experimental.stateless_split(seed, 4)
      p = spec.crop_padding
      image = tf.pad(image, [[p, p], [p, p], [0, 0]])
      image = tf.image.stateless_random_crop(image, (size, size, 3), seed=s[0])
      image = tf.image.stateless_random_flip_left_right(image, seed=s[1])
    image = (image - mean) / std
    if train and spec.cutout:
      centre = tf.random.stateless_uniform((2,), s[2], 0, size, dtype=tf.int32)
      rows = tf.range(size)[:, None]
      cols = tf.range(size)[None, :]
      half = spec.cutout // 2
      inside = (
        (rows >= centre[0] - half)
        & (rows < centre[0] + half)
        & (cols >= centre[1] - half)
        & (cols < centre[1] + half)
      )
      image = image * tf.cast(~inside, tf.float32)[:, :, None]
    return image

  def imagenet(image, seed):
    image = tf.cast(image, tf.float32) / 255.0
    if train:
      s = tf.random.experimental.stateless_split(seed, 8)
      begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=(1, 1, 4)),
        seed=s[0],
        area_range=(0.08, 1.0),
        aspect_ratio_range=(3 / 4, 4 / 3),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
      )
      image = tf.slice(image, begin, crop_size)
      image = tf.image.resize(image, (size, size), antialias=True)
      image = tf.image.stateless_random_flip_left_right(image, seed=s[1])
      image = tf.image.stateless_random_brightness(image, 0.4, seed=s[2])
      image = tf.image.stateless_random_contrast(image, 0.6, 1.4, seed=s[3])
      image = tf.image.stateless_random_saturation(image, 0.6, 1.4, seed=s[4])
      image = tf.image.stateless_random_hue(image, 0.2, seed=s[5])
      image = tf.clip_by_value(image, 0.0, 1.0)
    else:
      shape = tf.cast(tf.shape(image)[:2], tf.float32)
      scale = (size * 256 / 224) / tf.reduce_min(shape)
      resized = tf.cast(tf.round(shape * scale), tf.int32)
      image = tf.image.resize(image, resized, antialias=True)
      image = tf.image.resize_with_crop_or_pad(image, size, size)
    return (image - mean) / std

  return imagenet if spec.dataset == 'imagenet' else cifar


def host_batches(spec: PipelineSpec, split: str, epoch: int) -> Iterator[dict[str, np.ndarray]]:
  """This process's batches of one epoch: {'image': (b, H, W, 3) float32, 'label', 'mask'}.

  `mask` is 0 for the padding examples of the last eval batch (so metrics count real examples).
  """
  train = split == 'train'
  per_process = spec.batch_size // jax.process_count()
  steps = steps_per_epoch(spec, split)
  if spec.fake_data:
    yield from _fake_batches(spec, split, epoch, per_process, steps)
    return
  import tensorflow as tf
  import tensorflow_datasets as tfds

  builder = _builder(spec)
  n = split_size(spec, split)
  try:
    ds = builder.as_dataset(
      split=tfds.split_for_jax_process(f'{split}[:{n}]', drop_remainder=train),
      shuffle_files=False,
      decoders=None,
    )
  except (AssertionError, FileNotFoundError) as e:
    raise _not_prepared(spec, e) from None
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.with_options(options)
  epoch_seed = np.array([spec.seed, epoch], np.int64)
  if train:
    ds = ds.shuffle(
      min(n, 50_000), seed=int(np.random.SeedSequence(epoch_seed).generate_state(1)[0])
    )
  preprocess = _preprocess_fn(spec, train)

  def prepare(index, example):
    seed = tf.stack([tf.constant(spec.seed * 100_003 + epoch, tf.int64), index])
    return {
      'image': preprocess(example['image'], seed),
      'label': tf.cast(example['label'], tf.int32),
      'mask': tf.constant(1.0, tf.float32),
    }

  ds = ds.enumerate().map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if not train:
    # Pad the last batch with masked examples, so every eval batch has the same shape.
    pad = steps * per_process - int(ds.cardinality())
    if pad > 0:
      filler = ds.take(1).map(lambda ex: {**ex, 'mask': tf.constant(0.0, tf.float32)})
      ds = ds.concatenate(filler.repeat(pad))
  ds = ds.batch(per_process, drop_remainder=True).take(steps).prefetch(2)
  yield from tfds.as_numpy(ds)


def _fake_batches(spec, split, epoch, per_process, steps):
  """Random images and labels of the right shapes (the flax examples' fake-data benchmark).

  Each step's global batch is drawn from (seed, epoch, split, step) and every process keeps its
  rows, so the data is the same for any number of processes and devices.
  """
  size, total = spec.image_size, split_size(spec, split)
  rows = slice(jax.process_index() * per_process, (jax.process_index() + 1) * per_process)
  for step in range(steps):
    rng = np.random.default_rng([spec.seed, epoch, 0 if split == 'train' else 1, step])
    images = rng.standard_normal((spec.batch_size, size, size, 3), np.float32)
    labels = rng.integers(0, spec.num_classes, spec.batch_size).astype(np.int32)
    # Eval pads its last batch (masked out); training batches are always whole.
    position = step * spec.batch_size + np.arange(spec.batch_size)
    mask = position < total if split != 'train' else np.ones(spec.batch_size, bool)
    yield {'image': images[rows], 'label': labels[rows], 'mask': mask[rows].astype(np.float32)}


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
