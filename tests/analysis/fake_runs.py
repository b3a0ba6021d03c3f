"""Small synthetic run directories in the formats the loops write (no training)."""

import json
import os

import numpy as np

from unreal_nas_jax.train import probe_format

GENOTYPE = {
  'normal': [['sep_conv_3x3', 0], ['skip_connect', 1]] * 4,
  'normal_concat': [2, 3, 4, 5],
  'reduce': [['max_pool_3x3', 0], ['max_pool_3x3', 1]] * 4,
  'reduce_concat': [2, 3, 4, 5],
}


def _write(path, obj):
  with open(path, 'w') as f:
    json.dump(obj, f)


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
  os.makedirs(path, exist_ok=True)
  config = {
    'data': {'name': dataset, 'num_classes': num_classes},
    'search': {'num_seeds': num_seeds, 'epochs': epochs, 'method': method},
    'seed': 0,
  }
  _write(os.path.join(path, 'config.json'), config)
  _write(os.path.join(path, 'genotype.json'), GENOTYPE)
  if num_seeds == 1:
    _write_lines(os.path.join(path, 'metrics.jsonl'), search_records(epochs, **kwargs))
  else:
    for k in range(num_seeds):
      os.makedirs(os.path.join(path, f'seed_{k}'))
      records = [{**r, 'seed': k} for r in search_records(epochs, seed=k, **kwargs)]
      _write_lines(os.path.join(path, f'seed_{k}', 'metrics.jsonl'), records)
  return str(path)


def write_train_run(path, genotype, eval_top1=(0.5, 0.7)):
  os.makedirs(path, exist_ok=True)
  _write(os.path.join(path, 'config.json'), {
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
  os.makedirs(path, exist_ok=True)
  _write(os.path.join(path, 'config.json'), {'data': {'name': dataset}, 'probe': {}})
  names = list(curves)
  _write(
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
