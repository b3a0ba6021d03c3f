"""Kendall's tau-b, its p-value and which p-value it is; pairing architectures between runs."""

import math

import numpy as np
import pytest
from scipy import stats

from tests.testing import write_probe_run
from unreal_nas_jax.analysis import ranking
from unreal_nas_jax.config_utils import ConfigError


@pytest.mark.parametrize(
  'n,ties',
  [(5, None), (12, None), (33, None), (40, None), (9, 'x'), (20, 'both'), (60, 'both')],
)
def test_tau_and_p_value_match_scipy(n, ties):
  rng = np.random.default_rng(n)
  x = rng.normal(size=n)
  y = x + rng.normal(scale=1.5, size=n)
  if ties in ('x', 'both'):
    x = np.round(x * 2)  # groups of equal values
  if ties == 'both':
    y = np.round(y)
  expected = stats.kendalltau(x, y)
  got = ranking.kendall_tau(x, y)
  assert got.n == n
  assert got.method == ('exact' if ties is None and n <= 33 else 'asymptotic')
  np.testing.assert_allclose(got.tau, expected.statistic, rtol=1e-12)
  np.testing.assert_allclose(got.p_value, expected.pvalue, rtol=1e-9)
  # `method` names the p-value it is.
  assert got.p_value == stats.kendalltau(x, y, method=got.method).pvalue


def test_exact_p_value_by_hand():
  # (1, 2, 3) against (1, 3, 2): 2 concordant pairs, 1 discordant, tau = 1/3; the permutations of
  # 3 with at most 1 inversion are 3 of 6, so the two-sided p-value is 2 * 3/6 = 1.
  got = ranking.kendall_tau([1, 2, 3], [1, 3, 2])
  assert got.tau == pytest.approx(1 / 3) and got.p_value == 1.0
  # Perfect agreement of 5: only the identity has 0 inversions, p = 2 / 5!.
  got = ranking.kendall_tau([1, 2, 3, 4, 5], [2, 4, 6, 8, 10])
  assert got.tau == pytest.approx(1.0) and got.p_value == pytest.approx(2 / 120)
  # Reversed: tau = -1, same p-value.
  got = ranking.kendall_tau([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])
  assert got.tau == pytest.approx(-1.0) and got.p_value == pytest.approx(2 / 120)


def test_ties_by_hand():
  # x = (1, 1, 2), y = (1, 2, 3): pairs (0,1) tied in x, (0,2) and (1,2) concordant:
  # tau-b = 2 / sqrt((3 - 1) * 3).
  got = ranking.kendall_tau([1, 1, 2], [1, 2, 3])
  assert got.tau == pytest.approx(2 / math.sqrt(6))


def test_degenerate_and_bad_input():
  got = ranking.kendall_tau([1, 1, 1], [1, 2, 3])
  assert math.isnan(got.tau) and math.isnan(got.p_value)
  with pytest.raises(ValueError, match='at least 2 pairs'):
    ranking.kendall_tau([1], [2])
  with pytest.raises(ValueError, match='paired samples'):
    ranking.kendall_tau([1, 2], [1, 2, 3])
  with pytest.raises(ValueError, match='non-finite'):
    ranking.kendall_tau([1, 2, np.nan], [1, 2, 3])


def test_mismatched_architecture_lists_name_what_is_missing():
  with pytest.raises(ConfigError) as e:
    ranking.pair_accuracies({'a': 1, 'b': 2, 'c': 3}, {'a': 1, 'd': 2, 'c': 3}, 'runA', 'runB')
  message = str(e.value)
  assert '\n' not in message
  assert 'missing from runB: b' in message and 'missing from runA: d' in message


def _probe_curves(scale, names=('arch_0', 'arch_1', 'arch_2', 'arch_3')):
  return {name: [scale * (k + 1) * e / 10 for e in range(1, 4)] for k, name in enumerate(names)}


def test_rank_two_probe_runs_and_a_csv(tmp_path):
  a = write_probe_run(tmp_path / 'a', _probe_curves(0.2))
  # The same architectures in the opposite order of accuracy.
  b = write_probe_run(
    tmp_path / 'b', {f'arch_{k}': [0.1 * (4 - k) * e for e in range(1, 4)] for k in range(4)}
  )
  result = ranking.rank(a, b, epoch=2)
  assert result.n == 4 and result.epoch == 2 and result.tau == pytest.approx(-1.0)
  assert result.a == pytest.approx((0.04, 0.08, 0.12, 0.16))
  csv = tmp_path / 'real.csv'
  csv.write_text('architecture,accuracy\narch_2,0.93\narch_0,0.90\narch_3,0.91\narch_1,0.92\n')
  result = ranking.rank(a, str(csv))  # epoch: the last one every architecture reached
  assert result.epoch == 3
  expected = stats.kendalltau([1, 2, 3, 4], [0.90, 0.92, 0.93, 0.91])
  assert result.tau == pytest.approx(expected.statistic)
  assert result.to_json()['architectures']['arch_1'] == [pytest.approx(0.12), 0.92]


def test_rank_refuses_a_missing_epoch_and_a_bad_csv(tmp_path):
  a = write_probe_run(tmp_path / 'a', _probe_curves(0.2))
  with pytest.raises(ConfigError, match='no epoch 7 for arch_0'):
    ranking.rank(a, a, epoch=7)
  csv = tmp_path / 'bad.csv'
  csv.write_text('arch_0,0.9\narch_1,high\n')
  with pytest.raises(ConfigError, match="row 2: accuracy 'high' is not a number"):
    ranking.rank(a, str(csv))


def test_nearly_sorted_large_samples_use_the_exact_p_value_as_scipy_does():
  x = np.arange(40.0)
  y = x.copy()
  y[[10, 11]] = y[[11, 10]]  # one discordant pair
  got, expected = ranking.kendall_tau(x, y), stats.kendalltau(x, y, method='exact')
  assert got.method == 'exact'
  np.testing.assert_allclose(
    [got.tau, got.p_value], [expected.statistic, expected.pvalue], rtol=1e-9
  )
