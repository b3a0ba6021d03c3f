"""What the retraining input pipeline reads: `PipelineSpec`, shared by every data source.

The sources (`tfds_source`, `file_source`, `fake_source`) and the device path (`device_batches`)
read their settings from it; `pipeline` puts them together.
"""

from __future__ import annotations

import dataclasses

from unreal_nas_jax.data.datasets import CHEXPERT_LABELS, DATASETS

AUGMENTATIONS = ('crop_flip', 'affine', 'none')
ON_DEVICE = ('auto', 'device', 'host')


@dataclasses.dataclass(frozen=True)
class PipelineSpec:
  """Everything the input pipeline reads; hashable (cached file lists key on it).

  The folder and CSV sources fill `names`, `mean` and `std` in `resolve` (from the data when the
  config leaves them empty).
  """

  dataset: str  # a DATASETS name
  image_size: int
  batch_size: int  # global batch
  seed: int
  tfds_data_dir: str = ''
  manual_dir: str = ''  # ImageNet's downloaded tar files
  download: bool = False
  fake_data: bool = False
  num_train_examples: int = 0  # 0: the whole split
  num_eval_examples: int = 0
  cutout: int = 16
  crop_padding: int = 4
  # Folder and CSV datasets.
  data_dir: str = ''
  channels: int = 3
  val_fraction: float = 0.1  # folder without val/: held-out fraction of each class
  mean: tuple[float, ...] = ()  # () : the DATASETS table's, or computed from the data
  std: tuple[float, ...] = ()
  stats_images: int = 2000  # training images the computed mean/std are taken over
  augment: str = 'crop_flip'  # AUGMENTATIONS (CIFAR: always crop_flip; ImageNet: its own)
  flip: bool = True
  affine_degrees: float = 10.0
  affine_translate: float = 0.05  # fraction of the image size
  affine_scale: float = 0.05  # scale drawn from [1 - s, 1 + s]
  csv_train: str = 'train.csv'  # relative to data_dir (label_csv.find_label_csv)
  csv_eval: str = 'valid.csv'
  csv_path_column: str = 'Path'
  csv_label_columns: tuple[str, ...] = CHEXPERT_LABELS
  uncertainty: str = 'ones'  # label_csv.UNCERTAINTY_POLICIES
  on_device: str = 'auto'  # ON_DEVICE
  names: tuple[str, ...] = ()  # classes or labels (filled by `resolve` for file sources)

  @property
  def source(self) -> str:
    return DATASETS[self.dataset].source

  @property
  def multilabel(self) -> bool:
    return DATASETS[self.dataset].multilabel

  @property
  def num_classes(self) -> int:
    if self.source == 'tfds':
      return DATASETS[self.dataset].num_classes
    return len(self.names)

  @property
  def image_channels(self) -> int:
    return 3 if self.source == 'tfds' else self.channels

  def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of [0, 1] pixels: the DATASETS table's for tfds datasets."""
    if self.source == 'tfds':
      return DATASETS[self.dataset].mean, DATASETS[self.dataset].std
    c = self.channels
    mean = self.mean * c if len(self.mean) == 1 else self.mean
    std = self.std * c if len(self.std) == 1 else self.std
    return tuple(mean), tuple(std)

  def examples_used(self, split: str, available: int) -> int:
    """Examples of `split` the run uses out of `available` (0: unknown): the configured
    number when it is set and smaller."""
    limit = self.num_train_examples if split == 'train' else self.num_eval_examples
    return min(limit, available) if limit and available else (limit or available)


def batches_per_epoch(examples: int, batch_size: int, split: str) -> int:
  """Whole global batches per epoch of `examples` (training drops the remainder; eval pads the
  last batch)."""
  if split == 'train':
    return max(examples // batch_size, 1)
  return -(-examples // batch_size)
