"""The figures render from small synthetic workdirs (no training)."""

import numpy as np
import pytest

from tests.testing import write_search_run, write_train_run
from unreal_nas_jax.analysis import convergence, plots, ranking, runs
from unreal_nas_jax.config_utils import ConfigError


@pytest.fixture(scope='module')
def search_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('runs')
  real = write_search_run(root / 'c10', dataset='cifar10', epochs=5, skip_growth=1.5)
  unreal = write_search_run(root / 'rlrn', dataset='rlrn', epochs=5, num_seeds=2)
  return [*runs.read_runs(real), *runs.read_runs(unreal)]


@pytest.mark.parametrize('kind', plots.SEARCH_PLOT_KINDS)
def test_search_figures_name_every_run(tmp_path, search_runs, kind):
  out = plots.plot_search_runs(search_runs, str(tmp_path / f'{kind}.svg'), kind)
  svg = open(out).read()
  if kind != 'alphas':  # legends: the dataset names (and seeds)
    for label in ('cifar10', 'rlrn seed 0', 'rlrn seed 1'):
      assert label in svg, label
  if kind in ('alphas', 'all'):  # a panel per run and cell, an op legend, the edges named
    assert 'sep_conv_3x3' in svg and 'reduce cell' in svg
    assert '0-&gt;2' in svg and '4-&gt;5' in svg and 'rlrn seed 1: softmax weight' in svg


def test_png_and_bad_extensions(tmp_path, search_runs):
  out = plots.plot_search_runs(search_runs[:1], str(tmp_path / 'skip.png'), 'skip')
  assert open(out, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
  with pytest.raises(
    ConfigError, match=r"--out='.*skip.pdf' is not allowed; allowed: a file ending in .png, .svg"
  ):
    plots.plot_search_runs(search_runs, str(tmp_path / 'skip.pdf'))
  with pytest.raises(ConfigError, match='does not exist'):
    plots.plot_search_runs(search_runs, str(tmp_path / 'nope' / 'skip.png'))
  with pytest.raises(ConfigError, match="--kind='bars' is not allowed"):
    plots.plot_search_runs(search_runs, str(tmp_path / 'x.png'), 'bars')


def test_difficulty_and_rank_figures(tmp_path):
  epochs = np.arange(1, 41)
  curves = []
  for label, tau in (('cifar10', 5.0), ('rlrn', 12.0)):
    values = 1 - np.exp(-epochs / tau)
    curves.append((label, epochs, values, convergence.epochs_to_convergence(values, epochs)))
  rule = convergence.ConvergenceRule()
  svg = open(plots.plot_difficulty(curves, str(tmp_path / 'd.svg'), 'train_acc', rule)).read()
  assert f'cifar10: {curves[0][3].epoch}' in svg and f'rlrn: {curves[1][3].epoch}' in svg
  tau = ranking.kendall_tau([1, 2, 3], [1, 3, 2])
  result = ranking.RankResult(
    tau.tau, tau.p_value, 3, tau.method, 50, 'train_acc', ('a', 'b', 'c'), (1, 2, 3), (1, 3, 2),
    'rlrn epoch 50', 'cifar100.csv',
  )  # fmt: skip
  svg = open(plots.plot_rank(result, str(tmp_path / 'r.svg'))).read()
  assert 'rlrn epoch 50' in svg and '0.333' in svg


def test_sweep_of_searches_and_retraining(tmp_path):
  searches = [
    write_search_run(tmp_path / f's{n}', num_classes=n, epochs=3, num_seeds=s)
    for n, s in ((10, 1), (1000, 2))
  ]
  all_runs = [r for s in searches for r in runs.read_runs(s)]
  points = plots.sweep_points(all_runs, 'val_acc')
  assert [p[0] for p in points] == [10, 1000, 1000]
  assert points[0][1] == pytest.approx(0.5 - 0.5 / 4)
  svg = open(plots.plot_sweep(points, str(tmp_path / 'sweep.svg'), 'val_acc')).read()
  assert 'number of random classes' in svg and 'rlrn' in svg  # one series per dataset
  trained = [
    r for i, s in enumerate(searches)
    for r in runs.read_runs(write_train_run(tmp_path / f't{i}', s, (0.5, 0.9 + 0.01 * i)))
  ]  # fmt: skip
  assert plots.sweep_points(trained, 'eval_top1') == [(10, 0.9, 'cifar10'), (1000, 0.91, 'cifar10')]
  with pytest.raises(
    ConfigError, match="empty sweep: 2 run\\(s\\) given, none has a value of 'top1'"
  ):
    plots.sweep_points(trained, 'top1')
