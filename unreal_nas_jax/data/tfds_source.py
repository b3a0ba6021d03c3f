"""tfds datasets (CIFAR-10/100, ImageNet) on the host path of the input pipeline.

Images are read encoded (`tfds.decode.SkipDecoding`), shuffled as encoded bytes and decoded
after the shuffle in parallel: the ImageNet shuffle buffer of `IMAGENET_SHUFFLE_BUFFER` records
then holds JPEG bytes (about 110 kB each on average) instead of decoded images (about 500 kB),
and training decodes only the sampled crop (`decode_and_crop_jpeg`). Host memory of one ImageNet
process: the shuffle buffer (IMAGENET_SHUFFLE_BUFFER x ~110 kB), plus the batches in flight (each
per-process batch x 224 x 224 x 3 x 4 bytes; two prefetched by tf.data, two in
`pipeline.global_batches`), plus TensorFlow's decode workers.

ImageNet's augmentation: random-resized crop 224 (scale 0.08-1, ratio 3/4-4/3), flip, colour
jitter (brightness, contrast, saturation 0.4, hue 0.2 on a [0, 1] scale), normalisation;
evaluation resizes the short side to 256 and centre-crops 224. CIFAR's is `host_augment`'s.
"""

from __future__ import annotations

import jax
import numpy as np

from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.data import host_augment, tfds_cifar
from unreal_nas_jax.data.datasets import DATASETS
from unreal_nas_jax.data.pipeline_spec import PipelineSpec, batches_per_epoch

IMAGENET_SHUFFLE_BUFFER = 16_384
SHUFFLE_BUFFER = 50_000  # other tfds datasets (CIFAR: the whole split)


def builder(spec: PipelineSpec):
  """The dataset's tfds builder, prepared first when the config asks for a download (or gives
  ImageNet's manual_dir)."""
  tfds_cifar.hide_accelerators_from_tensorflow()
  import tensorflow_datasets as tfds

  name = DATASETS[spec.dataset].tfds_name
  download_config = None
  if spec.manual_dir:
    download_config = tfds.download.DownloadConfig(manual_dir=spec.manual_dir)
  found = tfds.builder(name, data_dir=spec.tfds_data_dir or None)
  if spec.download or (spec.dataset == 'imagenet' and spec.manual_dir):
    if not found.is_prepared():
      found.download_and_prepare(download_config=download_config)
  return found


def not_prepared(spec: PipelineSpec, error: Exception) -> ConfigError:
  """The one-line error of a dataset that is not prepared, with how to prepare it."""
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


def split_size(spec: PipelineSpec, split: str) -> int:
  """Examples of `split` the run uses (all processes together)."""
  try:
    available = builder(spec).info.splits[split].num_examples
  except KeyError:
    available = 0  # no split metadata (e.g. tfds.testing.mock_data): trust the configured limit
  used = spec.examples_used(split, available)
  if not used:
    raise not_prepared(spec, KeyError(split))
  return used


def check_prepared(spec: PipelineSpec) -> None:
  """Raises the one-line not-prepared error now, before a run writes anything."""
  prepared = builder(spec)
  for split in ('train', DATASETS[spec.dataset].eval_split):
    try:
      prepared.as_dataset(split=split)
    except (AssertionError, FileNotFoundError) as e:
      raise not_prepared(spec, e) from None


def preprocess_fn(spec: PipelineSpec, train: bool):
  """(encoded image, seed) -> the normalised, augmented float32 image: CIFAR's augmentation
  (`host_augment.crop_flip_cutout`) or ImageNet's (module docstring)."""
  import tensorflow as tf

  size = spec.image_size

  def cifar(encoded, seed):
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.cast(image, tf.float32) / 255.0
    image = tf.image.resize(image, (size, size), antialias=True) if size != 32 else image
    image.set_shape((size, size, 3))
    return host_augment.crop_flip_cutout(image, seed, spec, train)

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
    return host_augment.normalise(image, spec)

  return imagenet if spec.dataset == 'imagenet' else cifar


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
  prepared = builder(spec)
  n = split_size(spec, split)
  seed = int(np.random.SeedSequence([spec.seed, epoch]).generate_state(1)[0])
  try:
    ds = prepared.as_dataset(
      split=tfds.split_for_jax_process(f'{split}[:{n}]', drop_remainder=train),
      # Training reads the files in a seeded order per epoch, which the record shuffle completes.
      shuffle_files=train,
      read_config=tfds.ReadConfig(shuffle_seed=seed) if train else None,
      decoders={'image': tfds.decode.SkipDecoding()},
    )
  except (AssertionError, FileNotFoundError) as e:
    raise not_prepared(spec, e) from None
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.with_options(options)
  if train:
    buffer = IMAGENET_SHUFFLE_BUFFER if spec.dataset == 'imagenet' else SHUFFLE_BUFFER
    ds = ds.shuffle(min(n, buffer), seed=seed)
  ds = ds.enumerate().map(lambda i, ex: (i, ex, tf.constant(1.0, tf.float32)))
  if not train:
    # Pad the last batch with masked examples, so every eval batch has the same shape.
    pad = batches_per_epoch(n, spec.batch_size, split) * per_process - int(ds.cardinality())
    if pad > 0:
      filler = ds.take(1).map(lambda i, ex, m: (i, ex, tf.constant(0.0, tf.float32)))
      ds = ds.concatenate(filler.repeat(pad))
  return ds


def batches(spec, split, epoch, per_process, steps, start_step):
  """This process's batches of `split` in `epoch`, batches `start_step` to `steps` - 1."""
  import tensorflow as tf
  import tensorflow_datasets as tfds

  preprocess = preprocess_fn(spec, split == 'train')

  def prepare(index, example, mask):
    return {
      'image': preprocess(example['image'], host_augment.image_seed(spec, epoch, index)),
      'label': tf.cast(example['label'], tf.int32),
      'mask': mask,
    }

  ds = encoded_examples(spec, split, epoch).skip(start_step * per_process)
  ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(per_process, drop_remainder=True).take(steps - start_step).prefetch(2)
  yield from tfds.as_numpy(ds)


def arrays(spec: PipelineSpec, split: str) -> dict[str, np.ndarray]:
  """The whole split, decoded once: {'image': (N, H, W, C) uint8, 'label': (N,) int32}."""
  name = DATASETS[spec.dataset].tfds_name
  if split == 'train':
    images, labels = tfds_cifar.load_train_images(name, spec.tfds_data_dir, spec.download)
  else:
    import tensorflow_datasets as tfds

    try:
      ds = builder(spec).as_dataset(split=split, shuffle_files=False)
    except (AssertionError, FileNotFoundError) as e:
      raise not_prepared(spec, e) from None
    parts = list(tfds.as_numpy(ds.batch(10_000)))
    images = np.concatenate([p['image'] for p in parts])
    labels = np.concatenate([p['label'] for p in parts]).astype(np.int32)
  n = split_size(spec, split)
  return {'image': images[:n], 'label': labels[:n]}
