"""Evaluating a trained network on the eval split: the eval step and the split's metrics.

Single-label: top-1, top-5 and the mean loss. Multi-label: the mean masked BCE, and per-label
ROC AUC over the whole split (`train.metrics.label_aucs`, on the host from the gathered logits).
Eval batches past the split's end are masked out, so every batch has the same shape.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from unreal_nas_jax import parallel
from unreal_nas_jax.data import pipeline
from unreal_nas_jax.data.datasets import DATASETS
from unreal_nas_jax.models import eval_network
from unreal_nas_jax.models.layers import COMPUTE_DTYPES
from unreal_nas_jax.train import metrics
from unreal_nas_jax.train.retrain_step import StepSettings, TrainState, cast, cross_entropy, zeros


def eval_step(
  state: TrainState, sums, batch, *, model: eval_network.EvalNetwork, settings: StepSettings
):
  """Masked loss, top-1 and top-5 sums of one eval batch (running BN statistics).

  Multi-label: returns (sums of the masked BCE and the example count, the batch's float32 logits)
  for the host's AUC.
  """
  dtype, num_classes = COMPUTE_DTYPES[settings.compute_dtype], settings.num_classes
  logits = model.apply(
    {'params': cast(state.params, dtype), 'batch_stats': state.batch_stats},
    batch['image'].astype(dtype),
    train=False,
  ).astype(jnp.float32)
  mask, labels = batch['mask'], batch['label']
  if settings.multilabel:
    label_mask = batch['label_mask'] * mask[:, None]
    bce = metrics.masked_bce(logits, labels, label_mask) * jnp.maximum(label_mask.sum(), 1.0)
    return {
      'loss': sums['loss'] + bce,
      'entries': sums['entries'] + label_mask.sum(),
      'count': sums['count'] + jnp.sum(mask),
    }, logits
  loss = cross_entropy(logits, labels, num_classes, 0.0)
  top5 = jnp.any(jax.lax.top_k(logits, min(5, num_classes))[1] == labels[:, None], axis=-1)
  return {
    'loss': sums['loss'] + jnp.sum(loss * mask),
    'top1': sums['top1'] + jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
    'top5': sums['top5'] + jnp.sum(top5 * mask),
    'count': sums['count'] + jnp.sum(mask),
  }


def evaluate(source: pipeline.Source, state: TrainState, eval_fn, auc_labels) -> dict:
  """Top-1, top-5 (fractions) and mean loss over the eval split of `source`, through `eval_fn`
  (`eval_step`, jitted).

  Multi-label: the mean masked BCE, per-label ROC AUC ('auc', None for a label with one class in
  the eval split) and their mean over `auc_labels` ('mean_auc').
  """
  spec, mesh = source.spec, source.mesh
  split = DATASETS[spec.dataset].eval_split
  if spec.multilabel:
    return _evaluate_multilabel(source, state, eval_fn, split, auc_labels)
  sums = parallel.replicate(zeros('loss', 'top1', 'top5', 'count'), mesh)
  for batch in source.batches(split, 0):
    sums = eval_fn(state, sums, batch)
  sums = jax.device_get(sums)
  count = float(sums['count'])
  return {
    'top1': float(sums['top1']) / count,
    'top5': float(sums['top5']) / count,
    'loss': float(sums['loss']) / count,
    'examples': int(count),
  }


def _evaluate_multilabel(source, state, eval_fn, split, auc_labels) -> dict[str, Any]:
  sums = parallel.replicate(zeros('loss', 'entries', 'count'), source.mesh)
  scores, targets, masks = [], [], []
  for batch in source.batches(split, 0):
    sums, logits = eval_fn(state, sums, batch)
    host = jax.device_get({'logits': logits, 'label': batch['label'], 'm': batch['label_mask'],
                           'mask': batch['mask']})  # fmt: skip
    scores.append(host['logits'])
    targets.append(host['label'])
    masks.append(host['m'] * host['mask'][:, None])
  sums = jax.device_get(sums)
  aucs = metrics.label_aucs(
    np.concatenate(scores),
    np.concatenate(targets),
    np.concatenate(masks),
    source.spec.names,
    auc_labels,
  )
  return {
    'loss': float(sums['loss']) / max(float(sums['entries']), 1.0),
    'mean_auc': aucs['mean_auc'],
    'auc': aucs['auc'],
    'undefined_auc': aucs['undefined_auc'],
    'examples': int(sums['count']),
  }
