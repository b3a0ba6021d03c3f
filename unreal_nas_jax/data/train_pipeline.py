"""Retraining input pipelines: tfds CIFAR-10/100 and ImageNet, image folders, label CSVs, fake data.

Two ways to feed a step, chosen by `PipelineSpec.on_device` ('auto': on the device for CIFAR and
image folders whose decoded training images fit in `DEVICE_DATA_BYTES`, crop/flip augmentation):
  host    each process reads its shard, decodes and augments on the host CPU with TensorFlow (kept
          off every accelerator), and `global_batches` turns the per-process batches into global
          device arrays on the `data` mesh axis, one batch ahead of the step (a background thread).
  device  the split is decoded once into a uint8 array on every device; each batch is gathered
          and augmented (crop with padding, flip, normalisation, cutout) by one jitted function.
`Source.batches(split, epoch, start_step)` gives the global batches of either.

Every random choice is a stateless function of (seed, epoch, example position): the order of an
epoch and its augmentations are the same every time the epoch runs, and `start_step` skips the
first batches of an epoch without decoding them (host) or computing them (device), so a run
resumed mid-epoch sees exactly the batches of an uninterrupted one.

CIFAR (spec section 6) and image folders: random crop with `crop_padding`-pixel zero padding,
horizontal flip, normalisation, then cutout (a square at a random centre, clipped at the borders,
set to 0). ImageNet: random-resized crop 224 (scale 0.08-1, ratio 3/4-4/3), flip, colour jitter
(brightness, contrast, saturation 0.4, hue 0.2 on a [0, 1] scale), normalisation; evaluation
resizes the short side to 256 and centre-crops 224. CheXpert-style CSVs ('affine'): resize to the
image size, a random affine map (rotation, translation, scale, filled with black), an optional flip
and normalisation; evaluation only resizes.

tfds images are read encoded (`tfds.decode.SkipDecoding`), shuffled as encoded bytes and decoded
after the shuffle in parallel: the ImageNet shuffle buffer of `IMAGENET_SHUFFLE_BUFFER` records
then holds JPEG bytes (about 110 kB each on average) instead of decoded images (about 500 kB),
and training decodes only the sampled crop (`decode_and_crop_jpeg`). Host memory of one ImageNet
process: the shuffle buffer (IMAGENET_SHUFFLE_BUFFER x ~110 kB), plus the batches in flight (each
per-process batch x 224 x 224 x 3 x 4 bytes; two prefetched by tf.data, two in `global_batches`),
plus TensorFlow's decode workers.

An image that cannot be decoded stops the run with an `ImageDecodeError` naming the file: skipping
it would change the number of examples and the positions every later random choice depends on
(unless every file were decoded once up front), and a silently dropped image (an X-ray) is a data
problem its owner should see.
"""

from __future__ import annotations

import dataclasses
import functools
import queue
import threading
import time
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.data import augment, folder, label_csv, tfds_cifar
from unreal_nas_jax.data.datasets import CHEXPERT_LABELS, DATASETS

IMAGENET_SHUFFLE_BUFFER = 16_384
SHUFFLE_BUFFER = 50_000  # other tfds datasets (CIFAR: the whole split)
DEVICE_DATA_BYTES = 1 << 30  # 'auto' keeps a folder's decoded training images on device up to this
AUGMENTATIONS = ('crop_flip', 'affine', 'none')
FAKE_FOLDER_CLASSES = 10  # a fake image folder's classes (benchmarks of the step)
ON_DEVICE = ('auto', 'device', 'host')


class ImageDecodeError(ConfigError):
  """An image file that TensorFlow cannot decode (the message names the file)."""


