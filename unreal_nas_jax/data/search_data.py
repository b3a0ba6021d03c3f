"""Search datasets as device-side pytrees plus a pure `batch(data, indices, split, key)` function.

A search dataset has `num_examples` examples for the weights ("train") and as many for the
architecture ("val"). The four datasets of UnrealNAS (its section 3.3 and table 1):

  rlrn      Gaussian noise with uniform random labels, generated inside the step from indices.
  rlgd      FractalDB-style fractals with uniform random labels, rendered once per run on device.
  rlrd      the CIFAR-10 training images (the first `num_examples` by file index) with uniform
            random labels, read once through tfds and kept on device.
  cifar10   the DARTS real-data baseline: true labels, the first `num_examples` images for the
  cifar100  weights and the next `num_examples` for the architecture, both augmented with the
            reference's random crop (padding 4) and flip.

On unreal data the validation half is the SAME examples horizontally flipped with the SAME random
labels, and the training half is used as is (normalisation only). Random labels are a pure
function of (data seed, example index), drawn once per run and fixed.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from unreal_nas_jax import files
from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.data import augment, fractals, noise, tfds_cifar
from unreal_nas_jax.data.datasets import CIFAR_DATASETS, DATASETS

UNREAL_DATASETS = ('rlrn', 'rlgd', 'rlrd')
REAL_DATASETS = CIFAR_DATASETS  # the real-data baselines
SEARCH_DATASETS = (*UNREAL_DATASETS, *REAL_DATASETS)
FRACTAL_COLOR_MODES = ('color', 'gray')
FRACTAL_CATEGORIES_FILE = 'fractal_categories.json'

# The key streams of the data seed: noise pixels (0) and random labels (1) are `noise`'s.
_FRACTAL_STREAM = 2


def data_seed_key(seed: int) -> jax.Array:
  """The key of the data seed, from which every unreal dataset draws (pixels, labels, fractals)."""
  return jax.random.PRNGKey(seed)


BatchFn = Callable[..., tuple[jax.Array, jax.Array]]


@dataclasses.dataclass
class SearchData:
  """A built search dataset.

  Attributes:
    arrays: the device arrays the batch function reads (a pytree, replicated over devices).
    batch_fn: `batch_fn(arrays, indices, split, key) -> (images, labels)`, pure and jittable;
      `split` is 'train' or 'val', `key` feeds augmentation (unused by unreal data).
    artifacts: files the run keeps in its workdir, {file name: JSON-compatible object}.
  """

  arrays: Any
  batch_fn: BatchFn
  artifacts: dict[str, Any] = dataclasses.field(default_factory=dict)


def make_search_data(
  config: ml_collections.ConfigDict,
  seed: int,
  *,
  workdir: str | None = None,
  abstract: bool = False,
) -> SearchData:
  """Builds the dataset named by `config.name` (a config `search.validate` accepted).

  Args:
    config: the `data` section of a search config.
    seed: the data seed (pixels, fractal systems and random labels).
    workdir: the run's workdir; an rlgd run reuses the `fractal_categories.json` kept there (a
      resumed run renders exactly the images it started with).
    abstract: only the arrays' shapes and dtypes (`jax.ShapeDtypeStruct`s), nothing built or
      read: what compiling the step for another machine needs.

  Returns:
    The `SearchData`.
  """
  batch_fn = _batch_fn(config)
  if abstract:
    return SearchData(_array_shapes(config), batch_fn)
  builders = {'rlrn': _rlrn, 'rlgd': _rlgd, 'rlrd': _rlrd, 'cifar10': _real_cifar,
              'cifar100': _real_cifar}  # fmt: skip
  arrays, artifacts = builders[config.name](config, seed, workdir)
  return SearchData(arrays, batch_fn, artifacts)


def _batch_fn(config: ml_collections.ConfigDict) -> BatchFn:
  """The dataset's pure batch function (it needs the config, not the arrays)."""
  if config.name == 'rlrn':
    return functools.partial(
      rlrn_batch,
      shape=(config.image_size, config.image_size, config.channels),
      mean=config.noise_mean,
      std=config.noise_std,
      num_classes=config.num_classes,
    )
  if config.name in UNREAL_DATASETS:
    return functools.partial(stored_batch, val_offset=0, flip_val=True, augment_both=False)
  mean, std = (np.asarray(s, np.float32) for s in (DATASETS[config.name].mean,
                                                    DATASETS[config.name].std))  # fmt: skip
  return functools.partial(
    stored_batch,
    val_offset=config.num_examples,
    flip_val=False,
    augment_both=True,
    crop_padding=config.crop_padding,
    pad_value=tuple(float(v) for v in -mean / std),  # a zero pixel, normalised
  )


