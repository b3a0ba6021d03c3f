"""Multi-label metrics: masked binary cross-entropy (in the step) and per-label ROC AUC (host).

The loss is the mean of the per-entry binary cross-entropies over the entries that count (mask 1;
the `ignore` uncertainty policy masks the uncertain ones), so a batch whose labels are mostly
masked does not weigh less per counted entry. AUC is the Mann-Whitney statistic: the probability
that a random positive scores above a random negative, ties counting one half (what
`sklearn.metrics.roc_auc_score` computes). A label whose evaluated entries are all of one class has
no AUC: it is reported as None (JSON null) and left out of the mean.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def masked_bce(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean binary cross-entropy over the counted (mask 1) entries of (N, L) logits.

  Returns 0 when no entry counts (rather than NaN: a batch of only uncertain labels under
  `ignore` must not poison the run).
  """
  logits = logits.astype(jnp.float32)
  # log(1 + exp(-|x|)) + max(x, 0) - x * t: stable for large |x|.
  per_entry = jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  return jnp.sum(per_entry * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def roc_auc(scores, labels) -> float | None:
  """ROC AUC of binary `labels` (1 positive) by `scores`, ties counted one half.

  Returns None when the labels hold only one class (AUC is undefined).
  """
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels) > 0.5
  positives, negatives = int(labels.sum()), int((~labels).sum())
  if positives == 0 or negatives == 0:
    return None
  # Average ranks (1-based) over ties; the positives' rank sum gives the Mann-Whitney U.
  order = np.argsort(scores, kind='stable')
  sorted_scores = scores[order]
  ranks = np.empty(len(scores), np.float64)
  start = 0
  while start < len(scores):
    end = start
    while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
      end += 1
    ranks[order[start : end + 1]] = (start + end) / 2 + 1
    start = end + 1
  u = ranks[labels].sum() - positives * (positives + 1) / 2
  return float(u / (positives * negatives))


def label_aucs(
  scores: np.ndarray,
  targets: np.ndarray,
  mask: np.ndarray,
  names: tuple[str, ...],
  mean_over: tuple[str, ...],
) -> dict:
  """Per-label AUC over the counted entries and the mean over `mean_over`.

  Args:
    scores: (N, L) scores (logits or probabilities: AUC only uses their order).
    targets: (N, L) binary targets.
    mask: (N, L): 1 where the entry is evaluated.
    names: the L label names.
    mean_over: the labels whose AUCs are averaged (all of them in `names`).

  Returns:
    {'auc': {name: AUC or None}, 'mean_auc': mean of the defined AUCs in `mean_over` (None when
    none is defined), 'mean_auc_labels': the labels averaged, 'undefined_auc': the labels with
    one class only}.
  """
  aucs = {}
  for j, name in enumerate(names):
    keep = np.asarray(mask[:, j]) > 0
    aucs[name] = roc_auc(scores[keep, j], targets[keep, j])
  defined = [aucs[n] for n in mean_over if aucs[n] is not None]
  mean = float(np.mean(defined)) if defined else None
  return {
    'auc': aucs,
    'mean_auc': mean,
    'mean_auc_labels': list(mean_over),
    'undefined_auc': [n for n in names if aucs[n] is None],
  }


def finite_or_none(value) -> bool:
  """True when `value` is None or a finite number (a defined or an undefined AUC, never NaN)."""
  return value is None or math.isfinite(value)