@dataclasses.dataclass(frozen=True)
class PipelineSpec:
  """Everything the input pipeline reads; hashable (cached file lists key on it).

  The folder and CSV sources fill `names`, `mean` and `std` in `resolve` (from the data when the
  config leaves them empty).
  """

  dataset: str  # a DATASETS name
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
  # Folder and CSV datasets.
  data_dir: str = ''
  channels: int = 3
  val_fraction: float = 0.1  # folder without val/: held-out fraction of each class
  mean: tuple[float, ...] = ()  # () : the DATASETS table's, or computed from the data
  std: tuple[float, ...] = ()
  stats_images: int = 2000  # training images the computed mean/std are taken over
  augment: str = 'crop_flip'  # AUGMENTATIONS (CIFAR: always crop_flip; ImageNet: its own)
  flip: bool = True
  affine_degrees: float = 10.0
  affine_translate: float = 0.05  # fraction of the image size
  affine_scale: float = 0.05  # scale drawn from [1 - s, 1 + s]
  csv_train: str = 'train.csv'  # relative to data_dir (label_csv.find_label_csv)
  csv_eval: str = 'valid.csv'
  csv_path_column: str = 'Path'
  csv_label_columns: tuple[str, ...] = CHEXPERT_LABELS
  uncertainty: str = 'ones'  # label_csv.UNCERTAINTY_POLICIES
  on_device: str = 'auto'  # ON_DEVICE
  names: tuple[str, ...] = ()  # classes or labels (filled by `resolve` for file sources)

  @property
  def source(self) -> str:
    return DATASETS[self.dataset].source

  @property
  def multilabel(self) -> bool:
    return DATASETS[self.dataset].multilabel

  @property
  def num_classes(self) -> int:
    if self.source == 'tfds':
      return DATASETS[self.dataset].num_classes
    return len(self.names)

  @property
  def image_channels(self) -> int:
    return 3 if self.source == 'tfds' else self.channels


def resolve(spec: PipelineSpec) -> PipelineSpec:
  """`spec` with the class (label) names and normalisation statistics of a folder or CSV dataset.

  Raises the one-line ConfigError of a bad layout, CSV or policy now, before a run writes anything.
  """
  if spec.source == 'tfds':
    return spec
  if spec.fake_data:  # random images and labels of the configured shapes; no directory read
    names = (
      tuple(spec.csv_label_columns)
      if spec.source == 'csv'
      else tuple(f'class_{i}' for i in range(FAKE_FOLDER_CLASSES))
    )
    fill = (0.5,) * spec.channels
    return dataclasses.replace(spec, names=names, mean=spec.mean or fill, std=spec.std or fill)
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


def _stats(spec: PipelineSpec):
  if spec.source == 'tfds':
    return DATASETS[spec.dataset].mean, DATASETS[spec.dataset].std
  c = spec.channels
  mean = spec.mean * c if len(spec.mean) == 1 else spec.mean
  std = spec.std * c if len(spec.std) == 1 else spec.std
  return tuple(mean), tuple(std)


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
  for images, _ in _decoded(spec, files.take(pick), batch=64):
    x = images.astype(np.float64) / 255.0
    total += x.sum(axis=(0, 1, 2))
    squares += (x**2).sum(axis=(0, 1, 2))
    pixels += x.shape[0] * x.shape[1] * x.shape[2]
  mean = total / pixels
  std = np.sqrt(np.maximum(squares / pixels - mean**2, 1e-12))
  return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


def _load_image(spec: PipelineSpec, path):
  """Decoded (image_size, image_size, channels) float32 in [0, 1] (any size in, squashed)."""
  import tensorflow as tf

  image = tf.io.decode_image(tf.io.read_file(path), channels=spec.channels, expand_animations=False)
  image = tf.cast(image, tf.float32) / 255.0
  size = spec.image_size
  return tf.image.resize(image, (size, size), antialias=True)


