"""Search datasets as device-side pytrees plus a pure `batch(data, indices, split)` function.

A search dataset has `num_examples` examples for the weights ("train") and a validation half for
the architecture ("val"). On unreal data (UnrealNAS section 3.3) the validation half is the SAME
examples horizontally flipped with the SAME random labels; the training half is used as is.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from unreal_nas_jax.data import noise

SEARCH_DATASETS = ('rlrn',)


def make_search_data(config: ml_collections.ConfigDict, seed: int):
  """Builds the dataset's device arrays and its batch function.

  Args:
    config: the `data` section of a search config.
    seed: the data seed.

  Returns:
    (data pytree of device arrays, batch_fn(data, indices, split) -> (images, labels)).
  """
  if config.name == 'rlrn':
    data = {'key': noise.noise_keys(seed)}
    batch_fn = functools.partial(
      rlrn_batch,
      shape=(config.image_size, config.image_size, config.channels),
      mean=config.noise_mean,
      std=config.noise_std,
      num_classes=config.num_classes,
    )
    return data, batch_fn
  raise ValueError(
    f'config.data.name={config.name!r} is not allowed; allowed: {", ".join(SEARCH_DATASETS)}'
  )


def flip_horizontal(images: jax.Array) -> jax.Array:
  return images[:, :, ::-1, :]


def rlrn_batch(
  data: dict[str, Any], indices: jax.Array, split: str, *, shape, mean, std, num_classes
):
  images = noise.noise_images(data['key'], indices, shape, mean, std)
  labels = noise.random_labels(data['key'], indices, num_classes)
  if split == 'val':
    images = flip_horizontal(images)
  return images, labels


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
