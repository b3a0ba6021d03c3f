"""Image folders: `DIR/train/<class>/*.jpg|png` (and `DIR/val/<class>/...`) as lists of files.

Layouts (the class of an image is the name of its folder; classes are sorted by name):
  DIR/train/<class>/*  and  DIR/val/<class>/*   the given split;
  DIR/train/<class>/*  alone, or DIR/<class>/*   a held-out fraction of every class is the
                                                 validation split (`val_fraction`), chosen by the
                                                 seed, the same on every run with that seed.
Images are found by extension (.jpg, .jpeg, .png; any case) in each class folder and its
subfolders. Only the listing is here; decoding is the input pipeline's (`file_source`).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from unreal_nas_jax.config_utils import ConfigError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')


@dataclasses.dataclass(frozen=True)
class FileList:
  """The examples of one split.

  Attributes:
    paths: image files.
    labels: (N,) int32 class indices, or (N, L) float32 binary targets (multi-label).
    label_mask: (N, L) float32, 1 where the target counts in the loss (multi-label), else None.
    names: the class names (or label names) the indices refer to.
  """

  paths: tuple[str, ...]
  labels: np.ndarray
  label_mask: np.ndarray | None
  names: tuple[str, ...]

  def __len__(self) -> int:
    return len(self.paths)

  def take(self, indices) -> FileList:
    indices = np.asarray(indices, np.int64)
    return FileList(
      tuple(self.paths[i] for i in indices),
      self.labels[indices],
      None if self.label_mask is None else self.label_mask[indices],
      self.names,
    )


def _images_under(folder: str) -> list[str]:
  found = []
  for root, dirs, files in os.walk(folder):
    dirs.sort()
    found.extend(
      os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)
    )
  return found


def _class_folders(split_dir: str) -> dict[str, list[str]]:
  """{class: its images} of a split directory; a class folder without images is an error."""
  names = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith('.'))
  if not names:
    raise ConfigError(
      f'{split_dir} holds no class folders; expected {split_dir}/<class>/*.jpg|png '
      '(config.data.dir)'
    )
  classes = {}
  for name in names:
    images = _images_under(os.path.join(split_dir, name))
    if not images:
      raise ConfigError(
        f'{os.path.join(split_dir, name)} holds no images ({", ".join(IMAGE_EXTENSIONS)}); '
        'remove the folder or add its images'
      )
    classes[name] = images
  return classes


def _file_list(classes: dict[str, list[str]], names: tuple[str, ...]) -> FileList:
  paths = [p for name in names for p in classes.get(name, [])]
  labels = [i for i, name in enumerate(names) for _ in classes.get(name, [])]
  return FileList(tuple(paths), np.asarray(labels, np.int32), None, names)


def folder_splits(data_dir: str, val_fraction: float, seed: int) -> tuple[FileList, FileList]:
  """The training and validation files of an image folder (layouts in the module docstring).

  Args:
    data_dir: the dataset directory (config.data.dir).
    val_fraction: without DIR/val, the fraction of every class held out for validation (at least
      one image of a class with two or more); ignored when DIR/val exists.
    seed: chooses the held-out images.

  Returns:
    (train, val) FileLists over the training classes.

  Raises:
    ConfigError: a missing directory, a folder with no images, a validation class that is not a
      training class, or no validation split (one line, naming the folder or field).
  """
  if not data_dir or not os.path.isdir(data_dir):
    raise ConfigError(f'config.data.dir={data_dir!r} is not a directory of image class folders')
  train_dir = os.path.join(data_dir, 'train')
  val_dir = os.path.join(data_dir, 'val')
  if not os.path.isdir(train_dir):
    train_dir = data_dir  # DIR/<class>/*: the whole folder is the training data
  train_classes = _class_folders(train_dir)
  names = tuple(train_classes)
  train = _file_list(train_classes, names)
  if train_dir != data_dir and os.path.isdir(val_dir):
    val_classes = _class_folders(val_dir)
    unknown = sorted(set(val_classes) - set(names))
    if unknown:
      raise ConfigError(
        f'{val_dir}/{unknown[0]}: class {unknown[0]!r} is not a training class (the classes of '
        f'{train_dir}: {", ".join(names)})'
      )
    return train, _file_list(val_classes, names)
  if not 0 < val_fraction < 1:
    raise ConfigError(
      f'config.data.val_fraction={val_fraction!r} is not allowed: {data_dir} has no val/ '
      'folder, so a fraction in (0, 1) of the training images must be held out'
    )
  rng = np.random.default_rng([seed, 0x5EED_F01D])
  held = []
  for label in range(len(names)):
    members = np.flatnonzero(train.labels == label)
    count = int(round(val_fraction * len(members)))
    if len(members) >= 2:
      count = min(max(count, 1), len(members) - 1)  # both splits see every class
    else:
      count = 0
    held.extend(rng.permutation(members)[:count].tolist())
  is_val = np.zeros(len(train), bool)
  is_val[held] = True
  return train.take(np.flatnonzero(~is_val)), train.take(np.flatnonzero(is_val))
