"""Retraining on a test-written image folder and CheXpert-shaped CSV, end to end."""

import json

import ml_collections
import numpy as np
import pytest

from tests.testing import apply_overrides, write_chexpert, write_folder
from unreal_nas_jax.config_utils import ConfigError, load_config, to_dict
from unreal_nas_jax.train import retrain, retrain_config


def tiny_config(preset, data_dir, **overrides):
  config = load_config(f'configs/train.py:{preset},quick')
  config.genotype = 'DARTS_V2'
  config.data.dir = str(data_dir)
  config.data.image_size = 16
  config.model.channels = 4
  config.model.layers = 3
  config.model.auxiliary = False  # a 16x16 input leaves the head under its 5x5 minimum
  config.train.batch_size = 6
  config.train.epochs = 2
  config.log.progress = 'none'
  return apply_overrides(config, overrides)


def test_folder_trains_resumes_evaluates_and_refuses_other_classes(tmp_path):
  data = write_folder(tmp_path / 'data', mode='L')
  workdir = tmp_path / 'run'
  retrain.run_train(tiny_config('folder', data, data__channels=1, train__epochs=1), str(workdir))
  summary = retrain.run_train(tiny_config('folder', data, data__channels=1), str(workdir))
  lines = [json.loads(x) for x in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [r['epoch'] for r in lines] == [1, 2] and summary['record']['step'] == 6
  assert lines[-1]['eval_examples'] == 6 and 0 <= lines[-1]['eval_top1'] <= 1
  assert json.loads((workdir / 'classes.json').read_text())['names'] == ['cat', 'dog', 'eel']
  result = retrain.run_eval(str(workdir))
  assert result['top1'] == lines[-1]['eval_top1'] and result['dataset'] == 'folder'
  # Another class in the data: resume and eval are refused, nothing written is lost.
  write_folder(tmp_path / 'data', classes=('fox',), per_class=(2, 1), mode='L')
  before = (workdir / 'metrics.jsonl').read_text()
  with pytest.raises(
    ConfigError, match=r"classes.json: the workdir trained classes .*new: \['fox'\]"
  ):
    retrain.run_train(tiny_config('folder', data, data__channels=1, train__epochs=3), str(workdir))
  with pytest.raises(ConfigError, match='the workdir trained classes'):
    retrain.run_eval(str(workdir))
  assert (workdir / 'metrics.jsonl').read_text() == before


def test_chexpert_trains_and_reports_auc(tmp_path):
  data = write_chexpert(tmp_path / 'data')
  config = tiny_config('chexpert', data, train__epochs=1, train__batch_size=4,
                       data__uncertainty='ignore')  # fmt: skip
  summary = retrain.run_train(config, str(tmp_path / 'run'))
  record = summary['record']
  assert np.isfinite(record['train_loss']) and record['eval_examples'] == 6
  assert set(record['eval_auc']) == set(json.loads((tmp_path / 'run/classes.json').read_text())[
    'names'])  # fmt: skip
  assert 0 <= record['eval_mean_auc'] <= 1
  result = retrain.run_eval(str(tmp_path / 'run'))
  assert result['mean_auc'] == pytest.approx(record['eval_mean_auc'])


def test_bad_data_fields_are_one_line_errors(tmp_path):
  data = write_chexpert(tmp_path / 'data')
  with pytest.raises(ConfigError, match=r"config.data.uncertainty='u-maybe' is not allowed"):
    retrain.build_train(tiny_config('chexpert', data, data__uncertainty='u-maybe'))
  with pytest.raises(ConfigError, match=r"config.data.auc_labels='Flu' is not allowed"):
    retrain.build_train(tiny_config('chexpert', data, data__auc_labels='Flu'))
  with pytest.raises(ConfigError, match=r"valid.csv has no column 'Nodule'"):
    config = tiny_config('chexpert', data, data__csv_label_columns='Edema,Nodule')
    (data / 'train.csv').write_text((data / 'train.csv').read_text().replace('Pneumonia', 'Nodule'))
    retrain.build_train(config)
  with pytest.raises(ConfigError, match=r"config.data.dir='' is not allowed"):
    retrain.build_train(tiny_config('folder', ''))


def test_a_config_from_before_the_data_fields_still_validates():
  fresh = load_config('configs/train.py:cifar10')
  old = to_dict(fresh)
  for section, fields in retrain_config.ADDED_DEFAULTS.items():
    for key, value in fields.items():
      assert fresh[section][key] == value, (section, key)  # the defaults are the preset's
      del old[section][key]
  old = ml_collections.ConfigDict({**old, 'genotype': 'DARTS_V2'})
  retrain_config.validate_train_config(old)
  assert old.data.channels == 3 and old.model.network == 'auto'
  assert old.parallel.xla_optimization_level == 'default'
