"""The labelled datasets this project reads through tensorflow-datasets: one table of their facts."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LabelledDataset:
  """Facts of one dataset.

  Attributes:
    tfds_name: its tensorflow-datasets builder.
    num_classes: its true classes.
    image_shape: the shape its networks see (H, W, C).
    eval_split: the split retrained networks are evaluated on.
    split_sizes: examples per split (fake data takes these sizes).
    mean, std: per-channel normalisation of the training images (the DARTS reference's).
  """

  tfds_name: str
  num_classes: int
  image_shape: tuple[int, int, int]
  eval_split: str
  split_sizes: dict[str, int]
  mean: tuple[float, float, float]
  std: tuple[float, float, float]


DATASETS = {
  'cifar10': LabelledDataset(
    tfds_name='cifar10',
    num_classes=10,
    image_shape=(32, 32, 3),
    eval_split='test',
    split_sizes={'train': 50_000, 'test': 10_000},
    mean=(0.49139968, 0.48215827, 0.44653124),
    std=(0.24703233, 0.24348505, 0.26158768),
  ),
  'cifar100': LabelledDataset(
    tfds_name='cifar100',
    num_classes=100,
    image_shape=(32, 32, 3),
    eval_split='test',
    split_sizes={'train': 50_000, 'test': 10_000},
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
  ),
  'imagenet': LabelledDataset(
    tfds_name='imagenet2012',
    num_classes=1000,
    image_shape=(224, 224, 3),
    eval_split='validation',
    split_sizes={'train': 1_281_167, 'validation': 50_000},
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
  ),
}
CIFAR_DATASETS = ('cifar10', 'cifar100')
