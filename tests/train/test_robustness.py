"""What clusters do to runs: damaged checkpoints, cloud-storage workdirs, retention, and the
one-line errors of the CLI for a NaN, a missing config file and a workdir of the wrong kind."""

import json
import os
import shutil

import pytest
from etils.epath import gpath, testing

from tests.testing import (
  CACHE_DIR,
  read_scalars,
  tiny_search_config,
  tiny_train_config,
  train_flags,
)
from unreal_nas_jax import checkpointing
from unreal_nas_jax.checkpointing import UNUSABLE_DIR, CheckpointError
from unreal_nas_jax.cli.main import main
from unreal_nas_jax.train import retrain, search_loop, tensorboard


def _damage(checkpoint_dir):
  """Overwrites the middle of every array data file of a checkpoint's state with zeros."""
  damaged = 0
  for root, _, names in os.walk(os.path.join(checkpoint_dir, 'state')):
    if os.path.basename(root) != 'd':
      continue
    for name in names:
      path = os.path.join(root, name)
      data = bytearray(open(path, 'rb').read())
      mid = len(data) // 2
      data[mid : mid + 64] = bytes(min(64, len(data) - mid))
      open(path, 'wb').write(bytes(data))
      damaged += 1
  assert damaged


def test_damaged_latest_checkpoint_falls_back_and_is_kept_aside(search_run, tmp_path, capsys):
  _, finished, _ = search_run
  workdir = tmp_path / 'run'
  shutil.copytree(finished, workdir)
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['12', '4', '8']
  _damage(workdir / 'checkpoints' / '12')
  config = tiny_search_config(search__epochs=3)  # one more epoch than was run
  summary = search_loop.run_search(config, str(workdir))
  err = capsys.readouterr().err
  warnings = [line for line in err.splitlines() if line.startswith('warning:')]
  assert len(warnings) == 1 and 'checkpoint 12 cannot be restored' in warnings[0], err
  assert f'moved to {workdir / UNUSABLE_DIR / "12"}' in warnings[0]
  assert (workdir / UNUSABLE_DIR / '12' / 'state').is_dir()  # the user's data, kept
  # Resumed after epoch 2 (step 8): epochs 3 and 4 ran again, and the metrics say so.
  records = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [r['epoch'] for r in records] == [1, 2, 3, 4]
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['12', '16', '4', '8']
  assert summary['epochs'] == 4


def test_no_restorable_checkpoint_is_one_line_and_moves_nothing(search_run, tmp_path):
  _, finished, _ = search_run
  workdir = tmp_path / 'run'
  shutil.copytree(finished, workdir)
  for step in ('4', '8', '12'):
    _damage(workdir / 'checkpoints' / step)
  with pytest.raises(CheckpointError) as err:
    search_loop.run_search(tiny_search_config(search__epochs=3), str(workdir))
  message = str(err.value)
  assert '\n' not in message and 'tried 12 (' in message and '; 8 (' in message
  assert '; 4 (' in message
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['12', '4', '8']
  assert not (workdir / UNUSABLE_DIR).exists()


class _FakeManager:
  def __init__(self, steps):
    self.steps = list(steps)

  def all_steps(self):
    return list(self.steps)

  def delete(self, step):
    self.steps.remove(step)


@pytest.mark.parametrize(
  'steps,max_to_keep,keep_period,kept',
  [
    # Epochs of 10 steps. Mid-epoch checkpoints go once an epoch end is newer.
    ([5, 10, 15, 20, 25], 0, 0, [10, 20, 25]),
    ([10, 20, 30, 40, 50, 55], 2, 0, [40, 50, 55]),
    ([10, 20, 30, 40, 50], 2, 2, [20, 40, 50]),
    ([10, 13, 16], 1, 0, [10, 16]),
  ],
)
def test_retention_keeps_epoch_ends_and_only_the_newest_mid_epoch(
  steps, max_to_keep, keep_period, kept
):
  manager = _FakeManager(steps)
  checkpointing.apply_retention(
    manager,
    lambda s: s // 10 if s % 10 == 0 else None,
    max_to_keep=max_to_keep,
    keep_period=keep_period,
  )
  assert manager.steps == kept


@pytest.fixture
def fake_bucket(tmp_path, monkeypatch):
  """gs://fake-bucket/... served from a local directory through epath's backend (the path
  library every workdir file goes through), the way a cloud filesystem would be."""
  root = tmp_path / 'bucket'
  root.mkdir()
  prefix = 'gs://fake-bucket'

  def local(path):
    path = os.fspath(path)
    return str(root) + path[len(prefix) :] if path.startswith(prefix) else path

  def one(original, path, *args, **kwargs):
    return original(local(path), *args, **kwargs)

  def two(original, path, dst, *args, **kwargs):
    return original(local(path), local(dst), *args, **kwargs)

  names = ('open', 'exists', 'glob', 'isdir', 'listdir', 'makedirs', 'mkdir', 'remove', 'rmtree')
  monkeypatch.setattr(gpath, '_is_tf_installed', lambda: False)  # else gs:// goes to tf.io.gfile
  with testing.mock_epath(
    **{n: one for n in (*names, 'stat', 'walk')}, rename=two, replace=two, copy=two
  ):
    yield prefix, root
  assert not os.path.exists('gs:'), 'a gs:// path became a local folder'


