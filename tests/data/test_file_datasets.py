"""Image folders and label CSVs: listing, policies, host batches, one-line errors."""

import numpy as np
import pytest

from tests.testing import write_chexpert, write_folder
from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.data import file_source, folder, label_csv, pipeline
from unreal_nas_jax.data.pipeline_spec import PipelineSpec


def folder_spec(root, **fields):
  base = dict(dataset='folder', image_size=16, batch_size=4, seed=0, data_dir=str(root),
              on_device='host', mean=(0.5,), std=(0.25,))  # fmt: skip
  return pipeline.resolve(PipelineSpec(**{**base, **fields}))


def test_folder_splits_and_held_out_fraction(tmp_path):
  root = write_folder(tmp_path / 'given')
  train, val = folder.folder_splits(str(root), 0.5, seed=0)
  assert train.names == ('cat', 'dog', 'eel') and len(train) == 18 and len(val) == 6
  assert list(np.bincount(val.labels)) == [2, 2, 2]
  only = write_folder(tmp_path / 'held', per_class=(5, 0), with_val=False)
  a_train, a_val = folder.folder_splits(str(only), 0.2, seed=3)
  b_train, b_val = folder.folder_splits(str(only), 0.2, seed=3)
  assert a_val.paths == b_val.paths and len(a_val) == 3  # one image of each class
  assert not set(a_val.paths) & set(a_train.paths)
  _, c_val = folder.folder_splits(str(only), 0.2, seed=4)
  assert c_val.paths != a_val.paths  # the seed chooses


@pytest.mark.parametrize('channels, mode, fmt', [(1, 'L', 'png'), (3, 'RGB', 'jpg')])
def test_folder_batches_grayscale_and_colour(tmp_path, channels, mode, fmt):
  root = write_folder(tmp_path, mode=mode, fmt=fmt)
  spec = folder_spec(root, channels=channels, mean=(), std=(), cutout=4)
  assert len(spec.mean) == channels and all(0.3 < m < 0.7 for m in spec.mean)  # computed
  batches = list(pipeline.host_batches(spec, 'train', 0))
  assert len(batches) == 4 and batches[0]['image'].shape == (4, 16, 16, channels)
  evals = list(pipeline.host_batches(spec, 'val', 0))
  assert [b['mask'].sum() for b in evals] == [4, 2]  # 6 images, the last batch padded
  assert sorted(np.concatenate([b['label'][b['mask'] > 0] for b in evals])) == [0, 0, 1, 1, 2, 2]


def test_start_step_equals_the_tail_of_the_epoch(tmp_path):
  spec = folder_spec(write_folder(tmp_path))
  whole = list(pipeline.host_batches(spec, 'train', 1))
  tail = list(pipeline.host_batches(spec, 'train', 1, start_step=2))
  assert len(tail) == 2
  for a, b in zip(whole[2:], tail, strict=True):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  other = list(pipeline.host_batches(spec, 'train', 2))
  assert not np.array_equal(whole[0]['image'], other[0]['image'])


def test_folder_errors_are_one_line(tmp_path):
  root = write_folder(tmp_path / 'data')
  (root / 'train' / 'empty').mkdir()
  with pytest.raises(ConfigError, match=r'train/empty holds no images'):
    folder.folder_splits(str(root), 0.1, 0)
  (root / 'train' / 'empty').rmdir()
  (root / 'val' / 'wolf').mkdir()
  (root / 'val' / 'wolf' / 'a.png').write_bytes((root / 'val' / 'cat' / '0.png').read_bytes())
  with pytest.raises(ConfigError, match=r"val/wolf: class 'wolf' is not a training class"):
    folder.folder_splits(str(root), 0.1, 0)
  with pytest.raises(ConfigError, match='holds no class folders'):
    (tmp_path / 'bare').mkdir()
    folder.folder_splits(str(tmp_path / 'bare'), 0.1, 0)


def test_an_undecodable_image_is_named(tmp_path):
  root = write_folder(tmp_path)
  bad = root / 'train' / 'dog' / '3.png'
  bad.write_bytes(b'not a png at all')
  spec = folder_spec(root)
  with pytest.raises(file_source.ImageDecodeError, match=r'cannot decode image .*dog/3\.png'):
    for _ in pipeline.host_batches(spec, 'train', 0):
      pass


