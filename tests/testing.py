"""What the tests share: tiny configs (one table of sizes), the CLI run as a user runs it, runs
stopped as a signal would stop them and what a run wrote, TensorBoard events read back, and
image folders, label CSVs and run directories written by hand.

Nothing here imports JAX at module level: tests/conftest.py imports this module for the compile
cache's path before it starts JAX.
"""

import contextlib
import csv
import json
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
# The persistent compile cache of the test processes and of the CLI runs they start.
CACHE_DIR = os.environ.get('JAX_COMPILATION_CACHE_DIR') or str(REPO / '.jax_cache')

# Tiny configs ------------------------------------------------------------------------------------

# The sizes of every tiny search-space config (search, probe): C=4, 3 cells of 2 nodes, 8x8 images.
TINY_SIZES = {
  'data__num_examples': 32,
  'data__num_classes': 10,
  'data__image_size': 8,
  'model__channels': 4,
  'model__layers': 3,
  'model__steps': 2,
  'model__multiplier': 2,
}
# A tiny search: 4 steps of batch 8 per epoch, one warm-up epoch and two search epochs.
TINY_SEARCH = {
  **TINY_SIZES,
  'search__batch_size': 8,
  'search__warmup_epochs': 1,
  'search__epochs': 2,
}
# A tiny retraining of DARTS_V2 on fake CIFAR-10: C=4, 3 cells, 4 steps of batch 8 per epoch.
TINY_TRAIN = {
  'genotype': 'DARTS_V2',
  'model__channels': 4,
  'model__layers': 3,
  'train__batch_size': 8,
  'train__epochs': 2,
  'data__num_train_examples': 32,
  'data__num_eval_examples': 12,
  'data__fake_data': True,
}


def apply_overrides(config, overrides):
  """Sets `a__b=value` keyword overrides (config.a.b = value) on a ConfigDict; returns it."""
  for dotted, value in overrides.items():
    node = config
    *parents, leaf = dotted.split('__')
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


def config_flags(fields):
  """The CLI's `--config.a.b=value` flags of `a__b=value` fields."""
  return tuple(f'--config.{name.replace("__", ".")}={value}' for name, value in fields.items())


def tiny_search_config(**overrides):
  """A search config that compiles and runs in seconds (`TINY_SEARCH`), without progress lines."""
  from unreal_nas_jax.config_utils import load_config

  config = load_config('configs/search.py:rlrn,quick')
  return apply_overrides(config, {**TINY_SEARCH, 'log__progress': 'none', **overrides})


def tiny_train_config(preset='cifar10', **overrides):
  """A retraining config that compiles and runs in seconds (`TINY_TRAIN`), without progress."""
  from unreal_nas_jax.config_utils import load_config

  config = load_config(f'configs/train.py:{preset},quick')
  return apply_overrides(config, {**TINY_TRAIN, 'log__progress': 'none', **overrides})


def tiny_probe_config(**probe_fields):
  """A probe that compiles and runs in seconds: `TINY_SIZES`, 4 steps of batch 8 per epoch,
  2 epochs, without progress lines or TensorBoard events."""
  from unreal_nas_jax.config_utils import load_config

  config = load_config('configs/probe.py:rlrn,quick')
  fields = {**TINY_SIZES, 'probe__batch_size': 8, 'probe__epochs': 2}
  config = apply_overrides(config, {**fields, 'log__progress': 'none', 'log__tensorboard': False})
  config.probe.update(probe_fields)
  return config


def search_flags(**overrides):
  """`tiny_search_config(**overrides)` as CLI flags, with a progress line per step."""
  fields = {**TINY_SEARCH, 'log__progress': 'lines', 'log__every_steps': 1, **overrides}
  return ('--config=configs/search.py:rlrn,quick', *config_flags(fields))


def train_flags(**overrides):
  """`tiny_train_config(**overrides)` as CLI flags, with a progress line per step."""
  fields = {**TINY_TRAIN, 'log__progress': 'lines', 'log__every_steps': 1, **overrides}
  return ('--config=configs/train.py:cifar10,quick', *config_flags(fields))


TINY_FLAGS = search_flags()

# The CLI as a user runs it -----------------------------------------------------------------------