def _decoded(spec: PipelineSpec, files: folder.FileList, batch: int):
  """(uint8 images, indices) batches of `files` decoded at the image size, in order."""
  import tensorflow as tf

  tfds_cifar.hide_accelerators_from_tensorflow()
  paths = np.asarray(files.paths, object)
  ds = tf.data.Dataset.from_tensor_slices((paths.astype(str), np.arange(len(paths))))
  ds = ds.map(
    lambda p, i: (tf.cast(tf.round(_load_image(spec, p) * 255.0), tf.uint8), i),
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
      raise _decode_error(spec, paths[done : done + batch], e) from None
    done += len(indices)
    yield images.numpy(), indices.numpy()


def _decode_error(spec: PipelineSpec, paths, error) -> ImageDecodeError:
  """The one-line error naming the first of `paths` that does not decode (the batch that failed)."""
  import tensorflow as tf

  for path in paths:
    try:
      _load_image(spec, tf.constant(str(path)))
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
      reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      return ImageDecodeError(
        f'cannot decode image {path} ({reason[:120]}); fix or remove the file (unreadable images '
        'are not skipped: the epoch order depends on every example)'
      )
  return ImageDecodeError(f'an image of {spec.data_dir} cannot be decoded: {error}')


def split_size(spec: PipelineSpec, split: str) -> int:
  """Examples of `split` the run uses (all processes together)."""
  if spec.source != 'tfds' and not spec.fake_data:
    return len(file_list(spec, split))
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
  """Raises the one-line not-prepared (or bad layout) error now, before a run writes anything."""
  if spec.source != 'tfds' and not spec.fake_data:
    for split in ('train', DATASETS[spec.dataset].eval_split):
      file_list(spec, split)
    return
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


def _normalise(image, spec: PipelineSpec):
  import tensorflow as tf

  mean, std = (tf.constant(s, tf.float32) for s in _stats(spec))
  return (image - mean) / std


def _crop_flip_cutout(image, seed, spec: PipelineSpec, train: bool):
  """[0, 1] image -> padded random crop, flip, normalisation, cutout (CIFAR's augmentation)."""
  import tensorflow as tf

  size, channels = spec.image_size, spec.image_channels
  if train:
    s = tf.random.experimental.stateless_split(seed, 4)
    p = spec.crop_padding
    image = tf.pad(image, [[p, p], [p, p], [0, 0]])
    image = tf.image.stateless_random_crop(image, (size, size, channels), seed=s[0])
    if spec.flip or spec.source == 'tfds':
      image = tf.image.stateless_random_flip_left_right(image, seed=s[1])
  image = _normalise(image, spec)
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


def _affine(image, seed, spec: PipelineSpec, train: bool):
  """[0, 1] image -> random rotation, translation and scale about the centre, flip, normalise."""
  import tensorflow as tf

  if train:
    s = tf.random.experimental.stateless_split(seed, 4)
    size = float(spec.image_size)
    degrees, scale_range = spec.affine_degrees, spec.affine_scale
    angle = tf.random.stateless_uniform((), s[0], -degrees, degrees) * (np.pi / 180)
    scale = tf.random.stateless_uniform((), s[1], 1 - scale_range, 1 + scale_range)
    shift = spec.affine_translate * size
    tx, ty = tf.unstack(tf.random.stateless_uniform((2,), s[2], -shift, shift))
    # The transform maps output pixels to input pixels: the inverse of scale * R(angle) about the
    # centre, after the shift.
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    c = (size - 1) / 2
    transform = tf.stack(
      [
        cos,
        sin,
        c - cos * (c + tx) - sin * (c + ty),
        -sin,
        cos,
        c + sin * (c + tx) - cos * (c + ty),
        0.0,
        0.0,
      ]
    )
    image = tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None],
      transforms=transform[None],
      output_shape=tf.shape(image)[:2],
      fill_value=0.0,
      interpolation='BILINEAR',
      fill_mode='CONSTANT',
    )[0]
    if spec.flip:
      image = tf.image.stateless_random_flip_left_right(image, seed=s[3])
  return _normalise(image, spec)


def _preprocess_fn(spec: PipelineSpec, train: bool):
  """(encoded image or file path, seed) -> the normalised, augmented float32 image."""
  import tensorflow as tf

  size = spec.image_size

  def cifar(encoded, seed):
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.cast(image, tf.float32) / 255.0
    image = tf.image.resize(image, (size, size), antialias=True) if size != 32 else image
    image.set_shape((size, size, 3))
    return _crop_flip_cutout(image, seed, spec, train)

  def imagenet(encoded, seed):
    if train:
      s = tf.random.experimental.stateless_split(seed, 8)
      begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.image.extract_jpeg_shape(encoded),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=(1, 1, 4)),
        seed=s[0],
        area_range=(0.08, 1.0),
        aspect_ratio_range=(3 / 4, 4 / 3),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
      )
      # Only the crop is decoded: most of a large JPEG is never expanded.
      window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
      image = tf.image.decode_and_crop_jpeg(encoded, window, channels=3)
      image = tf.cast(image, tf.float32) / 255.0
      image = tf.image.resize(image, (size, size), antialias=True)
      image = tf.image.stateless_random_flip_left_right(image, seed=s[1])
      image = tf.image.stateless_random_brightness(image, 0.4, seed=s[2])
      image = tf.image.stateless_random_contrast(image, 0.6, 1.4, seed=s[3])
      image = tf.image.stateless_random_saturation(image, 0.6, 1.4, seed=s[4])
      image = tf.image.stateless_random_hue(image, 0.2, seed=s[5])
      image = tf.clip_by_value(image, 0.0, 1.0)
    else:
      image = tf.cast(tf.io.decode_jpeg(encoded, channels=3), tf.float32) / 255.0
      shape = tf.cast(tf.shape(image)[:2], tf.float32)
      scale = (size * 256 / 224) / tf.reduce_min(shape)
      resized = tf.cast(tf.round(shape * scale), tf.int32)
      image = tf.image.resize(image, resized, antialias=True)
      image = tf.image.resize_with_crop_or_pad(image, size, size)
    return _normalise(image, spec)

  def files(path, seed):
    image = _load_image(spec, path)
    if spec.augment == 'affine':
      return _affine(image, seed, spec, train)
    if spec.augment == 'none':
      return _normalise(image, spec)
    return _crop_flip_cutout(image, seed, spec, train)

  if spec.source != 'tfds':
    return files
  return imagenet if spec.dataset == 'imagenet' else cifar


