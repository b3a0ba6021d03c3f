"""Kendall's tau between two rankings of architectures, and pairing them across runs.

UnrealNAS (Section 3.1) measures how well a dataset tells architectures apart by Kendall's tau
between the architectures' training accuracies at a probe epoch on an unreal dataset and their
accuracies on a real one. `kendall_tau` is tau-b (ties in either ranking are allowed) with its
two-sided p-value for the null hypothesis of no association; `rank` pairs the architectures of
two probe runs (or of a probe run and a CSV of accuracies) and computes it.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from unreal_nas_jax.analysis import runs as runs_lib
from unreal_nas_jax.config_utils import ConfigError

TAU_METHODS = ('auto', 'exact', 'asymptotic')
# Below this many pairs the exact null distribution is cheap and the normal approximation poor.
EXACT_MAX_N = 33


@dataclasses.dataclass(frozen=True)
class KendallResult:
  tau: float
  p_value: float
  n: int
  method: str  # 'exact' or 'asymptotic': how the p-value was computed


def _tie_sums(values: np.ndarray) -> tuple[int, int, int]:
  """Over the groups of t equal values: sum t(t-1)/2, sum t(t-1)(t-2), sum t(t-1)(2t+5)."""
  _, counts = np.unique(values, return_counts=True)
  t = counts.astype(np.int64)
  return (
    int(np.sum(t * (t - 1) // 2)),
    int(np.sum(t * (t - 1) * (t - 2))),
    int(np.sum(t * (t - 1) * (2 * t + 5))),
  )


def _inversion_cdf(n: int, c: int) -> float:
  """P(number of inversions of a uniformly random permutation of n items <= c), exactly.

  The counts of permutations by inversions (Mahonian numbers) follow from inserting item k into
  a permutation of k-1 items, which adds 0 ... k-1 inversions; integers keep it exact.
  """
  counts = [1] + [0] * c
  for k in range(2, n + 1):
    # new[j] = sum of counts[j - i] for i in 0 .. k-1 (a sliding window over the old counts).
    new = [0] * (c + 1)
    window = 0
    for j in range(c + 1):
      window += counts[j]
      if j - k >= 0:
        window -= counts[j - k]
      new[j] = window
    counts = new
  return sum(counts) / math.factorial(n)


def kendall_tau(x: Sequence[float], y: Sequence[float], method: str = 'auto') -> KendallResult:
  """Kendall's tau-b of two paired samples and its two-sided p-value.

  tau-b = (concordant - discordant) / sqrt((P - ties in x) (P - ties in y)) over the P = n(n-1)/2
  pairs. The p-value is exact (the null distribution of discordant pairs over permutations) for
  `method='exact'`, which needs untied data; `asymptotic` uses the normal approximation of the
  statistic with the tie-corrected variance (Kendall 1970). `auto` is exact when neither sample
  has ties and n <= 33 or at most one pair is out of order either way, else asymptotic (the rule
  scipy.stats.kendalltau follows, so the two agree). A constant sample gives nan, nan.

  Raises:
    ValueError: the samples differ in length, hold fewer than two pairs or a non-finite value, or
      `method` is not one of TAU_METHODS (or is 'exact' with ties).
  """
  if method not in TAU_METHODS:
    raise ValueError(f'method={method!r} is not allowed; allowed: {", ".join(TAU_METHODS)}')
  x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
  if x.size != y.size:
    raise ValueError(f'kendall_tau needs paired samples, got {x.size} and {y.size} values')
  n = x.size
  if n < 2:
    raise ValueError(f'kendall_tau needs at least 2 pairs, got {n}')
  if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
    raise ValueError('kendall_tau: the samples hold a non-finite value (nan or inf)')
  i, j = np.triu_indices(n, k=1)
  products = np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
  s = int(np.sum(products))  # concordant minus discordant
  discordant = int(np.sum(products < 0))
  pairs = n * (n - 1) // 2
  x_ties, x_ties3, x_ties5 = _tie_sums(x)
  y_ties, y_ties3, y_ties5 = _tie_sums(y)
  if x_ties == pairs or y_ties == pairs:
    return KendallResult(math.nan, math.nan, n, method)
  tau = s / math.sqrt((pairs - x_ties) * (pairs - y_ties))
  tau = min(1.0, max(-1.0, tau))
  untied = x_ties == 0 and y_ties == 0
  if method == 'auto':
    exact = untied and (n <= EXACT_MAX_N or min(discordant, pairs - discordant) <= 1)
    method = 'exact' if exact else 'asymptotic'
  if method == 'exact':
    if not untied:
      raise ValueError("kendall_tau: method='exact' needs samples without ties")
    c = min(discordant, pairs - discordant)
    p = 1.0 if 2 * c == pairs else min(1.0, 2.0 * _inversion_cdf(n, c))
    return KendallResult(tau, p, n, 'exact')
  m = n * (n - 1.0)
  variance = (
    (m * (2 * n + 5) - x_ties5 - y_ties5) / 18.0
    + 2.0 * x_ties * y_ties / m
    + (x_ties3 * y_ties3 / (9.0 * m * (n - 2)) if n > 2 else 0.0)
  )
  z = s / math.sqrt(variance)
  return KendallResult(tau, math.erfc(abs(z) / math.sqrt(2.0)), n, 'asymptotic')


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
