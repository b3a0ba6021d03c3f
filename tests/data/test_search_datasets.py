"""The search datasets other than RLRN: rlgd (fractals), rlrd and the cifar baselines (tfds, mocked)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from unreal_nas_jax.config_utils import ConfigError, load_config
from unreal_nas_jax.data import augment, fractals, search_data, tfds_cifar
from unreal_nas_jax.data.datasets import DATASETS


def _data_config(preset, **overrides):
  config = load_config(f'configs/search.py:{preset},quick').data
  config.num_examples = 48
  config.image_size = 16
  config.fractal_categories = 4
  config.render_batch_size = 16
  config.update(overrides)
  return config


def _batch(built, indices, split, key=None):
  return built.batch_fn(built.arrays, jnp.asarray(indices, jnp.int32), split, key)


# ---------------------------------------------------------------------------------------------
# rlgd


@pytest.fixture(scope='module')
def rlgd():
  return search_data.make_search_data(_data_config('rlgd'), seed=3)


def test_rlgd_is_deterministic_in_the_seed(rlgd):
  again = search_data.make_search_data(_data_config('rlgd'), seed=3)
  np.testing.assert_array_equal(again.arrays['images'], rlgd.arrays['images'])
  np.testing.assert_array_equal(again.arrays['labels'], rlgd.arrays['labels'])
  other = search_data.make_search_data(_data_config('rlgd'), seed=4)
  assert not np.allclose(other.arrays['images'], rlgd.arrays['images'])


def test_rlgd_validation_is_the_flipped_examples_with_the_same_labels(rlgd):
  idx = [5, 0, 47, 12]
  train_images, train_labels = _batch(rlgd, idx, 'train')
  val_images, val_labels = _batch(rlgd, idx, 'val')
  np.testing.assert_array_equal(val_labels, train_labels)
  np.testing.assert_array_equal(val_images, np.asarray(train_images)[:, :, ::-1, :])
  # Different examples are different fractals: no two training images coincide.
  images = np.asarray(rlgd.arrays['images']).reshape(48, -1)
  assert len({row.tobytes() for row in images}) == 48


def test_rlgd_keeps_accepted_systems_for_the_workdir(rlgd, tmp_path):
  kept = rlgd.artifacts[search_data.FRACTAL_CATEGORIES_FILE]
  assert len(kept['categories']) == 4
  for category in kept['categories']:
    assert 2 <= len(category['maps']) <= 7 and len(category['maps'][0]) == 6
    assert category['fill_rate'] >= 0.2
    np.testing.assert_allclose(sum(category['probs']), 1.0, rtol=1e-5)
  # A run that finds the file in its workdir renders exactly the same images from it.
  (tmp_path / search_data.FRACTAL_CATEGORIES_FILE).write_text(json.dumps(kept))
  reused = search_data.make_search_data(_data_config('rlgd'), seed=3, workdir=str(tmp_path))
  np.testing.assert_array_equal(reused.arrays['images'], rlgd.arrays['images'])


def test_rlgd_refuses_a_categories_file_of_another_size(rlgd, tmp_path):
  path = tmp_path / 'cats.json'
  path.write_text(json.dumps(rlgd.artifacts[search_data.FRACTAL_CATEGORIES_FILE]))
  config = _data_config('rlgd', fractal_categories=5, fractal_categories_file=str(path))
  with pytest.raises(ConfigError, match='holds 4 fractal categories but data.fractal_categories=5'):
    search_data.make_search_data(config, seed=3)
  missing = _data_config('rlgd', fractal_categories_file=str(tmp_path / 'nope.json'))
  with pytest.raises(ConfigError, match='does not exist'):
    search_data.make_search_data(missing, seed=3)


def test_rlgd_images_are_normalised_fractals_of_the_categories(rlgd):
  images = np.asarray(rlgd.arrays['images'])
  assert images.shape == (48, 16, 16, 3)
  np.testing.assert_allclose(images.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(images.std(axis=(0, 1, 2)), 1.0, atol=1e-3)
  # Re-rendered independently from the kept systems, the raw images match after normalising.
  cats = fractals.categories_from_json(rlgd.artifacts[search_data.FRACTAL_CATEGORIES_FILE])
  config = _data_config('rlgd')
  np.testing.assert_allclose(search_data.render_fractals(config, 3, cats), images, atol=1e-5)


def test_random_labels_are_uniform_and_fixed():
  labels = np.asarray(search_data.random_labels(seed=0, num_examples=50_000, num_classes=10))
  counts = np.bincount(labels, minlength=10)
  # Chi-square with 9 degrees of freedom: 27.9 is its 0.999 quantile.
  chi2 = ((counts - 5000) ** 2 / 5000).sum()
  assert chi2 < 27.9, counts
  np.testing.assert_array_equal(search_data.random_labels(0, 100, 10), labels[:100])


# ---------------------------------------------------------------------------------------------
# tfds: rlrd and the real-data baseline, through tfds.testing.mock_data.


def _indexed_cifar(num_examples, seed=0):
  """A fake tfds CIFAR train split whose examples come in shuffled order; image pixel 0 = index."""
  order = np.random.default_rng(seed).permutation(num_examples)

  def as_dataset(self, *args, **kwargs):
    del self, args, kwargs
    images = np.random.default_rng(1).integers(0, 256, (num_examples, 32, 32, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(num_examples) % 256
    images[:, 0, 0, 1] = np.arange(num_examples) // 256
    return tf.data.Dataset.from_tensor_slices(
      {
        'id': [f'train_{i:05d}' for i in order],
        'image': images[order],
        'label': (order % 10).astype(np.int64),
      }
    )

  return tfds.testing.mock_data(as_dataset_fn=as_dataset)


def test_cifar_images_come_in_file_order_whatever_the_tfds_order():
  with _indexed_cifar(300):
    images, labels = tfds_cifar.load_train_images('cifar10')
  index = images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 0, 1].astype(int)
  np.testing.assert_array_equal(index, np.arange(300))
  np.testing.assert_array_equal(labels, np.arange(300) % 10)


def test_rlrd_is_the_first_images_normalised_with_random_labels():
  config = _data_config('rlrd', image_size=32, num_examples=64, num_classes=1000)
  with _indexed_cifar(200):
    raw, _ = tfds_cifar.load_train_images('cifar10')
    built = search_data.make_search_data(config, seed=0)
  mean, std = (
    np.asarray(s, np.float32) for s in (DATASETS['cifar10'].mean, DATASETS['cifar10'].std)
  )
  expected = (raw[:64].astype(np.float32) / 255.0 - mean) / std
  np.testing.assert_allclose(built.arrays['images'], expected, atol=1e-6)
  np.testing.assert_array_equal(built.arrays['labels'], search_data.random_labels(0, 64, 1000))
  # The data seed fixes the random labels; the images are CIFAR's whatever the seed.
  with _indexed_cifar(200):
    other = search_data.make_search_data(config, seed=1)
  np.testing.assert_array_equal(other.arrays['images'], built.arrays['images'])
  assert (np.asarray(other.arrays['labels']) != np.asarray(built.arrays['labels'])).mean() > 0.9
  train_images, train_labels = _batch(built, [3, 63], 'train')
  val_images, val_labels = _batch(built, [3, 63], 'val')
  np.testing.assert_array_equal(val_labels, train_labels)
  np.testing.assert_array_equal(val_images, np.asarray(train_images)[:, :, ::-1, :])


def test_real_cifar_uses_two_disjoint_halves_with_true_labels_and_augments_both():
  config = _data_config('cifar10', image_size=32, num_examples=50)
  with _indexed_cifar(120):
    raw, true_labels = tfds_cifar.load_train_images('cifar10')
    built = search_data.make_search_data(config, seed=0)
  assert built.arrays['images'].shape == (100, 32, 32, 3)
  key = jax.random.PRNGKey(7)
  idx = np.arange(50)
  train_images, train_labels = _batch(built, idx, 'train', key)
  val_images, val_labels = _batch(built, idx, 'val', key)
  np.testing.assert_array_equal(train_labels, true_labels[:50])
  np.testing.assert_array_equal(val_labels, true_labels[50:100])
  # Augmented: not the stored images, but a crop of the padded (or flipped) stored image.
  stored = np.asarray(built.arrays['images'])
  assert not np.allclose(train_images, stored[:50])
  pad = -np.asarray(DATASETS['cifar10'].mean) / np.asarray(DATASETS['cifar10'].std)
  for images, offset in ((train_images, 0), (val_images, 50)):
    for i in (0, 17, 49):
      assert _is_crop_or_flipped_crop(np.asarray(images[i]), stored[offset + i], 4, pad)
  # The same key gives the same augmentation; another key another one.
  np.testing.assert_array_equal(_batch(built, idx, 'train', key)[0], train_images)
  assert not np.allclose(_batch(built, idx, 'train', jax.random.PRNGKey(8))[0], train_images)


def _is_crop_or_flipped_crop(image, original, padding, pad_value):
  h, w, _ = original.shape
  padded = np.broadcast_to(pad_value, (h + 2 * padding, w + 2 * padding, 3)).astype(np.float32)
  padded = padded.copy()
  padded[padding : padding + h, padding : padding + w] = original
  for y in range(2 * padding + 1):
    for x in range(2 * padding + 1):
      crop = padded[y : y + h, x : x + w]
      if np.allclose(image, crop) or np.allclose(image, crop[:, ::-1]):
        return True
  return False


def test_crop_offsets_and_flips_cover_all_choices():
  # Columns numbered 10..17, the padding -1: a row of the output shows its shift and flip.
  images = jnp.broadcast_to(10.0 + jnp.arange(8.0)[None, None, :, None], (4000, 8, 8, 1))
  out = augment.random_crop_flip(
    jax.random.PRNGKey(0), images, jnp.arange(4000), padding=2, pad_value=(-1.0,)
  )
  rows, counts = np.unique(np.asarray(out[:, 4, :, 0]), axis=0, return_counts=True)
  # 5 horizontal shifts x 2 flips, each about 1/10 of the examples.
  assert len(rows) == 10 and counts.min() > 300, counts
  # Vertical shifts: a column shows how many padding rows came in at the top or bottom.
  pad_rows = (np.asarray(out[:, :, 4, 0]) == -1.0).sum(axis=1)
  assert set(np.unique(pad_rows)) == {0, 1, 2}


def test_real_cifar_needs_enough_images():
  config = _data_config('cifar10', num_examples=40)
  with (
    _indexed_cifar(60),
    pytest.raises(ConfigError, match='has 60 training images; this search needs 80'),
  ):
    search_data.make_search_data(config, seed=0)


def test_unprepared_cifar_is_a_one_line_error_saying_how_to_prepare_it(tmp_path):
  config = _data_config('rlrd', tfds_data_dir=str(tmp_path))
  with pytest.raises(tfds_cifar.DatasetNotPreparedError) as err:
    search_data.make_search_data(config, seed=0)
  message = str(err.value)
  assert '\n' not in message
  assert 'cifar10 is not prepared' in message and 'tfds build cifar10' in message
  assert '--config.data.tfds_data_dir' in message and '--config.data.download=True' in message
