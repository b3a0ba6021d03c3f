"""Retraining: fake data and tfds mocks end to end, resume, eval, genotype checks."""

import json
import shutil

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.testing import run_cli, tiny_train_config, train_flags
from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.data import pipeline
from unreal_nas_jax.data.pipeline_spec import PipelineSpec
from unreal_nas_jax.space import genotypes, published
from unreal_nas_jax.train import retrain
from unreal_nas_jax.train.genotype_source import resolve_genotype


def test_outputs_and_metrics(train_run):
  _, workdir, summary = train_run
  lines = [json.loads(x) for x in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [r['epoch'] for r in lines] == [1, 2]
  for key in ('lr', 'drop_path', 'train_loss', 'train_acc', 'eval_top1', 'eval_top5', 'eval_loss'):
    assert np.isfinite(lines[-1][key]), key
  assert lines[0]['drop_path'] == 0.0 and lines[1]['drop_path'] == pytest.approx(0.1)
  assert lines[1]['lr'] == pytest.approx(0.0125)  # cosine over 2 epochs, epoch 1
  assert lines[-1]['eval_examples'] == 12  # 2 batches of 8, the last padded and masked
  saved = genotypes.load_genotype(workdir / 'genotype.json')
  assert saved == published.get_genotype('DARTS_V2')
  assert summary['record'] == lines[-1]


def test_eval_restores_the_latest_checkpoint(train_run):
  _, workdir, _ = train_run
  result = retrain.run_eval(str(workdir))
  last = json.loads((workdir / 'metrics.jsonl').read_text().splitlines()[-1])
  assert result['epoch'] == 2 and result['examples'] == 12
  assert result['top1'] == last['eval_top1'] and result['top5'] == last['eval_top5']
  assert result['loss'] == pytest.approx(last['eval_loss'], rel=1e-6)


def test_a_different_genotype_in_the_workdir_is_refused(train_run, tmp_path):
  config, finished, _ = train_run
  workdir = tmp_path / 'run'
  shutil.copytree(finished, workdir)
  genotypes.save_genotype(workdir / 'genotype.json', published.get_genotype('DARTS_V1'))
  before = (workdir / 'metrics.jsonl').read_text()
  with pytest.raises(ConfigError, match='trains another genotype'):
    retrain.run_train(tiny_train_config(train__epochs=3), str(workdir))
  assert (workdir / 'metrics.jsonl').read_text() == before


def test_eval_of_a_workdir_without_checkpoint(tmp_path):
  with pytest.raises(ConfigError, match='no training run'):
    retrain.run_eval(str(tmp_path))


def test_training_a_cell_from_a_search_workdir(search_run, tmp_path):
  _, search, summary = search_run
  # The genotype is derived from the latest checkpoint's alphas, with the run's steps=2 and
  # multiplier=2 read from its config.json.
  genotype, source = resolve_genotype(str(search))
  assert genotypes.genotype_to_json(genotype) == summary['genotype']
  assert genotypes.genotype_to_json(genotype) == json.loads((search / 'genotype.json').read_text())
  assert len(genotype.normal) == 4 and genotype.normal_concat == (2, 3)
  assert source.endswith('(checkpoint of epoch 3)')

  retrain.run_train(tiny_train_config(genotype=str(search), train__epochs=1), str(tmp_path / 't'))
  assert json.loads((tmp_path / 't' / 'genotype.json').read_text()) == summary['genotype']


@pytest.mark.parametrize('preset', ['cifar10', 'cifar100', 'imagenet'])
def test_two_steps_on_mocked_tfds(preset, tmp_path):
  config = tiny_train_config(
    preset, data__fake_data=False, train__epochs=1, data__num_train_examples=16,
    data__num_eval_examples=8,
  )  # fmt: skip
  if preset == 'imagenet':
    config.train.batch_size = 8
  # Mocked ImageNet images come in random sizes; the pipeline crops and resizes them.
  with tfds.testing.mock_data(num_examples=16):
    summary = retrain.run_train(config, str(tmp_path))
  record = summary['record']
  assert record['step'] == 2 and np.isfinite(record['train_loss'])
  assert record['eval_examples'] == 8 and 0 <= record['eval_top1'] <= 1


def test_cifar_augmentation_is_deterministic_per_epoch_with_cutout():
  spec = PipelineSpec('cifar10', 32, 4, seed=0, num_train_examples=8)
  with tfds.testing.mock_data(num_examples=8):
    a = list(pipeline.host_batches(spec, 'train', 0))
    b = list(pipeline.host_batches(spec, 'train', 0))
    c = list(pipeline.host_batches(spec, 'train', 1))
  assert len(a) == 2 and a[0]['image'].shape == (4, 32, 32, 3)
  np.testing.assert_array_equal(a[0]['image'], b[0]['image'])
  assert not np.allclose(a[0]['image'], c[0]['image'])
  # Cutout: every image has a zeroed square of at most 16x16 (at least 8x8 inside the image).
  for image in a[0]['image']:
    zero = np.all(image == 0, axis=-1)
    assert 64 <= zero.sum() <= 256 + 32, zero.sum()


def test_bfloat16_compute_keeps_float32_state(tmp_path):
  config = tiny_train_config(model__compute_dtype='bfloat16', train__epochs=1)
  summary = retrain.run_train(config, str(tmp_path))
  assert np.isfinite(summary['record']['train_loss']) and np.isfinite(
    summary['record']['eval_loss']
  )
  state = jax.device_get(summary['state'])
  dtypes = {x.dtype for x in jax.tree.leaves((state.params, state.batch_stats, state.opt_state))}
  assert dtypes == {np.dtype('float32')}


def test_imagenet_without_data_says_how_to_provide_it(tmp_path):
  config = tiny_train_config('imagenet', data__fake_data=False, data__tfds_data_dir=str(tmp_path))
  with pytest.raises(ConfigError, match='imagenet2012 is not prepared') as err:
    retrain.run_train(config, str(tmp_path / 'run'))
  assert '--config.data.manual_dir=DIR' in str(err.value) and 'ILSVRC2012_img_train.tar' in str(
    err.value
  )
  assert not (tmp_path / 'run' / 'config.json').exists()


def test_cli_train_then_eval_prints_one_json_line(tmp_path):
  workdir = tmp_path / 'run'
  flags = train_flags(train__epochs=1)
  done = run_cli('train', *flags, f'--workdir={workdir}')
  assert done.returncode == 0, done.stderr
  assert 'training finished after 1 epochs' in done.stdout
  evaluated = run_cli('eval', f'--workdir={workdir}')
  assert evaluated.returncode == 0, evaluated.stderr
  result = json.loads(evaluated.stdout.strip().splitlines()[-1])
  assert set(result) >= {'top1', 'top5', 'loss'} and 0 <= result['top1'] <= result['top5'] <= 1
  unknown = run_cli('train', flags[0], '--config.genotype=NOPE', f'--workdir={tmp_path / "x"}')
  assert unknown.returncode == 2
  assert "unknown genotype 'NOPE'; known: NASNet" in unknown.stderr.strip().splitlines()[-1]