def test_uncertainty_policies_on_hand_made_labels():
  values = np.array([[1, 0, -1, np.nan]], np.float64)
  expected = {
    'ones': ([1, 0, 1, 0], [1, 1, 1, 1]),
    'zeros': ([1, 0, 0, 0], [1, 1, 1, 1]),
    'ignore': ([1, 0, 0, 0], [1, 1, 0, 1]),  # the uncertain entry is out of the loss
  }
  for policy, (targets, mask) in expected.items():
    t, m = label_csv.apply_policy(values, policy)
    assert t.tolist() == [targets] and m.tolist() == [mask], policy
  with pytest.raises(ConfigError, match=r"config.data.uncertainty='maybe' .* ones, zeros, ignore"):
    label_csv.apply_policy(values, 'maybe')


def test_chexpert_csv_batches(tmp_path):
  labels = ('Cardiomegaly', 'Edema')
  rows = [['1', '-1'], ['0', ''], ['-1', '1'], ['', '0']]
  root = write_chexpert(tmp_path, rows_train=rows, labels=labels)
  spec = pipeline.resolve(PipelineSpec(
    dataset='chexpert', image_size=16, batch_size=2, seed=0, data_dir=str(root), channels=1,
    csv_label_columns=labels, uncertainty='ignore', augment='affine', flip=False))  # fmt: skip
  assert spec.names == labels and len(spec.mean) == 1
  batches = list(pipeline.host_batches(spec, 'train', 0))
  assert batches[0]['image'].shape == (2, 16, 16, 1)
  seen = {
    tuple(t): tuple(m) for b in batches for t, m in zip(b['label'], b['label_mask'], strict=True)
  }
  assert seen == {(1, 0): (1, 0), (0, 0): (1, 1), (0, 1): (0, 1)}


def test_an_unzipped_chexpert_archive_is_found_in_data_dir(tmp_path):
  # DIR/CheXpert-v1.0-small/{train,valid}.csv, image paths starting with CheXpert-v1.0-small/.
  root = write_chexpert(tmp_path, rows_train=[['1'], ['0'], ['1']], labels=('Edema',), archive=True)
  assert not (root / 'train.csv').exists()

  def spec(**fields):
    return pipeline.resolve(PipelineSpec(
      dataset='chexpert', image_size=8, batch_size=3, seed=0, data_dir=str(root), channels=1,
      csv_label_columns=('Edema',), **fields))  # fmt: skip

  found = spec()
  train = file_source.file_list(found, 'train')
  image = root / 'CheXpert-v1.0-small/train/patient00000/study1/view1_frontal.jpg'
  assert train.paths[0] == str(image) and train.labels[:, 0].tolist() == [1, 0, 1]
  assert len(file_source.file_list(found, 'valid').paths) == 6
  (batch,) = pipeline.host_batches(found, 'train', 0)  # the images load
  assert batch['image'].shape == (3, 8, 8, 1)
  # Still overridable: a CSV of one's own in DIR is read instead.
  lines = (root / 'CheXpert-v1.0-small/train.csv').read_text().splitlines()
  (root / 'mine.csv').write_text('\n'.join(lines[:2]) + '\n')
  assert len(file_source.file_list(spec(csv_train='mine.csv'), 'train').paths) == 1
  # Found nowhere: one line naming every place looked at.
  with pytest.raises(
    ConfigError, match=r'label CSV \S+/none.csv or \S+/CheXpert-v1.0-small/none.csv'
  ):
    spec(csv_eval='none.csv')


def test_csv_errors_are_one_line(tmp_path):
  root = write_chexpert(tmp_path, labels=('Edema',), rows_train=[['1']])
  with pytest.raises(ConfigError, match=r"train.csv has no column 'Cardiomegaly'"):
    label_csv.read_label_csv(str(root / 'train.csv'), str(root), 'Path', ('Cardiomegaly',), 'ones')
  with pytest.raises(ConfigError, match=r"has no column 'File' \(config.data.csv_path_column\)"):
    label_csv.read_label_csv(str(root / 'train.csv'), str(root), 'File', ('Edema',), 'ones')
  text = (root / 'train.csv').read_text().replace(',1\n', ',yes\n')
  (root / 'train.csv').write_text(text)
  with pytest.raises(ConfigError, match=r"row 2 column 'Edema': 'yes' is not a label"):
    label_csv.read_label_csv(str(root / 'train.csv'), str(root), 'Path', ('Edema',), 'ones')


def test_fake_chexpert_batches_have_the_multilabel_shapes():
  spec = pipeline.resolve(PipelineSpec(
    'chexpert', 16, 4, seed=0, fake_data=True, channels=1, num_train_examples=8))  # fmt: skip
  batches = list(pipeline.host_batches(spec, 'train', 0, start_step=1))
  assert len(batches) == 1 and spec.num_classes == 14 and spec.mean == (0.5,)
  assert batches[0]['image'].shape == (4, 16, 16, 1)
  assert batches[0]['label'].shape == batches[0]['label_mask'].shape == (4, 14)
