"""The convergence rule on synthetic training curves."""

import numpy as np
import pytest

from tests.testing import write_probe_run, write_search_run
from unreal_nas_jax.analysis import convergence
from unreal_nas_jax.analysis.convergence import ConvergenceRule, epochs_to_convergence
from unreal_nas_jax.config_utils import ConfigError

# The paper's scores (Fig. 1a) and curves that rise like 1 - exp(-t / tau): 95% of the rise,
# the default rule's band, is done at t = tau ln 20.
PAPER = {'cifar10': 31, 'rlgd': 36, 'rlrd': 71, 'rlrn': 94}
EPOCHS = np.arange(1, 151)


def _paper_like(score, noise=0.0, seed=0):
  tau = score / np.log(20)
  rng = np.random.default_rng(seed)
  return 0.98 * (1 - np.exp(-EPOCHS / tau)) + noise * rng.normal(size=EPOCHS.size)


def test_paper_like_curves_score_near_the_paper_and_in_its_order():
  scores = {name: epochs_to_convergence(_paper_like(s), EPOCHS).epoch for name, s in PAPER.items()}
  for name, expected in PAPER.items():
    # The plateau is the mean of the last 10 epochs, a little under the asymptote: +-3 epochs.
    assert abs(scores[name] - expected) <= 3, scores
  assert sorted(scores, key=scores.get) == ['cifar10', 'rlgd', 'rlrd', 'rlrn']


def test_noise_is_smoothed_away():
  noisy = {
    name: epochs_to_convergence(_paper_like(s, noise=0.02, seed=i), EPOCHS).epoch
    for i, (name, s) in enumerate(PAPER.items())
  }
  assert sorted(noisy, key=noisy.get) == ['cifar10', 'rlgd', 'rlrd', 'rlrn']
  unsmoothed = {
    name: epochs_to_convergence(
      _paper_like(s, noise=0.02, seed=i), EPOCHS, ConvergenceRule(smoothing=1)
    ).epoch
    for i, (name, s) in enumerate(PAPER.items())
  }
  # Without smoothing a single noisy epoch outside the band postpones convergence, here past the
  # hardest curve's score.
  assert unsmoothed['cifar10'] > noisy['rlrn']


def test_a_loss_curve_converges_like_its_accuracy():
  acc = _paper_like(50)
  loss = 2.3 * (1 - acc)
  assert epochs_to_convergence(loss).epoch == epochs_to_convergence(acc).epoch


def test_patience_accepts_a_transient_visit_to_the_plateau():
  # Reaches the plateau at epoch 11, falls away at 20-29, comes back from 30 on.
  curve = np.ones(60)
  curve[:10] = np.linspace(0, 0.9, 10)
  curve[19:29] = 0.5
  rule = ConvergenceRule(smoothing=1, plateau_epochs=5)
  assert epochs_to_convergence(curve, rule=rule).epoch == 30
  patient = ConvergenceRule(smoothing=1, plateau_epochs=5, patience=5)
  assert epochs_to_convergence(curve, rule=patient).epoch == 11
  absolute = ConvergenceRule(smoothing=1, plateau_epochs=5, tolerance=0.6, relative=False)
  assert epochs_to_convergence(curve, rule=absolute).epoch == 5  # 0.4 is within 0.6 of 1


def test_flat_and_bad_curves():
  assert epochs_to_convergence(np.full(20, 0.1)).epoch == 1
  assert epochs_to_convergence([0.1, 0.5, 0.9], epochs=[4, 5, 6]).epoch in (4, 5, 6)
  with pytest.raises(ConfigError, match='empty'):
    epochs_to_convergence([])
  with pytest.raises(ConfigError, match='non-finite'):
    epochs_to_convergence([0.1, np.nan])
  with pytest.raises(ConfigError, match='smoothing=4 is not allowed'):
    ConvergenceRule(smoothing=4)


def test_smooth_is_a_centred_moving_average():
  np.testing.assert_allclose(
    convergence.smooth([0, 3, 6, 9, 12], 3), [1.5, 3.0, 6.0, 9.0, 10.5], rtol=1e-12
  )


def test_run_difficulty_of_a_probe_run_and_a_search(tmp_path):
  fast, slow = _paper_like(31)[:120], _paper_like(94)[:120]
  probe = write_probe_run(tmp_path / 'probe', {'a': fast, 'b': slow}, dataset='rlgd')
  (result,) = convergence.run_difficulty(probe)
  assert result.label == 'rlgd'
  np.testing.assert_allclose(result.values, (fast + slow) / 2)
  assert result.per_architecture['a'] < result.per_architecture['b']
  assert result.to_json()['converged_epoch'] == result.convergence.epoch
  search = write_search_run(tmp_path / 'search', epochs=30, num_seeds=2)
  results = convergence.run_difficulty(search, 'train_loss')
  assert [r.label for r in results] == ['rlrn seed 0', 'rlrn seed 1']
  with pytest.raises(ConfigError, match="--metric='val_acc' is not allowed"):
    convergence.run_difficulty(search, 'val_acc')