def _image_seed(spec: PipelineSpec, epoch: int, position):
  import tensorflow as tf

  return tf.stack([tf.constant(spec.seed * 100_003 + epoch, tf.int64), tf.cast(position, tf.int64)])


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
    yield from _fake_batches(spec, split, epoch, per_process, steps, start_step)
  elif spec.source != 'tfds':
    yield from _file_batches(spec, split, epoch, per_process, steps, start_step)
  else:
    yield from _tfds_batches(spec, split, epoch, per_process, steps, start_step)


def encoded_examples(spec: PipelineSpec, split: str, epoch: int):
  """This process's tfds examples of `split` with encoded images, in the epoch's order.

  A tf.data.Dataset of (position, example, mask): training examples are shuffled while their
  images are still encoded bytes; eval examples keep their order and are padded with masked
  copies to whole batches.
  """
  import tensorflow as tf
  import tensorflow_datasets as tfds

  train = split == 'train'
  per_process = spec.batch_size // jax.process_count()
  builder = _builder(spec)
  n = split_size(spec, split)
  seed = int(np.random.SeedSequence([spec.seed, epoch]).generate_state(1)[0])
  try:
    ds = builder.as_dataset(
      split=tfds.split_for_jax_process(f'{split}[:{n}]', drop_remainder=train),
      # Training reads the files in a seeded order per epoch, which the record shuffle completes.
      shuffle_files=train,
      read_config=tfds.ReadConfig(shuffle_seed=seed) if train else None,
      decoders={'image': tfds.decode.SkipDecoding()},
    )
  except (AssertionError, FileNotFoundError) as e:
    raise _not_prepared(spec, e) from None
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.with_options(options)
  if train:
    buffer = IMAGENET_SHUFFLE_BUFFER if spec.dataset == 'imagenet' else SHUFFLE_BUFFER
    ds = ds.shuffle(min(n, buffer), seed=seed)
  ds = ds.enumerate().map(lambda i, ex: (i, ex, tf.constant(1.0, tf.float32)))
  if not train:
    # Pad the last batch with masked examples, so every eval batch has the same shape.
    pad = steps_per_epoch(spec, split) * per_process - int(ds.cardinality())
    if pad > 0:
      filler = ds.take(1).map(lambda i, ex, m: (i, ex, tf.constant(0.0, tf.float32)))
      ds = ds.concatenate(filler.repeat(pad))
  return ds


def _tfds_batches(spec, split, epoch, per_process, steps, start_step):
  import tensorflow as tf
  import tensorflow_datasets as tfds

  preprocess = _preprocess_fn(spec, split == 'train')

  def prepare(index, example, mask):
    return {
      'image': preprocess(example['image'], _image_seed(spec, epoch, index)),
      'label': tf.cast(example['label'], tf.int32),
      'mask': mask,
    }

  ds = encoded_examples(spec, split, epoch).skip(start_step * per_process)
  ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(per_process, drop_remainder=True).take(steps - start_step).prefetch(2)
  yield from tfds.as_numpy(ds)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
  """The training order of a folder or CSV dataset in `epoch` (a function of seed and epoch)."""
  return np.random.default_rng([seed, epoch, 0x0DE7]).permutation(n)


def _file_batches(spec, split, epoch, per_process, steps, start_step):
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
  preprocess = _preprocess_fn(spec, train)

  def prepare(example):
    out = dict(example)
    out['image'] = preprocess(out.pop('path'), _image_seed(spec, epoch, out.pop('position')))
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
      raise _decode_error(spec, paths[step * per_process : (step + 1) * per_process], e) from None
    yield {k: v.numpy() for k, v in batch.items()}


