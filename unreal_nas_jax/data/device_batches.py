"""The device path of the input pipeline: a split decoded once into a uint8 array on every device,
each batch gathered and augmented (crop with padding, flip, normalisation, cutout) by one jitted
function (`device_batch`).

'auto' (`uses_device`) takes it for CIFAR at 32x32 and for image folders with crop/flip
augmentation whose decoded training images fit in `DEVICE_DATA_BYTES`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.data import augment, file_source, tfds_source
from unreal_nas_jax.data.pipeline_spec import ON_DEVICE, PipelineSpec

DEVICE_DATA_BYTES = 1 << 30  # 'auto' keeps a folder's decoded training images on device up to this


def uses_device(spec: PipelineSpec, train_examples: int | None = None) -> bool:
  """Whether batches are gathered and augmented on the device (`on_device`, `data.pipeline`).

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
  n = train_examples if train_examples is not None else file_source.split_size(spec, 'train')
  return n * spec.image_size**2 * spec.channels <= DEVICE_DATA_BYTES


def device_arrays(spec: PipelineSpec, split: str) -> dict[str, np.ndarray]:
  """The whole split, decoded once: {'image': (N, H, W, C) uint8, 'label': (N,) int32}."""
  if spec.source == 'tfds':
    return tfds_source.arrays(spec, split)
  return file_source.arrays(spec, split)


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


class DeviceBatches:
  """The global batches of a dataset held on the devices: each split is loaded to the devices on
  its first use and kept for the run, with its jitted batch function."""

  def __init__(self, spec: PipelineSpec, mesh):
    self.spec = spec
    self.mesh = mesh
    self._arrays: dict[str, dict[str, jax.Array]] = {}
    self._batch_fns: dict[str, object] = {}

  def batches(self, split: str, epoch: int, start_step: int, steps: int):
    """Global batches `start_step` to `steps` - 1 of `split` in `epoch`."""
    spec, train = self.spec, split == 'train'
    if split not in self._arrays:
      replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
      arrays = device_arrays(spec, split)
      self._arrays[split] = {
        k: jax.make_array_from_callback(v.shape, replicated, lambda idx, v=v: v[idx])
        for k, v in arrays.items()
      }
      mean, std = spec.normalisation()
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
    for step in range(start_step, steps):
      yield batch_fn(data, order, jnp.int32(step), key)
