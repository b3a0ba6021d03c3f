"""Tiny image folders and CheXpert-shaped CSVs written by the tests."""

import csv
import pathlib

import numpy as np
from PIL import Image

from unreal_nas_jax.data.datasets import CHEXPERT_LABELS


def write_folder(root, classes=('cat', 'dog', 'eel'), per_class=(6, 2), mode='RGB', fmt='png',
                 size=(20, 24), with_val=True):  # fmt: skip
  """DIR/train/<class>/i.fmt (and DIR/val/...) of random pixels; returns root."""
  root = pathlib.Path(root)
  rng = np.random.default_rng(0)
  shape = size if mode == 'L' else (*size, 3)
  splits = (
    (('train', per_class[0]), ('val', per_class[1])) if with_val else (('train', per_class[0]),)
  )
  for split, n in splits:
    for name in classes:
      folder = root / split / name
      folder.mkdir(parents=True, exist_ok=True)
      for i in range(n):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(pixels, mode).save(folder / f'{i}.{fmt}')
  return root


def write_chexpert(root, rows_train=None, n_valid=6, labels=CHEXPERT_LABELS, archive=False):
  """train.csv / valid.csv with grayscale JPEGs, image paths relative to root; `rows_train`: lists
  of label strings. `archive`: laid out as the unzipped CheXpert-v1.0-small archive (CSVs and
  images in root/CheXpert-v1.0-small/, paths starting with that folder)."""
  root = pathlib.Path(root)
  folder = 'CheXpert-v1.0-small' if archive else 'small'
  csv_dir = root / folder if archive else root
  rng = np.random.default_rng(1)
  if rows_train is None:
    rows_train = [[rng.choice(['1.0', '0.0', '-1.0', '']) for _ in labels] for _ in range(12)]
  rows_valid = [[str(float((i + j) % 2)) for j in range(len(labels))] for i in range(n_valid)]
  for name, rows in (('train', rows_train), ('valid', rows_valid)):
    table = []
    for i, values in enumerate(rows):
      path = f'{folder}/{name}/patient{i:05d}/study1/view1_frontal.jpg'
      (root / path).parent.mkdir(parents=True, exist_ok=True)
      Image.fromarray(rng.integers(0, 256, (20, 18), dtype=np.uint8), 'L').save(root / path)
      table.append([path, 'Female', '60', 'Frontal', *values])
    with open(csv_dir / f'{name}.csv', 'w', newline='') as f:
      writer = csv.writer(f)
      writer.writerow(['Path', 'Sex', 'Age', 'Frontal/Lateral', *labels])
      writer.writerows(table)
  return root
