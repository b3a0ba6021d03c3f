"""Augmentation on the host, in TensorFlow (the host path of the input pipeline).

Every random choice is a stateless function of `image_seed(spec, epoch, position)`, so an epoch's
augmentations are the same every time it runs. CIFAR and image folders: random crop with
`crop_padding`-pixel zero padding, horizontal flip, normalisation, then cutout (a square at a
random centre, clipped at the borders, set to 0). CheXpert-style CSVs ('affine'): a random affine
map (rotation, translation, scale, filled with black), an optional flip and normalisation.
The device path's crop, flip and cutout are `data.augment` and `data.device_batches`.
"""

from __future__ import annotations

import numpy as np

from unreal_nas_jax.data.pipeline_spec import PipelineSpec


def normalise(image, spec: PipelineSpec):
  """[0, 1] pixels -> (pixels - mean) / std per channel (`PipelineSpec.normalisation`)."""
  import tensorflow as tf

  mean, std = (tf.constant(s, tf.float32) for s in spec.normalisation())
  return (image - mean) / std


def crop_flip_cutout(image, seed, spec: PipelineSpec, train: bool):
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
  image = normalise(image, spec)
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


def affine(image, seed, spec: PipelineSpec, train: bool):
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
  return normalise(image, spec)


def image_seed(spec: PipelineSpec, epoch: int, position):
  """The stateless seed of the example at `position` of `epoch`."""
  import tensorflow as tf

  return tf.stack([tf.constant(spec.seed * 100_003 + epoch, tf.int64), tf.cast(position, tf.int64)])