def _array_shapes(config: ml_collections.ConfigDict):
  """The shapes and dtypes of the arrays `make_search_data` would build."""
  if config.name == 'rlrn':
    return {'key': jax.eval_shape(lambda: data_seed_key(0))}
  count = config.num_examples * (2 if config.name in REAL_DATASETS else 1)
  channels = config.channels if config.name == 'rlgd' else 3
  size = config.image_size
  return {
    'images': jax.ShapeDtypeStruct((count, size, size, channels), jnp.float32),
    'labels': jax.ShapeDtypeStruct((count,), jnp.int32),
  }


def flip_horizontal(images: jax.Array) -> jax.Array:
  return images[:, :, ::-1, :]


# ---------------------------------------------------------------------------------------------
# RLRN: nothing stored, every batch generated from its indices.


def _rlrn(config, seed, workdir):
  del config, workdir
  return {'key': data_seed_key(seed)}, {}


def rlrn_batch(
  data: dict[str, Any], indices: jax.Array, split: str, key=None, *, shape, mean, std, num_classes
):
  del key
  images = noise.noise_images(data['key'], indices, shape, mean, std)
  labels = noise.random_labels(data['key'], indices, num_classes)
  if split == 'val':
    images = flip_horizontal(images)
  return images, labels


# ---------------------------------------------------------------------------------------------
# Stored datasets: images (and labels) on device, gathered by index inside the step.


def stored_batch(
  data: dict[str, jax.Array],
  indices: jax.Array,
  split: str,
  key: jax.Array | None = None,
  *,
  val_offset: int,
  flip_val: bool,
  augment_both: bool,
  crop_padding: int = 0,
  pad_value: tuple[float, ...] | None = None,
):
  """Gathers a batch; val examples sit `val_offset` further on.

  Unreal data flips the val examples (`flip_val`); the real baseline augments both halves with
  random crops (`crop_padding` pixels) and flips (`augment_both`).
  """
  if split == 'val':
    indices = indices + val_offset
  images, labels = data['images'][indices], data['labels'][indices]
  if split == 'val' and flip_val:
    images = flip_horizontal(images)
  if augment_both:
    stream = 0 if split == 'train' else 1
    images = augment.random_crop_flip(
      jax.random.fold_in(key, stream), images, indices, padding=crop_padding, pad_value=pad_value
    )
  return images, labels


def random_labels(seed: int, num_examples: int, num_classes: int) -> jax.Array:
  """The random labels of examples 0..num_examples-1 (the same function RLRN draws from)."""
  indices = jnp.arange(num_examples, dtype=jnp.int32)
  return jax.jit(noise.random_labels, static_argnums=2)(data_seed_key(seed), indices, num_classes)


def fractal_categories(config, seed, workdir) -> tuple[fractals.FractalCategories, str]:
  """The run's fractal systems: the workdir's copy, a given file, or a fresh on-device search."""
  kept = files.join(workdir, FRACTAL_CATEGORIES_FILE) if workdir else None
  for path, origin in ((kept, 'the workdir'), (config.fractal_categories_file, 'the config')):
    if path and files.exists(path):
      try:
        categories = fractals.load_categories(path)
      except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f'fractal categories file {path!r} is not readable: {e}') from None
      count = int(categories.maps.shape[0])
      if count != config.fractal_categories:
        raise ConfigError(
          f'{path!r} (from {origin}) holds {count} fractal categories but '
          f'data.fractal_categories={config.fractal_categories}'
        )
      return categories, path
    if path and origin == 'the config':
      raise ConfigError(f'data.fractal_categories_file={path!r} does not exist')
  key = jax.random.fold_in(jax.random.fold_in(data_seed_key(seed), _FRACTAL_STREAM), 0)
  try:
    categories = fractals.search_categories(
      key,
      config.fractal_categories,
      fill_threshold=config.fractal_fill_threshold,
      fill_points=config.fractal_fill_points,
    )
  except ValueError as e:
    raise ConfigError(
      f'fractal category search failed ({e}); check data.fractal_fill_threshold='
      f'{config.fractal_fill_threshold} and data.fractal_fill_points={config.fractal_fill_points}'
    ) from None
  return categories, 'searched'


