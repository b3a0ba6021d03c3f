"""Image class folders and CheXpert-style label CSVs on the host path of the input pipeline.

The files are listed once per run (`file_list`: `data.folder`, `data.label_csv`), decoded by
TensorFlow at the image size (any size in, squashed) and augmented by `host_augment` (crop/flip/
cutout, affine, or none); normalisation statistics are computed from the training images when the
config leaves them empty. An epoch's order is a function of (seed, epoch) (`epoch_order`).

An image that cannot be decoded stops the run with an `ImageDecodeError` naming the file: skipping
it would change the number of examples and the positions every later random choice depends on
(unless every file were decoded once up front), and a silently dropped image (an X-ray) is a data
problem its owner should see.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.data import folder, host_augment, label_csv, tfds_cifar
from unreal_nas_jax.data.datasets import DATASETS
from unreal_nas_jax.data.pipeline_spec import AUGMENTATIONS, PipelineSpec


class ImageDecodeError(ConfigError):
  """An image file that TensorFlow cannot decode (the message names the file)."""


def resolve(spec: PipelineSpec) -> PipelineSpec:
  """`spec` with the class (label) names and normalisation statistics of the folder or CSV.

  Raises the one-line ConfigError of a bad layout, CSV or policy now, before a run writes anything.
  """
  if spec.augment not in AUGMENTATIONS:
    raise ConfigError(
      f'config.data.augment={spec.augment!r} is not allowed; allowed: {", ".join(AUGMENTATIONS)}'
    )
  file_list.cache_clear()  # each run (build_train) reads the files as they are now
  names = file_list(spec, 'train').names
  file_list(spec, DATASETS[spec.dataset].eval_split)  # a bad eval CSV fails now, too
  spec = dataclasses.replace(spec, names=names)
  for field in ('mean', 'std'):
    value = getattr(spec, field)
    if value and len(value) not in (1, spec.channels):
      raise ConfigError(
        f'config.data.{field}={",".join(map(str, value))!r} is not allowed; allowed: one value '
        f'or {spec.channels} (config.data.channels), or empty to compute them from the data'
      )
  if not spec.mean or not spec.std:
    mean, std = compute_stats(spec)
    spec = dataclasses.replace(spec, mean=spec.mean or mean, std=spec.std or std)
  return spec


@functools.lru_cache(maxsize=8)
def file_list(spec: PipelineSpec, split: str) -> folder.FileList:
  """The files of `split` of a folder or CSV dataset, cut to the configured number of examples.

  Kept from `resolve` on, so the epochs of a run do not list the folder or parse the CSV again.

  A cut keeps a seeded random subset in file order (the first files would be the first classes).
  """
  train = split == 'train'
  if spec.source == 'folder':
    files = folder.folder_splits(spec.data_dir, spec.val_fraction, spec.seed)[0 if train else 1]
  else:
    csv_name = spec.csv_train if train else spec.csv_eval
    files = label_csv.read_label_csv(
      label_csv.find_label_csv(spec.data_dir, csv_name),
      spec.data_dir,
      spec.csv_path_column,
      tuple(spec.csv_label_columns),
      spec.uncertainty,
    )
  if not len(files):
    raise ConfigError(f'{spec.data_dir}: the {split} split holds no images')
  limit = spec.num_train_examples if train else spec.num_eval_examples
  if limit and limit < len(files):
    keep = np.random.default_rng([spec.seed, 0x5B5E7]).permutation(len(files))[:limit]
    files = files.take(np.sort(keep))
  return files


def split_size(spec: PipelineSpec, split: str) -> int:
  """Examples of `split` the run uses."""
  return len(file_list(spec, split))


def check_prepared(spec: PipelineSpec) -> None:
  """Raises the one-line error of a bad layout or CSV now, before a run writes anything."""
  for split in ('train', DATASETS[spec.dataset].eval_split):
    file_list(spec, split)


def compute_stats(spec: PipelineSpec) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Per-channel mean and std of [0, 1] pixels over up to `stats_images` training images.

  The images are a seeded random subset (the same on every run with this seed), decoded and
  resized to the image size as training sees them before augmentation.
  """
  files = file_list(spec, 'train')
  n = min(spec.stats_images, len(files)) if spec.stats_images else len(files)
  pick = np.sort(np.random.default_rng([spec.seed, 0x57A7]).permutation(len(files))[:n])
  total = np.zeros(spec.channels, np.float64)
  squares = np.zeros(spec.channels, np.float64)
  pixels = 0
  for images, _ in decoded(spec, files.take(pick), batch=64):
    x = images.astype(np.float64) / 255.0
    total += x.sum(axis=(0, 1, 2))
    squares += (x**2).sum(axis=(0, 1, 2))
    pixels += x.shape[0] * x.shape[1] * x.shape[2]
  mean = total / pixels
  std = np.sqrt(np.maximum(squares / pixels - mean**2, 1e-12))
  return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