def cli_env(**extra):
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join([str(REPO), env.get('PYTHONPATH', '')]).rstrip(os.pathsep)
  env.setdefault('JAX_PLATFORMS', 'cpu')
  if 'XLA_FLAGS' in extra:  # add to the suite's flags (tests/conftest.py) rather than replace them
    extra = {**extra, 'XLA_FLAGS': f'{env.get("XLA_FLAGS", "")} {extra["XLA_FLAGS"]}'.strip()}
  env.update(extra)
  return env


def cli_command(*args):
  return [sys.executable, '-m', 'unreal_nas_jax.cli.main', *args]


def run_on_devices(script, num_devices, *args):
  """Runs the Python `script` (with `args`) in a process of `num_devices` CPU devices (the count
  is fixed before JAX starts); asserts that it exits 0 with its last line 'OK'."""
  result = subprocess.run(
    [sys.executable, '-c', script, *map(str, args)],
    cwd=REPO,
    env=cli_env(XLA_FLAGS=f'--xla_force_host_platform_device_count={num_devices}'),
    capture_output=True,
    text=True,
    timeout=900,
    check=False,
  )
  assert result.returncode == 0 and result.stdout.strip().endswith('OK'), result.stderr[-3000:]


def run_cli(*args, timeout=600, **env):
  return subprocess.run(
    cli_command(*args),
    cwd=REPO,
    env=cli_env(**env),
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )


def run_until_signalled(*args, marker, signum):
  """Runs the CLI and sends `signum` as soon as it prints a line containing `marker`.

  Returns (return code, everything it printed).
  """
  proc = subprocess.Popen(
    cli_command(*args),
    cwd=REPO,
    env=cli_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )
  seen = []
  for line in proc.stdout:
    seen.append(line)
    if marker in line:
      proc.send_signal(signum)
      break
  seen.extend(proc.stdout)  # what it prints while it stops
  proc.wait(timeout=600)
  assert any(marker in line for line in seen), ''.join(seen)
  return proc.returncode, ''.join(seen)


# Runs stopped as a signal stops them, and what they wrote ----------------------------------------


class Killed(BaseException):
  """The process dying (as SIGKILL kills it): nothing in the package catches it or saves."""


@contextlib.contextmanager
def stopped_after(global_step, how):
  """Runs started inside stop after `global_step` as a signal would stop them.

  Every loop asks `StopSignals.stop_requested` after each step of an epoch but its last, and after
  an epoch's checkpoint and records: there, at `global_step`, `how='kill'` raises `Killed` (the
  checkpoint before stays the newest, so the resumed run repeats the steps after it) and
  `how='term'` is a SIGTERM received during the step (the run checkpoints it and raises
  `Preempted`).
  """
  from unreal_nas_jax.train.run import StopSignals

  original = StopSignals.stop_requested

  def stop_requested(self, step):
    if step != global_step:
      return original(self, step)
    if how == 'kill':
      raise Killed(f'killed after global step {step}')
    self.received = signal.SIGTERM
    return True

  StopSignals.stop_requested = stop_requested
  try:
    yield
  finally:
    StopSignals.stop_requested = original


TIMINGS = ('wall_s', 'images_per_s', 'checkpoint_s')


def run_outputs(workdir):
  """What a run wrote that no interruption may change: every JSON and JSON-lines file of
  `workdir` but config.json and those in checkpoints/ (timings left out), and the newest
  checkpoint's state (numpy leaves, by path), record and step."""
  import jax

  from unreal_nas_jax import checkpointing

  workdir = pathlib.Path(workdir)
  written = {}
  for path in sorted(workdir.rglob('*.json*')):
    name = str(path.relative_to(workdir))
    if name == 'config.json' or name.startswith('checkpoints'):
      continue
    lines = path.read_text().splitlines() if path.suffix == '.jsonl' else [path.read_text()]
    written[name] = [_without_timings(json.loads(line)) for line in lines]
  state, record, step = checkpointing.restore_raw(workdir / 'checkpoints')
  leaves = {
    jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(state)
  }
  return written, leaves, record, step


def _without_timings(value):
  if isinstance(value, dict):
    return {k: _without_timings(v) for k, v in value.items() if k not in TIMINGS}
  return value


