"""The records of a finished epoch, per loop: its metrics.jsonl line and its summary line.

The search writes one record per seed (`search_record`), the retraining one per epoch
(`train_record`); the probe's records are `train.probe_format.probe_record` (the analyses read
them), summarised here. `train.outputs` writes them; `train.tensorboard` turns them into scalars.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from unreal_nas_jax.search import arch
from unreal_nas_jax.search.setup import SearchSetup, derive_genotype
from unreal_nas_jax.space import genotypes
from unreal_nas_jax.space.primitives import PRIMITIVES


def search_record(
  setup: SearchSetup,
  epoch: int,
  sums,
  state,
  wall_s: float,
  sgas_scores=None,
  seed: int | None = None,
  examples_timed: int | None = None,
) -> dict[str, Any]:
  """The metrics.jsonl line of a finished epoch (1-based `epoch` in the file) of one seed.

  `examples_timed`: the examples that `wall_s` covers (fewer than the epoch's after a resume).
  """
  steps, examples = float(sums['steps']), float(sums['examples'])
  searched = setup.phase(epoch) == 'search'
  geno = derive_genotype(setup.config, state)
  weights = jax.device_get(arch.arch_weights(state.alphas))
  return {
    'epoch': epoch + 1,
    **({'seed': seed} if seed is not None else {}),
    'phase': setup.phase(epoch),
    'step': int(jax.device_get(state.step)),
    'lr': setup.lr(epoch),
    'train_loss': float(sums['train_loss']) / steps,
    'train_acc': float(sums['train_correct']) / examples,
    'val_loss': float(sums['val_loss']) / steps if searched else None,
    'val_acc': float(sums['val_correct']) / examples if searched else None,
    'skip_connects_normal': genotypes.count_op(geno, 'skip_connect', 'normal'),
    'genotype': genotypes.genotype_to_json(geno),
    'alphas': {k: np.asarray(v).round(6).tolist() for k, v in weights.items()},
    'wall_s': round(wall_s, 3),
    'images_per_s': round((examples_timed or examples) / wall_s, 2) if wall_s > 0 else None,
    'batch_size': setup.batch_size(epoch),
    **({'sgas': _sgas_record(state.decisions, sgas_scores)} if sgas_scores is not None else {}),
  }


def _sgas_record(decisions, scores) -> dict[str, Any]:
  """What SGAS decided so far and this epoch's scores, per cell type, for metrics.jsonl."""
  decisions, scores = jax.device_get((decisions, scores))
  return {
    cell: {
      'decided_ops': [
        PRIMITIVES[int(o)] if o >= 0 else None for o in np.asarray(decisions[cell]['op'])
      ],
      'pruned': np.asarray(decisions[cell]['pruned']).tolist(),
      **{k: np.asarray(v).round(6).tolist() for k, v in scores[cell].items()},
    }
    for cell in arch.CELLS
  }


def search_summary(record: dict[str, Any], total_epochs: int) -> str:
  parts = [f'epoch {record["epoch"]}/{total_epochs} {record["phase"]}']
  if 'seed' in record:
    parts.append(f'seed={record["seed"]}')
  parts.append(f'lr={record["lr"]:.5f}')
  parts.append(f'train_loss={record["train_loss"]:.4f} train_acc={record["train_acc"]:.4f}')
  if record['val_loss'] is not None:
    parts.append(f'val_loss={record["val_loss"]:.4f} val_acc={record["val_acc"]:.4f}')
  parts.append(f'skip_normal={record["skip_connects_normal"]}')
  if 'sgas' in record:
    decided = sum(op is not None for op in record['sgas']['normal']['decided_ops'])
    parts.append(f'sgas_decided={decided} batch={record["batch_size"]}')
  parts.append(f'{record["wall_s"]:.1f}s')
  return ' '.join(parts)


def probe_summary(records: list[dict[str, Any]], epochs: int, wall_s: float) -> str:
  head = f'epoch {records[0]["epoch"]}/{epochs} probe lr={records[0]["lr"]:.5f} {wall_s:.1f}s'
  if len(records) == 1:
    r = records[0]
    return f'{head} train_loss={r["train_loss"]:.4f} train_acc={r["train_acc"]:.4f}'
  accs = np.array([r['train_acc'] for r in records])
  return (
    f'{head} {len(records)} architectures: train_acc min={accs.min():.4f} '
    f'mean={accs.mean():.4f} max={accs.max():.4f}'
  )


def train_record(
  epoch: int,
  state,
  sums,
  *,
  lr: float,
  drop_path: float,
  wall_s: float,
  images_timed: int,
) -> dict[str, Any]:
  """The metrics.jsonl line of a finished retraining epoch (1-based `epoch` in the file);
  `images_timed`: the images that `wall_s` covers (fewer than the epoch's after a resume)."""
  count = float(sums['count'])
  return {
    'epoch': epoch + 1,
    'step': int(jax.device_get(state.step)),
    'lr': lr,
    'drop_path': drop_path,
    'train_loss': float(sums['loss']) / count,
    'train_acc': float(sums['correct']) / count,
    'wall_s': round(wall_s, 3),
    'images_per_s': round(images_timed / wall_s, 2) if wall_s > 0 else None,
  }


def train_summary(record: dict[str, Any], epochs: int) -> str:
  summary = ' '.join(
    f'{k}={v:.4f}' if isinstance(v, float) else f'{k}={v}'
    for k, v in record.items()
    if k in ('lr', 'train_loss', 'train_acc', 'eval_top1', 'eval_top5', 'eval_mean_auc', 'wall_s')
  )
  return f'epoch {record["epoch"]}/{epochs} {summary}'