def load_image(spec: PipelineSpec, path):
  """Decoded (image_size, image_size, channels) float32 in [0, 1] (any size in, squashed)."""
  import tensorflow as tf

  image = tf.io.decode_image(tf.io.read_file(path), channels=spec.channels, expand_animations=False)
  image = tf.cast(image, tf.float32) / 255.0
  size = spec.image_size
  return tf.image.resize(image, (size, size), antialias=True)


def decoded(spec: PipelineSpec, files: folder.FileList, batch: int):
  """(uint8 images, indices) batches of `files` decoded at the image size, in order."""
  import tensorflow as tf

  tfds_cifar.hide_accelerators_from_tensorflow()
  paths = np.asarray(files.paths, object)
  ds = tf.data.Dataset.from_tensor_slices((paths.astype(str), np.arange(len(paths))))
  ds = ds.map(
    lambda p, i: (tf.cast(tf.round(load_image(spec, p) * 255.0), tf.uint8), i),
    num_parallel_calls=tf.data.AUTOTUNE,
    deterministic=True,
  ).batch(batch)
  done = 0
  iterator = iter(ds)
  while True:
    try:
      images, indices = next(iterator)
    except StopIteration:
      return
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
      raise decode_error(spec, paths[done : done + batch], e) from None
    done += len(indices)
    yield images.numpy(), indices.numpy()


def decode_error(spec: PipelineSpec, paths, error) -> ImageDecodeError:
  """The one-line error naming the first of `paths` that does not decode (the batch that failed)."""
  import tensorflow as tf

  for path in paths:
    try:
      load_image(spec, tf.constant(str(path)))
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
      reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      return ImageDecodeError(
        f'cannot decode image {path} ({reason[:120]}); fix or remove the file (unreadable images '
        'are not skipped: the epoch order depends on every example)'
      )
  return ImageDecodeError(f'an image of {spec.data_dir} cannot be decoded: {error}')


def preprocess_fn(spec: PipelineSpec, train: bool):
  """(file path, seed) -> the decoded, resized, augmented and normalised float32 image."""

  def files(path, seed):
    image = load_image(spec, path)
    if spec.augment == 'affine':
      return host_augment.affine(image, seed, spec, train)
    if spec.augment == 'none':
      return host_augment.normalise(image, spec)
    return host_augment.crop_flip_cutout(image, seed, spec, train)

  return files


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
  """The training order of a folder or CSV dataset in `epoch` (a function of seed and epoch)."""
  return np.random.default_rng([seed, epoch, 0x0DE7]).permutation(n)


def batches(spec, split, epoch, per_process, steps, start_step):
  """This process's batches of `split` in `epoch`, batches `start_step` to `steps` - 1."""
  import tensorflow as tf

  tfds_cifar.hide_accelerators_from_tensorflow()
  train = split == 'train'
  files = file_list(spec, split)
  n = len(files)
  order = epoch_order(spec.seed, epoch, n) if train else np.arange(n)
  # Global batch `step` holds positions step*B ... step*B + B - 1; this process takes its slice.
  first = jax.process_index() * per_process
  positions = (
    np.arange(start_step, steps)[:, None] * spec.batch_size + first + np.arange(per_process)
  ).reshape(-1)
  mask = np.ones(len(positions), np.float32) if train else (positions < n).astype(np.float32)
  index = order[positions % n]  # training wraps round when the split is smaller than a batch
  paths = np.asarray(files.paths, object)[index].astype(str)
  columns = {
    'path': paths,
    'label': files.labels[index],
    'position': positions.astype(np.int64),
    'mask': mask,
  }
  if files.label_mask is not None:
    columns['label_mask'] = files.label_mask[index] * mask[:, None]
  preprocess = preprocess_fn(spec, train)

  def prepare(example):
    out = dict(example)
    out['image'] = preprocess(
      out.pop('path'), host_augment.image_seed(spec, epoch, out.pop('position'))
    )
    return out

  ds = tf.data.Dataset.from_tensor_slices(columns)
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.with_options(options).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
  iterator = iter(ds.batch(per_process).prefetch(2))
  for step in range(steps - start_step):
    try:
      batch = next(iterator)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
      raise decode_error(spec, paths[step * per_process : (step + 1) * per_process], e) from None
    yield {k: v.numpy() for k, v in batch.items()}


def arrays(spec: PipelineSpec, split: str) -> dict[str, np.ndarray]:
  """The whole split, decoded once: {'image': (N, H, W, C) uint8, 'label': (N,) int32}."""
  files = file_list(spec, split)
  images = np.zeros((len(files), spec.image_size, spec.image_size, spec.channels), np.uint8)
  for batch, indices in decoded(spec, files, batch=256):
    images[indices] = batch
  return {'image': images, 'label': np.asarray(files.labels, np.int32)}