def test_tensorboard_events_in_cloud_storage(fake_bucket):
  prefix, root = fake_bucket
  with tensorboard.SummaryWriter(f'{prefix}/run', enabled=True) as writer:
    writer.scalars(1, {'loss/train': 2.0})
    writer.scalars(2, {'loss/train': 1.0})  # no appends there: the object is rewritten whole
  assert read_scalars(root / 'run' / 'tensorboard') == {'loss/train': {1: 2.0, 2: 1.0}}


def test_search_and_retraining_in_cloud_storage_workdirs(fake_bucket, tmp_path):
  prefix, root = fake_bucket
  # Orbax writes gs:// itself (TensorStore's GCS driver): its checkpoints stay local here.
  config = tiny_search_config(search__epochs=1, checkpoint__dir=str(tmp_path / 'ckpt_search'))
  summary = search_loop.run_search(config, f'{prefix}/search')
  search_dir = root / 'search'
  assert sorted(os.listdir(search_dir)) == [
    'config.json', 'genotype.json', 'metrics.jsonl', 'tensorboard'
  ]  # fmt: skip
  assert json.loads((search_dir / 'genotype.json').read_text()) == summary['genotype']
  # A resumed run reads config.json and metrics.jsonl back from the bucket.
  search_loop.run_search(tiny_search_config(
    search__epochs=2, checkpoint__dir=str(tmp_path / 'ckpt_search')), f'{prefix}/search')  # fmt: skip
  epochs = [json.loads(x)['epoch'] for x in (search_dir / 'metrics.jsonl').read_text().splitlines()]
  assert epochs == [1, 2, 3]

  config = tiny_train_config(train__epochs=1, checkpoint__dir=str(tmp_path / 'ckpt_train'))
  result = retrain.run_train(config, f'{prefix}/train')
  assert sorted(os.listdir(root / 'train')) == sorted(os.listdir(search_dir))
  assert set(read_scalars(root / 'train' / 'tensorboard')) >= {'loss/train', 'accuracy/eval_top1'}
  evaluated = retrain.run_eval(f'{prefix}/train')
  assert evaluated['top1'] == result['record']['eval_top1']


def _cli(capsys, monkeypatch, *argv):
  argv = ['unreal-nas', *argv]
  monkeypatch.setattr('sys.argv', argv)  # ml_collections reads --config.x overrides from it
  status = main(argv)
  captured = capsys.readouterr()
  lines = [line for line in captured.err.splitlines() if line.strip()]
  return status, lines, captured.out


def test_nan_in_retraining_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
  flags = train_flags(train__epochs=1, log__progress='none', optim__lr=1e38, optim__grad_clip=0)
  status, lines, _ = _cli(
    capsys, monkeypatch, 'train', *flags, f'--workdir={tmp_path}', f'--compile_cache={CACHE_DIR}'
  )
  assert status == 1 and len(lines) == 1, lines
  assert lines[0].startswith('unreal-nas train: error: loss became NaN or Inf in epoch 1')
  assert not [d for d in os.listdir(tmp_path / 'checkpoints') if d.isdigit()]


def test_wrong_inputs_are_one_line_each(search_run, tmp_path, capsys, monkeypatch):
  status, lines, _ = _cli(
    capsys, monkeypatch, 'search', '--config=configs/nope.py', f'--workdir={tmp_path}'
  )
  assert status == 2 and len(lines) == 1 and "config file 'configs/nope.py' does not" in lines[0]
  _, search_dir, _ = search_run
  status, lines, _ = _cli(
    capsys, monkeypatch, 'eval', f'--workdir={search_dir}', '--compile_cache='
  )
  assert (
    status == 2 and len(lines) == 1 and 'is a search workdir; eval takes a training' in lines[0]
  )
  train_dir = tmp_path / 'train'
  train_dir.mkdir()
  (train_dir / 'config.json').write_text(json.dumps({'genotype': 'DARTS_V2', 'train': {}}))
  status, lines, _ = _cli(capsys, monkeypatch, 'genotype', str(train_dir))
  assert status == 2 and len(lines) == 1 and 'is a retraining workdir' in lines[0], lines


def test_bare_presets_and_config_paths_from_any_directory(tmp_path, monkeypatch):
  from unreal_nas_jax.config_utils import load_config, resolve_config_spec

  monkeypatch.chdir(tmp_path)  # no configs/ here: the packaged files are used
  assert load_config('rlrn,quick').search.batch_size == 32
  assert load_config('configs/train.py:cifar10').model.channels == 36
  assert resolve_config_spec('cifar100', 'train.py').endswith('train.py:cifar100')
  with pytest.raises(ValueError, match="config file 'other/search.py' does not exist"):
    resolve_config_spec('other/search.py:rlrn')
