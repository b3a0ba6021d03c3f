"""RLRN: Gaussian-noise images with uniform random labels, generated on device from indices.

Example i is a pure function of (data key, i): its pixels come from `fold_in(image_key, i)` and
its label from `fold_in(label_key, i)`. Nothing is stored; the same example is produced in every
epoch, on any number of devices or hosts, and after a resume.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_IMAGE_STREAM, _LABEL_STREAM = 0, 1


def noise_images(
  key: jax.Array, indices: jax.Array, shape: tuple[int, int, int], mean: float, std: float
) -> jax.Array:
  """Images (len(indices), H, W, C): every pixel and channel i.i.d. N(mean, std^2)."""
  image_key = jax.random.fold_in(key, _IMAGE_STREAM)

  def draw(i):
    return jax.random.normal(jax.random.fold_in(image_key, i), shape, jnp.float32)

  return mean + std * jax.vmap(draw)(indices)


def random_labels(key: jax.Array, indices: jax.Array, num_classes: int) -> jax.Array:
  """Uniform random labels in [0, num_classes), one per example index."""
  label_key = jax.random.fold_in(key, _LABEL_STREAM)

  def draw(i):
    return jax.random.randint(jax.random.fold_in(label_key, i), (), 0, num_classes)

  return jax.vmap(draw)(indices).astype(jnp.int32)
