"""TensorBoard event files: written, read back with TensorFlow's event reader (and TensorBoard's
EventAccumulator where TensorBoard is installed), with the expected tags and values."""

import os

import numpy as np
import pytest

from tests.analysis.fake_runs import search_records, write_search_run, write_train_run
from unreal_nas_jax.analysis import tensorboard


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
    writer.scalars(2, {'loss/train': 1.25})
    writer.flush()
  logdir = str(tmp_path / 'tensorboard')
  assert tensorboard.read_scalars(logdir) == {
    'loss/train': {1: 2.5, 2: 1.25}, 'lr': {1: pytest.approx(0.025)},
  }  # fmt: skip
  accumulator = pytest.importorskip('tensorboard.backend.event_processing.event_accumulator')
  events = accumulator.EventAccumulator(logdir)
  events.Reload()
  assert set(events.Tags()['scalars']) == {'loss/train', 'lr'}
  assert [(e.step, e.value) for e in events.Scalars('loss/train')] == [(1, 2.5), (2, 1.25)]


def test_other_processes_write_nothing(tmp_path):
  writer = tensorboard.SummaryWriter(str(tmp_path), enabled=False)
  writer.scalars(1, {'loss/train': 1.0})
  writer.close()
  assert not writer.enabled and not os.path.exists(tmp_path / 'tensorboard')


def test_write_run_events_of_a_finished_search_and_training(tmp_path):
  search = write_search_run(tmp_path / 's', epochs=3, num_seeds=2)
  written = tensorboard.write_run_events(search)
  assert written == [os.path.join(search, f'seed_{k}', 'tensorboard') for k in (0, 1)]
  scalars = tensorboard.read_scalars(written[1])
  assert sorted(scalars['loss/train']) == [1, 2, 3]
  assert sorted(scalars['accuracy/val']) == [2, 3]
  assert 'alpha_entropy/normal/mean' in scalars
  train = write_train_run(tmp_path / 't', search, (0.5, 0.75))
  (logdir,) = tensorboard.write_run_events(train)
  assert tensorboard.read_scalars(logdir)['accuracy/eval_top1'] == {1: 0.5, 2: 0.75}