def render_fractals(config, seed, categories: fractals.FractalCategories) -> jax.Array:
  """The run's `num_examples` fractal images (normalised), rendered on device."""
  key = jax.random.fold_in(jax.random.fold_in(data_seed_key(seed), _FRACTAL_STREAM), 1)
  images, _ = fractals.render_images(
    key,
    categories,
    num_examples=config.num_examples,
    image_size=config.image_size,
    channels=config.channels,
    color_mode=config.fractal_color_mode,
    variation_weight=config.fractal_variation_weight,
    num_points=config.fractal_num_points or None,
    batch_size=config.render_batch_size,
  )
  return images


def _rlgd(config, seed, workdir):
  categories, _ = fractal_categories(config, seed, workdir)
  images = render_fractals(config, seed, categories)
  labels = random_labels(seed, config.num_examples, config.num_classes)
  artifacts = {FRACTAL_CATEGORIES_FILE: fractals.categories_to_json(categories)}
  return {'images': images, 'labels': labels}, artifacts


def cifar_images(config, name: str, count: int) -> tuple[jax.Array, np.ndarray]:
  """The first `count` CIFAR training images, normalised and resized to `config.image_size`.

  Returns:
    (images (count, S, S, 3) float32 on device, true labels (count,)).
  """
  raw, labels = tfds_cifar.load_train_images(name, config.tfds_data_dir, config.download)
  if len(raw) < count:
    raise ConfigError(
      f'{name} in {config.tfds_data_dir or "~/tensorflow_datasets"} has {len(raw)} training '
      f'images; this search needs {count} (data.num_examples={config.num_examples})'
    )
  mean, std = (np.asarray(s, np.float32) for s in (DATASETS[name].mean, DATASETS[name].std))
  images = (jnp.asarray(raw[:count], jnp.float32) / 255.0 - mean) / std
  size = config.image_size
  if size != images.shape[1]:
    # Area-weighted (antialiased) resize for the resolution ablations and small CPU runs.
    images = jax.image.resize(images, (count, size, size, 3), 'linear', antialias=True)
  return images, labels[:count]


def _rlrd(config, seed, workdir):
  del workdir
  images, _ = cifar_images(config, 'cifar10', config.num_examples)
  labels = random_labels(seed, config.num_examples, config.num_classes)
  return {'images': images, 'labels': labels}, {}


def _real_cifar(config, seed, workdir):
  del seed, workdir
  images, labels = cifar_images(config, config.name, 2 * config.num_examples)
  return {'images': images, 'labels': jnp.asarray(labels)}, {}


# ---------------------------------------------------------------------------------------------
# Epoch order.


def epoch_permutations(seed: int, epoch: int, num_examples: int) -> tuple[jax.Array, jax.Array]:
  """Independent example orders of the train and val halves for one epoch (deterministic)."""
  return _permutations(jax.random.PRNGKey(seed), jnp.asarray(epoch, jnp.int32), num_examples)


@functools.partial(jax.jit, static_argnums=2)
def _permutations(key, epoch, num_examples):
  key = jax.random.fold_in(jax.random.fold_in(key, 0x5EA12C4), epoch)
  k_train, k_val = jax.random.split(key)
  return (
    jax.random.permutation(k_train, num_examples).astype(jnp.int32),
    jax.random.permutation(k_val, num_examples).astype(jnp.int32),
  )