def _fake_batches(spec, split, epoch, per_process, steps, start_step=0):
  """Random images and labels of the right shapes (the flax examples' fake-data benchmark).

  Each step's global batch is drawn from (seed, epoch, split, step) and every process keeps its
  rows, so the data is the same for any number of processes and devices; a skipped batch costs
  nothing.
  """
  size, total, b = spec.image_size, split_size(spec, split), spec.batch_size
  rows = slice(jax.process_index() * per_process, (jax.process_index() + 1) * per_process)
  split_id = 0 if split == 'train' else 1
  for step in range(start_step, steps):
    rng = np.random.default_rng([spec.seed, epoch, split_id, step])
    position = step * b + np.arange(b)
    # Eval pads its last batch (masked out); training batches are always whole.
    mask = (position < total if split != 'train' else np.ones(b, bool)).astype(np.float32)
    batch = {
      'image': rng.standard_normal((b, size, size, spec.image_channels), np.float32),
      'label': rng.integers(0, spec.num_classes, b).astype(np.int32),
      'mask': mask,
    }
    if spec.multilabel:
      shape = (b, spec.num_classes)
      batch['label'] = rng.integers(0, 2, shape).astype(np.float32)
      batch['label_mask'] = np.ones(shape, np.float32) * mask[:, None]
    yield {k: v[rows] for k, v in batch.items()}


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


def uses_device(spec: PipelineSpec, train_examples: int | None = None) -> bool:
  """Whether batches are gathered and augmented on the device (`on_device`, module docstring).

  Raises ConfigError when `on_device='device'` is asked of a dataset the device path cannot hold.
  """
  if spec.on_device not in ON_DEVICE:
    raise ConfigError(
      f'config.data.on_device={spec.on_device!r} is not allowed; allowed: {", ".join(ON_DEVICE)}'
    )
  if spec.on_device == 'host' or spec.fake_data:
    return False
  if spec.source == 'tfds':
    able = spec.dataset in ('cifar10', 'cifar100') and spec.image_size == 32
    why = 'CIFAR at 32x32, or an image folder with crop_flip augmentation and flips'
  else:
    able = spec.source == 'folder' and spec.augment == 'crop_flip' and spec.flip
    why = 'an image folder with crop_flip augmentation and flips'
  if spec.on_device == 'device':
    if not able:
      raise ConfigError(
        f'config.data.on_device=device is not allowed for {spec.dataset} with these settings; '
        f'the device path takes {why}; use auto or host'
      )
    return True
  if not able:
    return False
  if spec.source == 'tfds':
    return True
  n = train_examples if train_examples is not None else split_size(spec, 'train')
  return n * spec.image_size**2 * spec.channels <= DEVICE_DATA_BYTES


def device_arrays(spec: PipelineSpec, split: str) -> dict[str, np.ndarray]:
  """The whole split, decoded once: {'image': (N, H, W, C) uint8, 'label': (N,) int32}."""
  if spec.source != 'tfds':
    files = file_list(spec, split)
    images = np.zeros((len(files), spec.image_size, spec.image_size, spec.channels), np.uint8)
    for batch, indices in _decoded(spec, files, batch=256):
      images[indices] = batch
    return {'image': images, 'label': np.asarray(files.labels, np.int32)}
  name = DATASETS[spec.dataset].tfds_name
  if split == 'train':
    images, labels = tfds_cifar.load_train_images(name, spec.tfds_data_dir, spec.download)
  else:
    import tensorflow_datasets as tfds

    try:
      ds = _builder(spec).as_dataset(split=split, shuffle_files=False)
    except (AssertionError, FileNotFoundError) as e:
      raise _not_prepared(spec, e) from None
    parts = list(tfds.as_numpy(ds.batch(10_000)))
    images = np.concatenate([p['image'] for p in parts])
    labels = np.concatenate([p['label'] for p in parts]).astype(np.int32)
  n = split_size(spec, split)
  return {'image': images[:n], 'label': labels[:n]}


