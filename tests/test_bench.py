"""`unreal-nas bench`: the data records (the step records compile the supernet: run by hand)."""

import pytest

from tests.conftest import tiny_search_config
from unreal_nas_jax import bench
from unreal_nas_jax.config_utils import ConfigError


def test_data_records_of_noise_and_fractals():
  rlrn = tiny_search_config()
  (record,) = bench.run_bench(rlrn, cases=['data'], steps=2)
  assert record['case'] == 'data' and record['dataset'] == 'rlrn'
  assert record['step_data_ms'] > 0 and record['batch'] == 8

  rlgd = tiny_search_config(data__name='rlgd', data__fractal_categories=2)
  (record,) = bench.run_bench(rlgd, cases=['data'], steps=2)
  assert record['dataset'] == 'rlgd' and record['fractal_categories'] == 2
  assert record['render_images_per_s'] > 0 and record['category_search_s'] > 0


def test_unprepared_tfds_dataset_is_skipped_with_the_reason(tmp_path):
  config = tiny_search_config(data__name='rlrd', data__tfds_data_dir=str(tmp_path))
  (record,) = bench.run_bench(config, cases=['data'])
  assert 'cifar10 is not prepared' in record['skipped'] and 'step_data_ms' not in record


@pytest.mark.parametrize(
  'config, cases, orders, message',
  [
    (None, ['steps'], (1,), "bench case 'steps' is not allowed without --config"),
    ('tiny', ['paper'], (1,), "bench case 'paper' is not allowed with --config"),
    (None, ['data'], (3,), 'bench order 3 is not allowed; allowed: 1, 2'),
  ],
)
def test_bad_cases_and_orders(config, cases, orders, message):
  config = tiny_search_config() if config == 'tiny' else None
  with pytest.raises(ConfigError, match=message):
    list(bench.run_bench(config, cases=cases, orders=orders))


def test_train_config_times_its_retraining_step():
  from tests.train.test_retrain import tiny_train_config  # noqa: PLC0415

  (record,) = bench.run_bench(tiny_train_config(), steps=1)
  assert record['case'] == 'config' and record['network'] == 'cifar10'
  assert record['images_per_s'] > 0 and record['batch'] == 8 and record['layers'] == 3