def assert_same_outputs(got, want):
  """`run_outputs` of two runs: the files equal, the state's leaves equal bit for bit."""
  files, leaves, record, step = got
  want_files, want_leaves, want_record, want_step = want
  assert (step, record) == (want_step, want_record)
  assert files.keys() == want_files.keys()
  for name, content in files.items():
    assert content == want_files[name], name
  assert leaves.keys() == want_leaves.keys()
  for path, leaf in leaves.items():
    np.testing.assert_array_equal(leaf, want_leaves[path], err_msg=path)


def read_scalars(logdir):
  """{tag: {step: value}} of the scalar events in local directory `logdir`, read by TensorBoard's
  own reader (its EventAccumulator, what `tensorboard --logdir` reads them with)."""
  from tensorboard.backend.event_processing import event_accumulator

  events = event_accumulator.EventAccumulator(str(logdir), size_guidance={'scalars': 0})
  events.Reload()
  return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()['scalars']}


# Image folders and CheXpert-shaped label CSVs ----------------------------------------------------


def write_folder(root, classes=('cat', 'dog', 'eel'), per_class=(6, 2), mode='RGB', fmt='png',
                 size=(20, 24), with_val=True):  # fmt: skip
  """DIR/train/<class>/i.fmt (and DIR/val/...) of random pixels; returns root."""
  from PIL import Image

  root = pathlib.Path(root)
  rng = np.random.default_rng(0)
  shape = size if mode == 'L' else (*size, 3)
  splits = (
    (('train', per_class[0]), ('val', per_class[1])) if with_val else (('train', per_class[0]),)
  )
  for split, n in splits:
    for name in classes:
      folder = root / split / name
      folder.mkdir(parents=True, exist_ok=True)
      for i in range(n):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(pixels, mode).save(folder / f'{i}.{fmt}')
  return root


def write_chexpert(root, rows_train=None, n_valid=6, labels=None, archive=False):
  """train.csv / valid.csv with grayscale JPEGs, image paths relative to root; `rows_train`: lists
  of label strings; `labels`: the label columns (CheXpert's by default). `archive`: laid out as
  the unzipped CheXpert-v1.0-small archive (CSVs and images in root/CheXpert-v1.0-small/, paths
  starting with that folder)."""
  from PIL import Image

  from unreal_nas_jax.data.datasets import CHEXPERT_LABELS

  labels = CHEXPERT_LABELS if labels is None else labels
  root = pathlib.Path(root)
  folder = 'CheXpert-v1.0-small' if archive else 'small'
  csv_dir = root / folder if archive else root
  rng = np.random.default_rng(1)
  if rows_train is None:
    rows_train = [[rng.choice(['1.0', '0.0', '-1.0', '']) for _ in labels] for _ in range(12)]
  rows_valid = [[str(float((i + j) % 2)) for j in range(len(labels))] for i in range(n_valid)]
  for name, rows in (('train', rows_train), ('valid', rows_valid)):
    table = []
    for i, values in enumerate(rows):
      path = f'{folder}/{name}/patient{i:05d}/study1/view1_frontal.jpg'
      (root / path).parent.mkdir(parents=True, exist_ok=True)
      Image.fromarray(rng.integers(0, 256, (20, 18), dtype=np.uint8), 'L').save(root / path)
      table.append([path, 'Female', '60', 'Frontal', *values])
    with open(csv_dir / f'{name}.csv', 'w', newline='') as f:
      writer = csv.writer(f)
      writer.writerow(['Path', 'Sex', 'Age', 'Frontal/Lateral', *labels])
      writer.writerows(table)
  return root


# Run directories in the formats the loops write (no training) ------------------------------------

GENOTYPE = {
  'normal': [['sep_conv_3x3', 0], ['skip_connect', 1]] * 4,
  'normal_concat': [2, 3, 4, 5],
  'reduce': [['max_pool_3x3', 0], ['max_pool_3x3', 1]] * 4,
  'reduce_concat': [2, 3, 4, 5],
}


def _write_lines(path, records):
  with open(path, 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in records)