def device_batch(
  data: dict[str, jax.Array],
  order: jax.Array,
  step,
  key: jax.Array,
  *,
  batch_size: int,
  train: bool,
  mean: tuple[float, ...],
  std: tuple[float, ...],
  crop_padding: int,
  cutout: int,
) -> dict[str, jax.Array]:
  """Global batch `step` of an epoch, gathered from device-resident uint8 images and augmented.

  Example position p of the epoch (p = step * batch_size + i) is image `order[p % N]`; its crop,
  flip and cutout come from `fold_in(key, p)` (`key` folds in the seed and the epoch), so a batch
  is the same whichever step the epoch starts from and however the batch is sharded. Eval batches
  past the end are padded with masked examples.

  Args:
    data: {'image': (N, H, W, C) uint8, 'label': (N,) int32}.
    order: (N,) the epoch's order of the examples.
    step: the batch's index in the epoch.
    key: PRNG key of (seed, epoch).
    batch_size: the global batch.
    train: augment (crop, flip, cutout) and keep every example.
    mean, std: per-channel normalisation of [0, 1] pixels.
    crop_padding: zero pixels padded on every side before the random crop.
    cutout: side of the zeroed square (0: none).

  Returns:
    {'image': (B, H, W, C) float32, 'label': (B,) int32, 'mask': (B,) float32}.
  """
  n = data['image'].shape[0]
  positions = step * batch_size + jnp.arange(batch_size)
  index = order[positions % n]
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  images = (data['image'][index].astype(jnp.float32) / 255.0 - mean) / std
  if train:
    k_crop, k_cut = jax.random.split(key)
    images = augment.random_crop_flip(
      k_crop, images, positions, padding=crop_padding, pad_value=-mean / std
    )
    if cutout:
      images = jax.vmap(functools.partial(_cutout, size=cutout, key=k_cut))(images, positions)
  mask = jnp.ones(batch_size, jnp.float32) if train else (positions < n).astype(jnp.float32)
  return {'image': images, 'label': data['label'][index], 'mask': mask}


def _cutout(image, position, *, size: int, key):
  """Zeroes a `size` square at a random centre (clipped at the borders), as the host path."""
  h, w, _ = image.shape
  centre = jax.random.randint(jax.random.fold_in(key, position), (2,), 0, jnp.array([h, w]))
  half = size // 2
  rows = jnp.arange(h)[:, None]
  cols = jnp.arange(w)[None, :]
  inside = (
    (rows >= centre[0] - half)
    & (rows < centre[0] + half)
    & (cols >= centre[1] - half)
    & (cols < centre[1] + half)
  )
  return image * (~inside)[:, :, None].astype(image.dtype)


def epoch_key(seed: int, epoch: int, split: str) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), epoch), split == 'train')


class Source:
  """The global batches of a run's dataset, on the device or through the host (`uses_device`).

  The device path loads a split to the devices on its first use and keeps it for the run.
  """

  def __init__(self, spec: PipelineSpec, mesh):
    self.spec = spec
    self.mesh = mesh
    self.on_device = uses_device(spec)
    self._arrays: dict[str, dict[str, jax.Array]] = {}
    self._batch_fns: dict[str, object] = {}

  def batches(self, split: str, epoch: int, start_step: int = 0) -> Iterator[dict[str, jax.Array]]:
    """Global batches of `split` in `epoch` from batch `start_step` on."""
    if not self.on_device:
      return global_batches(host_batches(self.spec, split, epoch, start_step), self.mesh)
    return self._device_batches(split, epoch, start_step)

  def _device_batches(self, split, epoch, start_step):
    spec, train = self.spec, split == 'train'
    if split not in self._arrays:
      replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
      arrays = device_arrays(spec, split)
      self._arrays[split] = {
        k: jax.make_array_from_callback(v.shape, replicated, lambda idx, v=v: v[idx])
        for k, v in arrays.items()
      }
      mean, std = _stats(spec)
      self._batch_fns[split] = jax.jit(
        functools.partial(
          device_batch,
          batch_size=spec.batch_size,
          train=train,
          mean=tuple(mean),
          std=tuple(std),
          crop_padding=spec.crop_padding,
          cutout=spec.cutout,
        ),
        out_shardings=jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec('data')),
      )
    data, batch_fn = self._arrays[split], self._batch_fns[split]
    n = data['image'].shape[0]
    key = epoch_key(spec.seed, epoch, split)
    order = jax.random.permutation(jax.random.fold_in(key, n), n) if train else jnp.arange(n)
    for step in range(start_step, steps_per_epoch(spec, split)):
      yield batch_fn(data, order, jnp.int32(step), key)


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
