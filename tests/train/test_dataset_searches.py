"""A CIFAR-10 search end to end, from a real tfds build (rlgd's: tests/train/test_resume.py)."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.testing import tiny_search_config
from unreal_nas_jax.config_utils import load_config
from unreal_nas_jax.data import search_data
from unreal_nas_jax.train import search_loop


def _tiny(preset, **overrides):
  config = tiny_search_config(**{'search__warmup_epochs': 0, 'search__epochs': 2, **overrides})
  base = load_config(f'configs/search.py:{preset},quick')
  config.preset = base.preset
  config.data.name = base.data.name
  return config


def _write_fake_cifar10_binaries(root, per_file, seed=0):
  """CIFAR-10's binary release in miniature: 5 train files and a test file, 1 + 3072 bytes each."""
  rng = np.random.default_rng(seed)
  folder = root / 'cifar-10-batches-bin'
  folder.mkdir(parents=True)
  names = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
  (folder / 'batches.meta.txt').write_text('\n'.join(names) + '\n')
  files = [f'data_batch_{i}.bin' for i in range(1, 6)] + ['test_batch.bin']
  images, labels = [], []
  for name in files:
    label = rng.integers(0, 10, per_file, dtype=np.uint8)
    planes = rng.integers(0, 256, (per_file, 3, 32, 32), dtype=np.uint8)
    records = np.concatenate([label[:, None], planes.reshape(per_file, -1)], axis=1)
    (folder / name).write_bytes(records.tobytes())
    if name != 'test_batch.bin':
      images.append(planes.transpose(0, 2, 3, 1))
      labels.append(label)
  return np.concatenate(images), np.concatenate(labels)


def test_cifar10_search_on_a_tfds_build_of_fake_binaries(tmp_path, monkeypatch):
  extracted = tmp_path / 'extracted'
  images, labels = _write_fake_cifar10_binaries(extracted, per_file=8)
  # The real builder, with its download step answered by the fake release (no network).
  monkeypatch.setattr(
    tfds.download.DownloadManager, 'download_and_extract', lambda self, url: str(extracted)
  )
  data_dir = str(tmp_path / 'tfds')
  config = _tiny(
    'cifar10',
    data__num_classes=10,
    data__num_examples=16,
    data__tfds_data_dir=data_dir,
    data__download=True,
    search__epochs=1,
  )
  summary = search_loop.run_search(config, str(tmp_path / 'run'))
  assert tfds.builder('cifar10', data_dir=data_dir).is_prepared()

  # The search read the images in the release's order: the first 16 for the weights.
  from unreal_nas_jax.data import tfds_cifar

  raw, true_labels = tfds_cifar.load_train_images('cifar10', data_dir)
  np.testing.assert_array_equal(raw, images)
  np.testing.assert_array_equal(true_labels, labels)
  record = json.loads((tmp_path / 'run' / 'metrics.jsonl').read_text().splitlines()[-1])
  assert record['phase'] == 'search' and np.isfinite(record['val_loss'])
  assert summary['epochs'] == 1


def test_cifar10_search_without_prepared_data_writes_nothing_but_the_workdir(tmp_path):
  config = _tiny('cifar10', data__num_classes=10, data__tfds_data_dir=str(tmp_path / 'empty'))
  with pytest.raises(search_data.tfds_cifar.DatasetNotPreparedError, match='cifar10'):
    search_loop.run_search(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run' / 'config.json').exists()
