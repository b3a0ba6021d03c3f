"""Device-side augmentation of search batches (the DARTS reference's CIFAR search transform).

The reference pads each image by 4 zero pixels, crops a random 32x32 window and flips it
horizontally with probability 1/2, on both halves of the search split. Here the images are stored
already normalised, so the padding value is what a zero pixel becomes after normalisation.
Every example's crop and flip come from `fold_in(key, example index)`: the batch is the same on
any number of devices, however it is sharded.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def random_crop_flip(
  key: jax.Array, images: jax.Array, indices: jax.Array, *, padding: int, pad_value
) -> jax.Array:
  """Random `padding`-pixel shifted crops and horizontal flips of (N, H, W, C) images.

  Args:
    key: PRNG key of this batch (e.g. folded with the step).
    images: (N, H, W, C) normalised images.
    indices: (N,) example indices: example i draws from fold_in(key, indices[i]).
    padding: pixels of padding on every side before the crop (reference: 4).
    pad_value: (C,) value of the padding (a black pixel after normalisation).

  Returns:
    (N, H, W, C) augmented images.
  """
  n, h, w, c = images.shape
  fill = jnp.broadcast_to(jnp.asarray(pad_value, images.dtype), (c,))
  padded = jnp.broadcast_to(fill, (n, h + 2 * padding, w + 2 * padding, c))
  padded = padded.at[:, padding : padding + h, padding : padding + w, :].set(images)

  def one(image, index):
    k_y, k_x, k_flip = jax.random.split(jax.random.fold_in(key, index), 3)
    y = jax.random.randint(k_y, (), 0, 2 * padding + 1)
    x = jax.random.randint(k_x, (), 0, 2 * padding + 1)
    crop = jax.lax.dynamic_slice(image, (y, x, 0), (h, w, c))
    return jnp.where(jax.random.bernoulli(k_flip), crop[:, ::-1, :], crop)

  return jax.vmap(one)(padded, indices)
