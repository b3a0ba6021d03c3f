"""The search loop end to end: outputs, compile-once, determinism, NaN stop, workdir safety."""

import gc
import hashlib
import json
import os
import shutil
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.testing import read_scalars, tiny_search_config
from unreal_nas_jax import checkpointing
from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.search import setup as search_setup
from unreal_nas_jax.space.primitives import PRIMITIVES
from unreal_nas_jax.train import search_loop
from unreal_nas_jax.train.run import NonFiniteLossError


def _snapshot(workdir):
  """Content hash of every file under workdir (to prove nothing was touched)."""
  digest = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        digest[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
  return digest


def test_outputs_are_written_every_epoch(search_run):
  config, workdir, summary = search_run
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['data']['num_classes'] == config.data.num_classes
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  assert [r['epoch'] for r in records] == [1, 2, 3]
  assert [r['phase'] for r in records] == ['warmup', 'search', 'search']
  steps = config.data.num_examples // config.search.batch_size
  assert [r['step'] for r in records] == [steps, 2 * steps, 3 * steps]
  for r in records:
    for key in (
      'lr',
      'train_loss',
      'train_acc',
      'genotype',
      'alphas',
      'skip_connects_normal',
      'wall_s',
    ):
      assert r[key] is not None, key
    assert np.asarray(r['alphas']['normal']).shape == (5, len(PRIMITIVES))
    np.testing.assert_allclose(np.asarray(r['alphas']['reduce']).sum(1), 1.0, atol=1e-4)
  assert records[0]['val_loss'] is None and records[1]['val_loss'] > 0
  assert 0 <= records[2]['val_acc'] <= 1
  assert records[0]['lr'] == pytest.approx(0.025)
  # Alphas stay uniform during warm-up (zero init) and move during the search.
  np.testing.assert_allclose(records[0]['alphas']['normal'], 1 / len(PRIMITIVES), atol=1e-6)
  assert np.ptp(np.asarray(records[2]['alphas']['normal'])) > 0
  with open(os.path.join(workdir, 'genotype.json')) as f:
    genotype = json.load(f)
  assert genotype == records[-1]['genotype'] == summary['genotype']
  assert set(genotype) == {'normal', 'normal_concat', 'reduce', 'reduce_concat'}
  assert len(genotype['normal']) == 2 * config.model.steps
  assert genotype['normal_concat'] == [2, 3]
  # TensorBoard: one point per epoch of the losses, skip connections and alpha entropies.
  scalars = read_scalars(os.path.join(workdir, 'tensorboard'))
  assert sorted(scalars['loss/train']) == [1, 2, 3] and sorted(scalars['loss/val']) == [2, 3]
  assert scalars['skip_connects/normal'][3] == records[2]['skip_connects_normal']
  assert 'alpha_entropy/normal/edge_04' in scalars and 'speed/images_per_s' in scalars
  ckpt = os.path.join(workdir, 'checkpoints')
  assert sorted(int(d) for d in os.listdir(ckpt) if d.isdigit()) == [4, 8, 12]  # global steps


def test_each_phase_compiles_once(search_run, monkeypatch, tmp_path):
  """Steps are compiled ahead of time, once per phase; a retrace would be an error."""
  config, finished, summary = search_run
  workdir = str(tmp_path / 'copy')
  shutil.copytree(finished, workdir)
  assert summary['compiled_phases'] == ['search', 'warmup']
  calls = []
  original = search_loop.make_step_fn

  def counting(setup, phase):
    calls.append(phase)
    return original(setup, phase)

  monkeypatch.setattr(search_loop, 'make_step_fn', counting)
  config = tiny_search_config(search__epochs=3)  # one more epoch, resumed: search phase only
  extended = search_loop.run_search(config, workdir)
  assert calls == ['search']
  assert extended['compiled_phases'] == ['search']
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    assert [json.loads(line)['epoch'] for line in f] == [1, 2, 3, 4]


def test_a_search_built_again_in_this_process_reuses_its_programs():
  """A run started again in the same process (after an exception, in a notebook) steps the jitted
  programs made before for the same traced config and mesh; host-side settings (checkpoints,
  logs) do not make new ones, the model's size and the phase do."""
  config = tiny_search_config()
  step = search_setup.make_step_fn(search_setup.build_search(config), 'search')
  host_side = config.copy_and_resolve_references()
  host_side.checkpoint.every_steps, host_side.log.every_steps = 3, 1
  assert search_setup.make_step_fn(search_setup.build_search(host_side), 'search') is step
  setup = search_setup.build_search(tiny_search_config(model__channels=2))
  assert search_setup.make_step_fn(setup, 'search') is not step
  assert search_setup.make_step_fn(search_setup.build_search(config), 'warmup') is not step


def test_the_kept_programs_do_not_keep_a_search_data_alive():
  """The programs kept for a later run hold no reference to the setup they were made from (its
  data on the devices). 24 examples: a config no other test builds, so they are made here."""
  setup = search_setup.build_search(tiny_search_config(data__num_examples=24))
  search_setup.make_step_fn(setup, 'search')
  state = search_setup.init_state(setup)
  data = [weakref.ref(x) for x in jax.tree.leaves(setup.data)]
  del setup, state
  gc.collect()
  assert data and all(ref() is None for ref in data)


def test_checkpoint_holds_the_final_alphas(search_run):
  _, workdir, summary = search_run
  state, record, step = checkpointing.restore_raw(os.path.join(workdir, 'checkpoints'))
  assert step == 12
  assert record == {'epoch': 3, 'step_in_epoch': 0, 'phase': 'search', 'global_step': 12}
  np.testing.assert_array_equal(state['alphas']['normal'], summary['state'].alphas['normal'])


def test_same_config_and_seed_give_identical_bits(search_run, tmp_path):
  config, _, summary = search_run
  again = search_loop.run_search(config, str(tmp_path))
  for a, b in zip(jax.tree.leaves(again['state']), jax.tree.leaves(summary['state']), strict=True):
    np.testing.assert_array_equal(a, b)
  assert again['genotype'] == summary['genotype']


def test_incompatible_config_is_refused_and_nothing_changes(search_run):
  config, workdir, _ = search_run
  before = _snapshot(workdir)
  other = tiny_search_config(data__num_classes=11)
  with pytest.raises(ConfigError, match=r'data\.num_classes.*saved 10, now 11'):
    search_loop.run_search(other, str(workdir))
  assert _snapshot(workdir) == before


def test_a_finished_run_rerun_does_nothing(search_run):
  config, workdir, _ = search_run
  before = _snapshot(workdir)
  summary = search_loop.run_search(config, str(workdir))
  assert summary['compiled_phases'] == []
  after = _snapshot(workdir)
  assert {k: v for k, v in after.items() if k != 'config.json'} == {
    k: v for k, v in before.items() if k != 'config.json'
  }


def test_nan_loss_stops_with_epoch_and_step_and_keeps_good_checkpoint(tmp_path, monkeypatch):
  config = tiny_search_config()
  original = search_loop.epoch_inputs

  def poisoned(setup, epoch):
    train_perm, val_perm, lr, start = original(setup, epoch)
    return train_perm, val_perm, lr * jnp.nan if epoch == 1 else lr, start

  monkeypatch.setattr(search_loop, 'epoch_inputs', poisoned)
  with pytest.raises(NonFiniteLossError, match=r'epoch 2 at step 2/4') as err:
    search_loop.run_search(config, str(tmp_path))
  assert 'stopped without saving it' in str(err.value)
  assert '\n' not in str(err.value)
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['4']  # the end of epoch 1
  with open(tmp_path / 'metrics.jsonl') as f:
    assert [json.loads(line)['epoch'] for line in f] == [1]


def test_unwritable_workdir_is_a_one_line_error(tmp_path):
  not_a_dir = tmp_path / 'file'
  not_a_dir.write_text('keep me')
  with pytest.raises(ConfigError, match='is not writable'):
    search_loop.run_search(tiny_search_config(), str(not_a_dir / 'run'))
  assert not_a_dir.read_text() == 'keep me'
