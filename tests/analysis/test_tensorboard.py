"""TensorBoard events of a finished run, written from its metrics.jsonl."""

import os

from tests.testing import read_scalars, write_search_run, write_train_run
from unreal_nas_jax.analysis.tensorboard import write_run_events


def test_write_run_events_of_a_finished_search_and_training(tmp_path):
  search = write_search_run(tmp_path / 's', epochs=3, num_seeds=2)
  written = write_run_events(search)
  assert written == [os.path.join(search, f'seed_{k}', 'tensorboard') for k in (0, 1)]
  scalars = read_scalars(written[1])
  assert sorted(scalars['loss/train']) == [1, 2, 3]
  assert sorted(scalars['accuracy/val']) == [2, 3]
  assert 'alpha_entropy/normal/mean' in scalars
  train = write_train_run(tmp_path / 't', search, (0.5, 0.75))
  (logdir,) = write_run_events(train)
  assert read_scalars(logdir)['accuracy/eval_top1'] == {1: 0.5, 2: 0.75}
