"""Multi-label CSVs in CheXpert's layout: an image path column and one column per label.

CheXpert (Irvin et al. 2019) writes each observation as 1 (positive), 0 (negative), -1 (uncertain)
or blank (not mentioned in the report). Blank counts as negative (0), as in the CheXpert baselines;
the uncertainty policy maps -1:
  ones    -> 1 (U-Ones)
  zeros   -> 0 (U-Zeros)
  ignore  -> masked out of the loss (U-Ignore): the entry's mask is 0.
Evaluation CSVs (CheXpert's valid.csv) hold only 0 and 1; the same rules apply to them. Image
paths are relative to the dataset directory (config.data.dir). An unzipped CheXpert archive is
found as it is: DIR/CheXpert-v1.0-small/train.csv, whose paths start with CheXpert-v1.0-small/
(`find_label_csv`).
"""

from __future__ import annotations

import csv
import os

import numpy as np

from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.data.folder import FileList

UNCERTAINTY_POLICIES = ('ones', 'zeros', 'ignore')
# The top folders of the CheXpert archives; their CSVs' image paths start with the folder's name.
ARCHIVE_FOLDERS = ('CheXpert-v1.0-small', 'CheXpert-v1.0')


def find_label_csv(data_dir: str, name: str) -> str:
  """The CSV `name` (config.data.csv_train or csv_eval) of the dataset in `data_dir`.

  `data_dir/name`, or an absolute `name` as it is; where `data_dir/name` does not exist and
  `data_dir` holds an unzipped CheXpert archive, the archive's CSV (its image paths are relative to
  `data_dir` too).

  Raises:
    ConfigError: none of these exists (one line naming the places looked at).
  """
  if os.path.isabs(name):
    candidates = [name]
  else:
    folders = ('', *ARCHIVE_FOLDERS)
    candidates = [os.path.join(data_dir, folder, name) for folder in folders]
  for path in candidates:
    if os.path.isfile(path):
      return path
  raise ConfigError(
    f'label CSV {" or ".join(candidates)} does not exist (config.data.dir, config.data.csv_*)'
  )


def apply_policy(values: np.ndarray, policy: str) -> tuple[np.ndarray, np.ndarray]:
  """(targets, mask) of raw label values (1, 0, -1 or NaN for blank) under `policy`.

  Args:
    values: (N, L) float array of 1, 0, -1 and NaN.
    policy: one of UNCERTAINTY_POLICIES.

  Returns:
    (targets (N, L) float32 in {0, 1}, mask (N, L) float32: 0 for entries out of the loss).
  """
  if policy not in UNCERTAINTY_POLICIES:
    raise ConfigError(
      f'config.data.uncertainty={policy!r} is not allowed; allowed: {", ".join(UNCERTAINTY_POLICIES)}'
    )
  values = np.where(np.isnan(values), 0.0, values)  # blank: not mentioned, a negative
  uncertain = values == -1
  targets = np.where(uncertain, 1.0 if policy == 'ones' else 0.0, values)
  mask = np.where(uncertain & (policy == 'ignore'), 0.0, 1.0)
  return targets.astype(np.float32), mask.astype(np.float32)


def _value(text: str, path: str, row: int, column: str) -> float:
  text = text.strip()
  if not text:
    return np.nan
  try:
    value = float(text)
  except ValueError:
    value = None
  if value not in (1.0, 0.0, -1.0):
    raise ConfigError(
      f'{path} row {row} column {column!r}: {text!r} is not a label (allowed: 1, 0, -1, blank)'
    )
  return value


def read_label_csv(
  csv_path: str,
  data_dir: str,
  path_column: str,
  label_columns: tuple[str, ...],
  policy: str,
) -> FileList:
  """The examples of one CSV file.

  Args:
    csv_path: the CSV file.
    data_dir: the directory its image paths are relative to.
    path_column: the column of image paths (CheXpert: 'Path').
    label_columns: the label columns, in the order of the network's outputs.
    policy: the uncertainty policy (UNCERTAINTY_POLICIES).

  Returns:
    A FileList with (N, L) float32 targets and their (N, L) mask.

  Raises:
    ConfigError: a missing file, a missing column, a value that is not a label, an unknown
      policy or a CSV without rows (one line, naming the file and the column or field).
  """
  if policy not in UNCERTAINTY_POLICIES:
    apply_policy(np.zeros((0, 0)), policy)  # raises the one-line error
  if not os.path.isfile(csv_path):
    raise ConfigError(f'label CSV {csv_path} does not exist (config.data.dir, config.data.csv_*)')
  with open(csv_path, newline='') as f:
    reader = csv.DictReader(f)
    header = reader.fieldnames or []
    for column in (path_column, *label_columns):
      if column not in header:
        field = 'csv_path_column' if column == path_column else 'csv_label_columns'
        raise ConfigError(
          f'{csv_path} has no column {column!r} (config.data.{field}); its columns: '
          f'{", ".join(header)}'
        )
    paths, rows = [], []
    for row_number, row in enumerate(reader, start=2):  # row 1 is the header
      paths.append(os.path.join(data_dir, row[path_column]))
      rows.append([_value(row[c] or '', csv_path, row_number, c) for c in label_columns])
  if not paths:
    raise ConfigError(f'{csv_path} holds no examples (only a header)')
  targets, mask = apply_policy(np.asarray(rows, np.float64), policy)
  return FileList(tuple(paths), targets, mask, tuple(label_columns))
