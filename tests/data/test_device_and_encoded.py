"""On-device augmentation (deterministic, resumable) and tfds images shuffled before decoding."""

import jax
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests.testing import write_folder
from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.data import pipeline, tfds_source
from unreal_nas_jax.data.pipeline_spec import PipelineSpec


def _source(root, seed=0, **fields):
  spec = pipeline.resolve(PipelineSpec(
    'folder', 16, 4, seed=seed, data_dir=str(root), on_device='device', mean=(0.5,),
    std=(0.25,), cutout=4, **fields))  # fmt: skip
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',))
  return pipeline.Source(spec, mesh)


def _arrays(batches):
  batches = list(batches)
  return [np.asarray(b['image']) for b in batches], [np.asarray(b['label']) for b in batches]


def test_device_batches_are_a_function_of_seed_epoch_and_position(tmp_path):
  root = write_folder(tmp_path)
  source = _source(root)
  assert source.on_device
  images, labels = _arrays(source.batches('train', 0))
  again, again_labels = _arrays(_source(root).batches('train', 0))
  assert len(images) == 4 and images[0].shape == (4, 16, 16, 3)
  for a, b in zip(images + labels, again + again_labels, strict=True):
    np.testing.assert_array_equal(a, b)
  tail, tail_labels = _arrays(source.batches('train', 0, start_step=3))
  np.testing.assert_array_equal(tail[0], images[3])
  np.testing.assert_array_equal(tail_labels[0], labels[3])
  other_epoch, _ = _arrays(source.batches('train', 1))
  other_seed, _ = _arrays(_source(root, seed=1).batches('train', 0))
  assert not np.array_equal(images[0], other_epoch[0])
  assert not np.array_equal(images[0], other_seed[0])
  # Cutout 4: each augmented image has a zeroed square of at most 4x4 pixels, at least 2x2.
  zero = np.all(images[0] == 0, axis=-1).sum(axis=(1, 2))
  assert np.all((zero >= 4) & (zero <= 16)), zero
  # An epoch visits every example once (18 images, 4 batches of 4: 16 of them).
  assert np.bincount(np.concatenate(labels), minlength=3).sum() == 16


def test_device_eval_is_unaugmented_and_padded(tmp_path):
  source = _source(write_folder(tmp_path))
  evals = list(source.batches('val', 0))
  assert [float(b['mask'].sum()) for b in evals] == [4.0, 2.0]
  host = list(pipeline.host_batches(source.spec, 'val', 0))
  # The same decoded pixels and normalisation as the host path (no augmentation in eval).
  np.testing.assert_allclose(np.asarray(evals[0]['image']), host[0]['image'], atol=3e-2)


def test_device_path_refused_where_it_cannot_hold_the_data(tmp_path):
  with pytest.raises(ConfigError, match='on_device=device is not allowed'):
    _source(write_folder(tmp_path), augment='affine')


def test_tfds_images_are_shuffled_encoded_and_decoded_after():
  spec = PipelineSpec('imagenet', 32, 4, seed=0, num_train_examples=8,
                                     num_eval_examples=4)  # fmt: skip
  with tfds.testing.mock_data(num_examples=8):
    encoded = tfds_source.encoded_examples(spec, 'train', 0)
    # Before the map that decodes, the shuffled image is still the JPEG's bytes.
    assert encoded.element_spec[1]['image'].dtype == tf.string
    whole = list(pipeline.host_batches(spec, 'train', 0))
    tail = list(pipeline.host_batches(spec, 'train', 0, start_step=1))
    evals = list(pipeline.host_batches(spec, 'validation', 0))
  assert len(whole) == 2 and whole[0]['image'].shape == (4, 32, 32, 3)
  np.testing.assert_array_equal(whole[1]['image'], tail[0]['image'])
  assert evals[0]['image'].shape == (4, 32, 32, 3)


def test_measure_rate_reports_the_path_and_a_rate(tmp_path):
  spec = _source(write_folder(tmp_path)).spec
  rate = pipeline.measure_rate(spec, steps=2)
  assert rate['path'] == 'device' and rate['batches'] == 2 and rate['images_per_s'] > 0


def test_cifar_stays_on_the_device_and_resumes_mid_epoch():
  spec = PipelineSpec('cifar10', 32, 4, seed=0, num_train_examples=16)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',))
  with tfds.testing.mock_data(num_examples=16):
    source = pipeline.Source(spec, mesh)
    whole, labels = _arrays(source.batches('train', 3))
    tail, tail_labels = _arrays(source.batches('train', 3, start_step=2))
  assert source.on_device and len(whole) == 4 and whole[0].shape == (4, 32, 32, 3)
  for a, b in zip(whole[2:] + labels[2:], tail + tail_labels, strict=True):
    np.testing.assert_array_equal(a, b)
  # Cutout 16 zeroes between 8x8 (a corner) and 16x16 pixels of every image.
  zero = np.all(whole[0] == 0, axis=-1).sum(axis=(1, 2))
  assert np.all((zero >= 64) & (zero <= 256)), zero