def search_records(epochs, seed=0, skip_growth=0.0, warmup=1, with_val=True):
  rng = np.random.default_rng(seed)
  records = []
  logits = {cell: rng.normal(size=(14, 8)) for cell in ('normal', 'reduce')}
  for epoch in range(1, epochs + 1):
    logits['normal'][:, 3] += skip_growth  # skip_connect gains weight epoch by epoch
    alphas = {
      cell: (np.exp(v) / np.exp(v).sum(-1, keepdims=True)).tolist() for cell, v in logits.items()
    }
    search = epoch > warmup and with_val
    records.append(
      {
        'epoch': epoch,
        'phase': 'search' if epoch > warmup else 'warmup',
        'step': 16 * epoch,
        'lr': 0.025 / epoch,
        'train_loss': 3.0 / epoch,
        'train_acc': 1 - 1 / (1 + epoch),
        'val_loss': 3.5 / epoch if search else None,
        'val_acc': 0.5 - 0.5 / (1 + epoch) if search else None,
        'skip_connects_normal': min(8, int(skip_growth * epoch)),
        'genotype': GENOTYPE,
        'alphas': alphas,
        'wall_s': 1.5,
        'images_per_s': 100.0 + epoch,
      }
    )
  return records


def write_search_run(
  path, dataset='rlrn', num_classes=5000, epochs=4, num_seeds=1, method='darts', **kwargs
):
  """A search workdir (an N-seed one keeps each seed's metrics.jsonl in seed_<k>/)."""
  from unreal_nas_jax import files

  os.makedirs(path, exist_ok=True)
  config = {
    'data': {'name': dataset, 'num_classes': num_classes},
    'search': {'num_seeds': num_seeds, 'epochs': epochs, 'method': method},
    'seed': 0,
  }
  files.write_json_atomic(os.path.join(path, 'config.json'), config)
  files.write_json_atomic(os.path.join(path, 'genotype.json'), GENOTYPE)
  if num_seeds == 1:
    _write_lines(os.path.join(path, 'metrics.jsonl'), search_records(epochs, **kwargs))
  else:
    for k in range(num_seeds):
      os.makedirs(os.path.join(path, f'seed_{k}'))
      records = [{**r, 'seed': k} for r in search_records(epochs, seed=k, **kwargs)]
      _write_lines(os.path.join(path, f'seed_{k}', 'metrics.jsonl'), records)
  return str(path)


def write_train_run(path, genotype, eval_top1=(0.5, 0.7)):
  from unreal_nas_jax import files

  os.makedirs(path, exist_ok=True)
  files.write_json_atomic(os.path.join(path, 'config.json'), {
    'data': {'name': 'cifar10'}, 'train': {'epochs': len(eval_top1)}, 'genotype': str(genotype),
  })  # fmt: skip
  records = [
    {'epoch': e, 'lr': 0.01, 'drop_path': 0.1 * e, 'train_loss': 1.0 / e, 'train_acc': 0.5,
     'eval_top1': top1, 'eval_top5': 0.99, 'eval_loss': 0.8, 'wall_s': 2.0, 'images_per_s': 50.0}
    for e, top1 in enumerate(eval_top1, start=1)
  ]  # fmt: skip
  _write_lines(os.path.join(path, 'metrics.jsonl'), records)
  return str(path)


def write_probe_run(path, curves, dataset='rlrn'):
  """A probe run from {architecture name: [train_acc of epoch 1, 2, ...]}."""
  from unreal_nas_jax import files
  from unreal_nas_jax.train import probe_format

  os.makedirs(path, exist_ok=True)
  files.write_json_atomic(
    os.path.join(path, 'config.json'), {'data': {'name': dataset}, 'probe': {}}
  )
  names = list(curves)
  files.write_json_atomic(
    os.path.join(path, probe_format.ARCHITECTURES_FILE),
    probe_format.architectures_document(names, [GENOTYPE] * len(names)),
  )
  records = [
    probe_format.probe_record(name, GENOTYPE, epoch, 1.0 - acc, acc)
    for name in names
    for epoch, acc in enumerate(curves[name], start=1)
  ]
  _write_lines(os.path.join(path, probe_format.PROBE_FILE), records)
  return str(path)
