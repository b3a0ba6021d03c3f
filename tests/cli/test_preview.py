"""`unreal-nas data preview`: every preset renders a grid of its examples."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.testing import run_cli
from unreal_nas_jax.cli import preview
from unreal_nas_jax.config_utils import ConfigError, load_config

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _config(preset):
  config = load_config(f'configs/search.py:{preset},quick')
  config.data.fractal_categories = 3
  return config


@pytest.mark.parametrize('preset', ['rlrn', 'rlgd', 'rlrd', 'cifar10', 'cifar100'])
def test_every_preset_renders_a_grid(preset, tmp_path):
  out = tmp_path / f'{preset}.png'
  with tfds.testing.mock_data(num_examples=1200):
    preview.write_preview(_config(preset), str(out), rows=2, cols=3)
  assert out.read_bytes().startswith(PNG_MAGIC) and out.stat().st_size > 5000


def test_preview_shows_the_batch_the_search_step_sees():
  config = _config('rlrn')
  train_images, train_labels = preview.preview_batch(config, 4, 'train')
  val_images, val_labels = preview.preview_batch(config, 4, 'val')
  np.testing.assert_array_equal(val_labels, train_labels)
  np.testing.assert_array_equal(val_images, train_images[:, :, ::-1, :])
  shown = preview.display_range(train_images)
  assert shown.min() == 0.0 and shown.max() == 1.0


@pytest.mark.parametrize(
  'kwargs, expected',
  [
    ({'out': 'grid.gif'}, "grid.gif' is not allowed; allowed: a file ending in"),
    ({'rows': 100}, '--rows=100 x --cols=8 is not allowed'),
    ({'split': 'test'}, "--split='test' is not allowed"),
  ],
)
def test_bad_preview_arguments(kwargs, expected, tmp_path):
  args = {'out': 'grid.png', 'rows': 4, 'cols': 8, 'split': 'train', **kwargs}
  out = str(tmp_path / args.pop('out'))
  with pytest.raises(ConfigError, match=expected.replace('(', r'\(')):
    preview.write_preview(_config('rlrn'), out, **args)
  assert not list(tmp_path.iterdir())


def test_cli_preview_and_its_errors(tmp_path):
  out = tmp_path / 'noise.png'
  done = run_cli('data', 'preview', '--config=configs/search.py:rlrn,quick', f'--out={out}')
  assert done.returncode == 0, done.stderr
  assert f'wrote {out}' in done.stdout and out.read_bytes().startswith(PNG_MAGIC)
  missing = run_cli('data', 'show')
  assert missing.returncode == 2
  assert missing.stderr.strip().splitlines()[-1] == (
    "unreal-nas data: error: unreal-nas data needs an action, got 'show'; allowed: preview"
  )
