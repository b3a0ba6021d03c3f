"""Epochs to convergence of a training curve: the paper's dataset-difficulty score (Fig. 1a).

UnrealNAS trains one probe network from scratch on each dataset and scores the dataset by the
epoch at which its training curve converges (CIFAR-10 31, RLGD 36, RLRD 71, RLRN 94): the harder
a dataset is to fit, the later. The paper does not state its rule; this module's rule is:

  1. Smooth the curve with a centred moving average of `smoothing` epochs (odd; the window
     shrinks at both ends), so epoch-to-epoch noise neither ends nor postpones convergence.
  2. The final plateau is the mean of the smoothed curve over its last `plateau_epochs` epochs.
  3. The curve has converged at the first epoch from which the smoothed curve stays within
     `tolerance` of the plateau for `patience` epochs (None: through the last epoch). With
     `relative=True` (the default) the tolerance is a fraction of the curve's total change,
     |plateau - smoothed first epoch|, so the same rule fits accuracies and losses of any scale.

Defaults: smoothing 5, plateau_epochs 10, tolerance 0.05 (relative), patience None. On a curve
that rises like 1 - exp(-t / tau) this is the epoch where 95% of the rise is done (about 3 tau),
so curves that saturate later score later, which is the paper's ordering. A curve that never
changes is converged at its first epoch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from unreal_nas_jax.analysis import runs as runs_lib
from unreal_nas_jax.config_utils import ConfigError

DIFFICULTY_METRICS = ('train_acc', 'train_loss')


@dataclasses.dataclass(frozen=True)
class ConvergenceRule:
  """The convergence rule (module docstring); every field is a flag of `analyze difficulty`."""

  smoothing: int = 5
  plateau_epochs: int = 10
  tolerance: float = 0.05
  relative: bool = True
  patience: int | None = None

  def __post_init__(self):
    if self.smoothing < 1 or self.smoothing % 2 == 0:
      raise ConfigError(f'smoothing={self.smoothing} is not allowed; allowed: an odd number >= 1')
    if self.plateau_epochs < 1:
      raise ConfigError(f'plateau_epochs={self.plateau_epochs} is not allowed; allowed: >= 1')
    if not self.tolerance > 0:
      raise ConfigError(f'tolerance={self.tolerance} is not allowed; allowed: > 0')
    if self.patience is not None and self.patience < 1:
      raise ConfigError(f'patience={self.patience} is not allowed; allowed: >= 1, or None')

  def describe(self) -> str:
    """The rule in one sentence, for plots and JSON output."""
    band = f'{self.tolerance:g} x the total change' if self.relative else f'{self.tolerance:g}'
    stay = 'through the last epoch' if self.patience is None else f'for {self.patience} epochs'
    return (
      f'first epoch from which the {self.smoothing}-epoch centred moving average stays within '
      f'{band} of the mean of the last {self.plateau_epochs} smoothed epochs {stay}'
    )


def smooth(values: Sequence[float], window: int) -> np.ndarray:
  """Centred moving average over `window` (odd) epochs; the window shrinks at both ends."""
  values = np.asarray(values, np.float64)
  half = window // 2
  cumsum = np.concatenate([[0.0], np.cumsum(values)])
  index = np.arange(values.size)
  lo = np.maximum(index - half, 0)
  hi = np.minimum(index + half + 1, values.size)
  return (cumsum[hi] - cumsum[lo]) / (hi - lo)


@dataclasses.dataclass(frozen=True)
class Convergence:
  epoch: int | None  # the converged epoch (1-based, as in the curve's epochs); None if never
  plateau: float
  band: float  # the absolute tolerance used
  smoothed: np.ndarray


def epochs_to_convergence(
  values: Sequence[float],
  epochs: Sequence[int] | None = None,
  rule: ConvergenceRule = ConvergenceRule(),
) -> Convergence:
  """The epoch at which a training curve converges, by `rule` (module docstring).

  Args:
    values: the curve, one value per epoch (training accuracy or loss).
    epochs: the epoch number of each value (default 1, 2, ...).
    rule: the convergence rule.

  Returns:
    A `Convergence`; its `epoch` is None when the curve never stays in the band as the rule
    asks (its last epoch is outside the band: still moving at its end).

  Raises:
    ConfigError: the curve is empty or holds a non-finite value, or epochs and values differ in
      length.
  """
  values = np.asarray(values, np.float64)
  epochs = np.arange(1, values.size + 1) if epochs is None else np.asarray(epochs, np.int64)
  if values.size == 0:
    raise ConfigError('epochs_to_convergence: the curve is empty')
  if epochs.shape != values.shape:
    raise ConfigError(f'{epochs.size} epochs for {values.size} values')
  if not np.all(np.isfinite(values)):
    raise ConfigError('epochs_to_convergence: the curve holds a non-finite value')
  smoothed = smooth(values, rule.smoothing)
  plateau = float(np.mean(smoothed[-rule.plateau_epochs :]))
  band = rule.tolerance * abs(plateau - smoothed[0]) if rule.relative else rule.tolerance
  inside = np.abs(smoothed - plateau) <= band + 1e-12
  if rule.patience is None:
    # The first epoch of the final run of epochs inside the band.
    outside = np.flatnonzero(~inside)
    first = 0 if outside.size == 0 else int(outside[-1]) + 1
    epoch = int(epochs[first]) if first < values.size else None
  else:
    epoch = None
    run = 0
    for i, ok in enumerate(inside):
      run = run + 1 if ok else 0
      if run == rule.patience:
        epoch = int(epochs[i - rule.patience + 1])
        break
  return Convergence(epoch=epoch, plateau=plateau, band=float(band), smoothed=smoothed)


@dataclasses.dataclass(frozen=True)
class Difficulty:
  """The difficulty score of one run: the converged epoch of its (mean) training curve."""

  label: str
  path: str
  epochs: np.ndarray
  values: np.ndarray  # a probe run's: the mean over its architectures
  convergence: Convergence
  per_architecture: dict[str, int | None]  # a probe run's architectures' own converged epochs

  def to_json(self) -> dict:
    return {
      'dataset': self.label,
      'dir': self.path,
      'converged_epoch': self.convergence.epoch,
      'epochs': int(self.epochs[-1]),
      'plateau': self.convergence.plateau,
      'per_architecture': self.per_architecture,
    }


def run_difficulty(
  run_dir: str, metric: str = 'train_acc', rule: ConvergenceRule = ConvergenceRule()
) -> list[Difficulty]:
  """The difficulty of the dataset of `run_dir` by `rule`.

  A probe run's curve is the mean over its architectures at the epochs all of them reached (the
  score of that mean curve; each architecture's own score is kept too). A search or training run
  (one per seed of an N-seed search) is scored on its own `metric` curve.

  Raises:
    ConfigError: `run_dir` is not a run, or `metric` is not one of DIFFICULTY_METRICS, or the run
      has no epoch yet.
  """
  if metric not in DIFFICULTY_METRICS:
    raise ConfigError(
      f'--metric={metric!r} is not allowed; allowed: {", ".join(DIFFICULTY_METRICS)}'
    )
  if os.path.isfile(os.path.join(run_dir, runs_lib.PROBE_FILE)):
    probe = runs_lib.read_probe_run(run_dir)
    last = probe.last_common_epoch()
    per_architecture, curves = {}, []
    for name in probe.architectures:
      epochs, values = probe.curve(name, metric)
      keep = epochs <= last
      if not np.array_equal(epochs[keep], np.arange(1, last + 1)):
        raise runs_lib.NotARunError(
          f'{run_dir!r}: architecture {name!r} skips an epoch before {last}'
        )
      curves.append(values[keep])
      per_architecture[name] = epochs_to_convergence(values[keep], epochs[keep], rule).epoch
    epochs = np.arange(1, last + 1)
    mean = np.mean(curves, axis=0)
    conv = epochs_to_convergence(mean, epochs, rule)
    return [Difficulty(probe.label, run_dir, epochs, mean, conv, per_architecture)]
  results = []
  for run in runs_lib.read_runs(run_dir):
    epochs, values = run.series(metric)
    if not values.size:
      raise runs_lib.NotARunError(f'{run.path!r} has no epoch with {metric} yet')
    conv = epochs_to_convergence(values, epochs, rule)
    results.append(Difficulty(run.label, run.path, epochs, values, conv, {}))
  return results
