"""The labelled datasets retraining reads: one table of their facts.

`source` says where the examples come from: 'tfds' (a tensorflow-datasets builder), 'folder' (a
directory of class subfolders, `data.folder`) or 'csv' (image paths and per-label columns in CSV
files, `data.label_csv`, CheXpert's layout by default). For the last two the classes (or labels),
the image size, the channels and the normalisation statistics come from the config or the data.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LabelledDataset:
  """Facts of one dataset.

  Attributes:
    tfds_name: its tensorflow-datasets builder ('' for the folder and CSV sources).
    num_classes: its true classes.
    image_shape: the shape its networks see (H, W, C).
    eval_split: the split retrained networks are evaluated on.
    split_sizes: examples per split (fake data takes these sizes; the folder and CSV sources
      count their files).
    mean, std: per-channel normalisation of the training images (the DARTS reference's; empty:
      from the config or computed from the data).
    source: 'tfds', 'folder' or 'csv' (see the module docstring).
    multilabel: each example has several independent binary labels (sigmoid outputs, masked
      binary cross-entropy, ROC AUC) instead of one class.
  """

  tfds_name: str
  num_classes: int
  image_shape: tuple[int, int, int]
  eval_split: str
  split_sizes: dict[str, int]
  mean: tuple[float, ...]
  std: tuple[float, ...]
  source: str = 'tfds'
  multilabel: bool = False


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
  'folder': LabelledDataset(
    tfds_name='',
    num_classes=0,  # the class subfolders
    image_shape=(0, 0, 0),  # data.image_size, data.channels
    eval_split='val',
    split_sizes={'train': 10_000, 'val': 1_000},  # fake_data only
    mean=(),
    std=(),
    source='folder',
  ),
  'chexpert': LabelledDataset(
    tfds_name='',
    num_classes=0,  # data.csv_label_columns (default CHEXPERT_LABELS)
    image_shape=(0, 0, 0),
    eval_split='val',
    split_sizes={'train': 10_000, 'val': 1_000},  # fake_data only
    mean=(),
    std=(),
    source='csv',
    multilabel=True,
  ),
}
CIFAR_DATASETS = ('cifar10', 'cifar100')

# CheXpert's 14 observation columns (Irvin et al. 2019), in the order of its train.csv.
CHEXPERT_LABELS = (
  'No Finding',
  'Enlarged Cardiomediastinum',
  'Cardiomegaly',
  'Lung Opacity',
  'Lung Lesion',
  'Edema',
  'Consolidation',
  'Pneumonia',
  'Atelectasis',
  'Pneumothorax',
  'Pleural Effusion',
  'Pleural Other',
  'Fracture',
  'Support Devices',
)
# The five observations of the CheXpert competition, whose mean AUC the papers report.
CHEXPERT_COMPETITION_LABELS = (
  'Atelectasis',
  'Cardiomegaly',
  'Consolidation',
  'Edema',
  'Pleural Effusion',
)
