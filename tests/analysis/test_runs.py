"""Reading search, training and probe run directories; one-line errors for anything else."""

import json
import os

import pytest

from tests.testing import write_probe_run, write_search_run, write_train_run
from unreal_nas_jax.analysis import runs
from unreal_nas_jax.analysis.runs import NotARunError
from unreal_nas_jax.train import probe_format


def test_search_run_and_its_seeds(tmp_path):
  (run,) = runs.read_runs(write_search_run(tmp_path / 'one', dataset='rlgd', epochs=3))
  assert run.kind == 'search' and run.label == 'rlgd' and run.seed is None
  epochs, val = run.series('val_acc')
  assert list(epochs) == [2, 3]  # warm-up epochs have val_acc null
  assert run.final('train_loss') == pytest.approx(1.0)
  seeds = runs.read_runs(write_search_run(tmp_path / 'three', epochs=2, num_seeds=3))
  assert [r.label for r in seeds] == ['rlrn seed 0', 'rlrn seed 1', 'rlrn seed 2']
  (seed_1,) = runs.read_runs(str(tmp_path / 'three' / 'seed_1'))  # the parent's config
  assert seed_1.seed == 1 and seed_1.records == seeds[1].records
  (sgas,) = runs.read_runs(write_search_run(tmp_path / 'sgas', method='sgas'))
  assert sgas.label == 'rlrn sgas'


def test_an_unfinished_last_line_is_left_out(tmp_path):
  path = write_search_run(tmp_path / 'run', epochs=3)
  with open(os.path.join(path, 'metrics.jsonl'), 'a') as f:
    f.write('{"epoch": 4, "train_lo')  # a run writing its next epoch right now
  (run,) = runs.read_runs(path)
  assert [r['epoch'] for r in run.records] == [1, 2, 3]


@pytest.mark.parametrize(
  'make,expected',
  [
    (lambda d: None, 'no such directory'),
    (lambda d: os.makedirs(d), 'it has no config.json'),
    (lambda d: (os.makedirs(d), open(os.path.join(d, 'config.json'), 'w').write('{')), 'not valid JSON'),
    (lambda d: (os.makedirs(d), open(os.path.join(d, 'config.json'), 'w').write('{}')), 'no metrics.jsonl'),
    (lambda d: (write_search_run(d), open(os.path.join(d, 'metrics.jsonl'), 'a').write('[1]\n')), 'line 5 of metrics.jsonl is not an object'),
    (lambda d: (write_search_run(d), open(os.path.join(d, 'metrics.jsonl'), 'a').write('{"e": 1}\n')), 'record 5 has no integer epoch'),
  ],
)  # fmt: skip
def test_not_a_run(tmp_path, make, expected):
  d = str(tmp_path / 'x')
  make(d)
  with pytest.raises(NotARunError) as e:
    runs.read_runs(d)
  assert expected in str(e.value) and '\n' not in str(e.value)


def test_probe_run(tmp_path):
  path = write_probe_run(tmp_path / 'p', {'a': [0.1, 0.2, 0.3], 'b': [0.2, 0.4]}, dataset='rlrd')
  probe = runs.read_probe_run(path)
  assert probe.label == 'rlrd' and list(probe.architectures) == ['a', 'b']
  assert probe.epochs_reached() == {'a': 3, 'b': 2} and probe.last_common_epoch() == 2
  assert probe.values_at(2) == {'a': 0.2, 'b': 0.4}
  assert probe.values_at(1, 'train_loss') == {'a': 0.9, 'b': 0.8}
  epochs, values = probe.curve('a')
  assert list(epochs) == [1, 2, 3] and list(values) == [0.1, 0.2, 0.3]
  with pytest.raises(NotARunError, match='no epoch 3 for b; every architecture reached epoch 2'):
    probe.values_at(3)
  with pytest.raises(NotARunError, match='not a probe run'):
    runs.read_probe_run(write_search_run(tmp_path / 's'))


def test_probe_record_of_an_unlisted_architecture(tmp_path):
  path = write_probe_run(tmp_path / 'p', {'a': [0.1]})
  with open(os.path.join(path, probe_format.PROBE_FILE), 'a') as f:
    f.write(json.dumps(probe_format.probe_record('zz', {}, 1, 1.0, 0.0)) + '\n')
  with pytest.raises(NotARunError, match="names architecture 'zz', which architectures.json"):
    runs.read_probe_run(path)


def test_random_classes_of_searches_and_their_retraining(tmp_path):
  search = write_search_run(tmp_path / 's', num_classes=100)
  (search_run,) = runs.read_runs(search)
  assert runs.random_classes(search_run) == 100
  for genotype in (search, os.path.join(search, 'genotype.json')):
    (train_run,) = runs.read_runs(write_train_run(tmp_path / 't', genotype))
    assert train_run.kind == 'train' and runs.random_classes(train_run) == 100
  (published,) = runs.read_runs(write_train_run(tmp_path / 'u', 'DARTS_V2'))
  with pytest.raises(NotARunError, match="genotype='DARTS_V2'"):
    runs.random_classes(published)
