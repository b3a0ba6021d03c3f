"""Kendall's tau between two rankings of architectures, and pairing them across runs.

UnrealNAS (Section 3.1) measures how well a dataset tells architectures apart by Kendall's tau
between the architectures' training accuracies at a probe epoch on an unreal dataset and their
accuracies on a real one. `kendall_tau` is scipy's tau-b (ties in either ranking are allowed) with
its two-sided p-value for the null hypothesis of no association; `rank` pairs the architectures of
two probe runs (or of a probe run and a CSV of accuracies) and computes it.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from unreal_nas_jax.analysis import runs as runs_lib
from unreal_nas_jax.config_utils import ConfigError

# scipy's `method='auto'` computes the p-value exactly for untied samples of at most this many
# values (or with at most one pair out of order either way), else by the normal approximation.
EXACT_MAX_N = 33


@dataclasses.dataclass(frozen=True)
class KendallResult:
  tau: float
  p_value: float
  n: int
  method: str  # 'exact' or 'asymptotic': how the p-value was computed


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> KendallResult:
  """Kendall's tau-b of two paired samples and its two-sided p-value (`scipy.stats.kendalltau`).

  The p-value is exact (the null distribution over permutations) when neither sample has ties and
  n <= 33 or at most one pair is out of order either way, else the normal approximation with the
  tie-corrected variance; `method` says which. A constant sample gives nan, nan.

  Raises:
    ValueError: the samples differ in length, hold fewer than two pairs or a non-finite value.
  """
  x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
  if x.size != y.size:
    raise ValueError(f'kendall_tau needs paired samples, got {x.size} and {y.size} values')
  n = x.size
  if n < 2:
    raise ValueError(f'kendall_tau needs at least 2 pairs, got {n}')
  if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
    raise ValueError('kendall_tau: the samples hold a non-finite value (nan or inf)')
  result = stats.kendalltau(x, y)
  tau, p_value = float(result.statistic), float(result.pvalue)
  untied = np.unique(x).size == n and np.unique(y).size == n
  # Untied, tau = 1 - 2 * discordant / pairs: so many pairs are out of order either way.
  pairs = n * (n - 1) // 2
  exact = untied and (n <= EXACT_MAX_N or round(pairs * (1 - abs(tau)) / 2) <= 1)
  return KendallResult(tau, p_value, n, 'exact' if exact else 'asymptotic')


def read_accuracy_csv(path: str) -> dict[str, float]:
  """A CSV of `architecture name, accuracy` rows (a header row is optional) as {name: accuracy}.

  Raises:
    ConfigError: the file is missing, a row does not have two columns, an accuracy is not a
      number, or a name appears twice.
  """
  try:
    with open(path, newline='') as f:
      rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
  except OSError as e:
    raise ConfigError(f'cannot read accuracy CSV {path!r}: {e.strerror or e}') from None
  accuracies: dict[str, float] = {}
  for line, row in enumerate(rows, start=1):
    if len(row) != 2:
      raise ConfigError(
        f'{path}: row {line} has {len(row)} columns; allowed: 2 (architecture name, accuracy)'
      )
    name, value = row[0].strip(), row[1].strip()
    try:
      accuracy = float(value)
    except ValueError:
      if line == 1:
        continue  # a header row
      raise ConfigError(f'{path}: row {line}: accuracy {value!r} is not a number') from None
    if name in accuracies:
      raise ConfigError(f'{path}: architecture {name!r} appears twice')
    accuracies[name] = accuracy
  if not accuracies:
    raise ConfigError(f'{path}: no rows of architecture name, accuracy')
  return accuracies


def _short_list(names: Sequence[str], limit: int = 8) -> str:
  shown = ', '.join(names[:limit])
  return shown + (f' and {len(names) - limit} more' if len(names) > limit else '')


def pair_accuracies(
  a: Mapping[str, float], b: Mapping[str, float], a_name: str = 'A', b_name: str = 'B'
) -> tuple[list[str], np.ndarray, np.ndarray]:
  """The common architectures (sorted by name) and their values in `a` and `b`.

  Raises:
    ConfigError: the two sides do not hold the same architectures (it lists what each lacks).
  """
  missing_b = sorted(set(a) - set(b))
  missing_a = sorted(set(b) - set(a))
  if missing_a or missing_b:
    parts = []
    if missing_b:
      parts.append(f'missing from {b_name}: {_short_list(missing_b)}')
    if missing_a:
      parts.append(f'missing from {a_name}: {_short_list(missing_a)}')
    raise ConfigError(f'the architecture lists differ; {"; ".join(parts)}')
  names = sorted(a)
  return names, np.array([a[k] for k in names]), np.array([b[k] for k in names])


@dataclasses.dataclass(frozen=True)
class RankResult:
  tau: float
  p_value: float
  n: int
  method: str
  epoch: int
  metric: str
  names: tuple[str, ...]
  a: tuple[float, ...]  # the values of `names` in the first run
  b: tuple[float, ...]
  a_label: str
  b_label: str

  def to_json(self) -> dict:
    """The JSON line of `unreal-nas analyze rank` (nan as null)."""

    def finite(v):
      return v if math.isfinite(v) else None

    return {
      'tau': finite(self.tau),
      'p_value': finite(self.p_value),
      'n': self.n,
      'method': self.method,
      'epoch': self.epoch,
      'metric': self.metric,
      'a': self.a_label,
      'b': self.b_label,
      'architectures': {k: [va, vb] for k, va, vb in zip(self.names, self.a, self.b, strict=True)},
    }


def rank(a_dir: str, b: str, *, epoch: int | None = None, metric: str = 'train_acc') -> RankResult:
  """Kendall's tau between the architectures of probe run `a_dir` and `b` at `epoch`.

  Args:
    a_dir: a probe run directory.
    b: another probe run directory (its values at the same epoch) or a CSV file of `architecture
      name, accuracy` rows (e.g. accuracies after retraining on real data).
    epoch: the 1-based probe epoch; None: the last epoch every architecture of the run(s) reached.
    metric: a probe record's value to rank by (`train_acc` or `train_loss`).

  Raises:
    ConfigError: a directory is not a probe run, lacks the epoch, or the architecture lists
      differ; one line naming what is wrong.
  """
  run_a = runs_lib.read_probe_run(a_dir)
  if os.path.isdir(b):
    run_b = runs_lib.read_probe_run(b)
    # The architecture lists first: a mismatch is the more basic error than a missing epoch.
    pair_accuracies(
      dict.fromkeys(run_a.architectures, 0.0), dict.fromkeys(run_b.architectures, 0.0), a_dir, b
    )
    if epoch is None:
      epoch = min(run_a.last_common_epoch(), run_b.last_common_epoch())
    values_b = run_b.values_at(epoch, metric)
    b_label = f'{run_b.label} epoch {epoch}'
  else:
    values_b = read_accuracy_csv(b)
    pair_accuracies(dict.fromkeys(run_a.architectures, 0.0), values_b, a_dir, b)
    b_label = os.path.basename(b)
  epoch = run_a.last_common_epoch() if epoch is None else epoch
  values_a = run_a.values_at(epoch, metric)
  names, xa, xb = pair_accuracies(values_a, values_b, a_dir, b)
  if len(names) < 2:
    raise ConfigError(f'rank needs at least 2 architectures in common, got {len(names)}')
  result = kendall_tau(xa, xb)
  return RankResult(
    tau=result.tau,
    p_value=result.p_value,
    n=result.n,
    method=result.method,
    epoch=epoch,
    metric=metric,
    names=tuple(names),
    a=tuple(float(v) for v in xa),
    b=tuple(float(v) for v in xb),
    a_label=f'{run_a.label} epoch {epoch}',
    b_label=b_label,
  )
