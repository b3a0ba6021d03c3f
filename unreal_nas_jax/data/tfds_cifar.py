"""CIFAR-10/100 training images through tensorflow-datasets, in the reference's index order.

The DARTS reference splits the 50k CIFAR training images by their index in the original binary
files (first 25k for the weights, last 25k for the architecture). tfds stores the examples
shuffled, so the images are read whole and put back in file order by their `id` feature
("train_00000", ...). TensorFlow only reads files here: it is kept off every accelerator.
"""

from __future__ import annotations

import numpy as np

from unreal_nas_jax.config_utils import ConfigError


class DatasetNotPreparedError(ConfigError):
  """The tfds dataset has not been built in the data dir (and downloading was not asked for)."""


def hide_accelerators_from_tensorflow() -> None:
  """TensorFlow reads files only: it must not reserve GPU memory that JAX needs."""
  import tensorflow as tf  # TensorFlow is only needed by the tfds datasets

  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:
    pass  # TensorFlow was initialised earlier in this process; its GPU list is fixed by now.


def prepare_instructions(name: str, data_dir: str | None) -> str:
  target = f' --data_dir={data_dir}' if data_dir else ''
  return (
    f'prepare it once with network (`tfds build {name}{target}`, or this run with '
    f'--config.data.download=True), or point --config.data.tfds_data_dir at a directory that '
    f'holds a prepared {name}'
  )


def load_train_images(
  name: str, data_dir: str | None = None, download: bool = False
) -> tuple[np.ndarray, np.ndarray]:
  """The training split of `name` ('cifar10' or 'cifar100') in the original file order.

  Args:
    name: tfds dataset name.
    data_dir: tfds data dir ('' or None: tfds's default, ~/tensorflow_datasets).
    download: build the dataset (network) when it is not prepared yet.

  Returns:
    (images (N, 32, 32, 3) uint8, labels (N,) int32).

  Raises:
    DatasetNotPreparedError: the dataset is not prepared and `download` is False (one line that
      says how to prepare it).
  """
  hide_accelerators_from_tensorflow()
  import tensorflow_datasets as tfds

  data_dir = data_dir or None
  builder = tfds.builder(name, data_dir=data_dir)
  if download:
    builder.download_and_prepare()
  try:
    dataset = builder.as_dataset(split='train', shuffle_files=False)
  except (AssertionError, FileNotFoundError) as e:
    # tfds raises AssertionError("Dataset ...: could not find data in ...") when not prepared.
    where = data_dir or '~/tensorflow_datasets'
    raise DatasetNotPreparedError(
      f'{name} is not prepared in {where} ({type(e).__name__}); {prepare_instructions(name, data_dir)}'
    ) from None
  images, labels, ids = [], [], []
  for batch in tfds.as_numpy(dataset.batch(10_000)):
    images.append(batch['image'])
    labels.append(batch['label'])
    ids.append(batch['id'])
  images = np.concatenate(images)
  labels = np.concatenate(labels).astype(np.int32)
  order = np.argsort(np.concatenate(ids), kind='stable')
  return images[order], labels[order]
