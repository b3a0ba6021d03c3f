"""TensorBoard event files: the scalars of an epoch record; events written, read back with
TensorBoard's EventAccumulator, with the expected tags and values; no TensorFlow imported."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.testing import REPO, cli_env, read_scalars, search_records
from unreal_nas_jax.train import tensorboard


def test_search_epoch_scalars():
  warmup, search = search_records(2, skip_growth=2.0)
  scalars = tensorboard.search_epoch_scalars(search)
  assert scalars['loss/train'] == 1.5 and scalars['accuracy/val'] == pytest.approx(0.5 - 0.5 / 3)
  assert scalars['lr'] == 0.0125 and scalars['skip_connects/normal'] == 4
  assert scalars['speed/images_per_s'] == 102.0
  p = np.array(search['alphas']['reduce'][13])
  assert scalars['alpha_entropy/reduce/edge_13'] == pytest.approx(-np.sum(p * np.log(p)))
  assert len([t for t in scalars if t.startswith('alpha_entropy/normal/edge_')]) == 14
  assert 'loss/val' not in tensorboard.search_epoch_scalars(warmup)  # null in warm-up
  uniform = tensorboard.edge_entropies(np.full((2, 8), 1 / 8))
  np.testing.assert_allclose(uniform, np.log(8))


def test_train_epoch_scalars():
  record = {'epoch': 3, 'eval_top1': 0.9, 'eval_top5': None, 'train_loss': 0.5, 'drop_path': 0.1}
  assert tensorboard.train_epoch_scalars(record) == {
    'accuracy/eval_top1': 0.9, 'loss/train': 0.5, 'drop_path': 0.1,
  }  # fmt: skip


def test_write_and_read_back(tmp_path):
  with tensorboard.SummaryWriter(str(tmp_path), enabled=True) as writer:
    writer.scalars(1, {'loss/train': 2.5, 'lr': 0.025, 'skipped': None})
    (name,) = os.listdir(tmp_path / 'tensorboard')
    size = os.path.getsize(tmp_path / 'tensorboard' / name)
    writer.scalars(2, {'loss/train': 1.25})
    # The second epoch's event is appended: the file so far is kept as it was.
    assert os.path.getsize(tmp_path / 'tensorboard' / name) > size
  assert read_scalars(tmp_path / 'tensorboard') == {
    'loss/train': {1: 2.5, 2: 1.25}, 'lr': {1: pytest.approx(0.025)},
  }  # fmt: skip


def test_a_resumed_run_adds_a_file_and_its_redone_epochs_replace_the_old_points(tmp_path):
  with tensorboard.SummaryWriter(str(tmp_path), enabled=True) as writer:
    for epoch in (1, 2, 3):
      writer.scalars(epoch, {'loss/train': float(epoch)})
  time.sleep(0.01)  # event file names carry the time to the microsecond
  with tensorboard.SummaryWriter(str(tmp_path), enabled=True) as writer:  # resumed after epoch 1
    for epoch in (2, 3, 4):
      writer.scalars(epoch, {'loss/train': 10.0 * epoch})
  assert len(os.listdir(tmp_path / 'tensorboard')) == 2
  assert read_scalars(tmp_path / 'tensorboard') == {
    'loss/train': {1: 1.0, 2: 20.0, 3: 30.0, 4: 40.0}
  }


def test_other_processes_write_nothing(tmp_path):
  writer = tensorboard.SummaryWriter(str(tmp_path), enabled=False)
  writer.scalars(1, {'loss/train': 1.0})
  writer.close()
  assert not writer.enabled and not os.path.exists(tmp_path / 'tensorboard')


def test_writing_events_does_not_import_tensorflow(tmp_path):
  # In a fresh process: this one may have imported TensorFlow for other tests (or the reader).
  script = (
    'import sys\n'
    'from unreal_nas_jax.train import tensorboard\n'
    f'with tensorboard.SummaryWriter({str(tmp_path)!r}, enabled=True) as writer:\n'
    "  writer.scalars(1, {'loss/train': 1.0})\n"
    "print(sorted(m for m in ('tensorflow', 'jax') if m in sys.modules))\n"
  )
  done = subprocess.run(
    [sys.executable, '-c', script], cwd=REPO, env=cli_env(), capture_output=True, text=True
  )
  assert done.returncode == 0, done.stderr
  assert done.stdout.split('\n')[0] == '[]'  # neither TensorFlow nor JAX
  assert read_scalars(tmp_path / 'tensorboard') == {'loss/train': {1: 1.0}}
