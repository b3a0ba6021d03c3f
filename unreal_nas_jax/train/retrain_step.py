"""The retraining step: `TrainState` and one SGD step on a global batch (a pure function).

Loss = CE(logits) + auxiliary_weight * CE(auxiliary logits), both with the configured label
smoothing (multi-label: the masked BCE of both, `train.metrics.masked_bce`); SGD momentum 0.9 with
coupled weight decay after clipping the global norm to 5 (the reference's torch update order).
The forward and backward pass run in `compute_dtype` over float32 master weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from unreal_nas_jax.models import eval_network
from unreal_nas_jax.models.layers import COMPUTE_DTYPES
from unreal_nas_jax.train import metrics


@flax.struct.dataclass
class TrainState:
  """The retraining state; everything a resume needs is in it."""

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array


def cross_entropy(logits, labels, num_classes: int, smoothing: float) -> jax.Array:
  targets = (
    optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)
    if smoothing
    else (jax.nn.one_hot(labels, num_classes))
  )
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


@dataclasses.dataclass(frozen=True)
class StepSettings:
  """The static settings of the training step.

  Attributes:
    num_classes: classes of the dataset (the one-hot targets).
    label_smoothing: of both losses.
    aux_weight: weight of the auxiliary head's loss (used when the model has the head).
    compute_dtype: a `COMPUTE_DTYPES` name: the forward and backward pass's dtype.
    multilabel: `num_classes` independent binary labels: masked binary cross-entropy
      (`metrics.masked_bce`) on batch['label'] (B, L) and batch['label_mask'] (B, L).
  """

  num_classes: int
  label_smoothing: float = 0.0
  aux_weight: float = 0.0
  compute_dtype: str = 'float32'
  multilabel: bool = False


def _loss(logits, batch, settings: StepSettings) -> jax.Array:
  if settings.multilabel:
    return metrics.masked_bce(logits, batch['label'], batch['label_mask'])
  n, smoothing = settings.num_classes, settings.label_smoothing
  return cross_entropy(logits, batch['label'], n, smoothing).mean()


def _correct(logits, batch, settings: StepSettings) -> jax.Array:
  """Correct top-1 predictions; multi-label: per example, the fraction of counted labels whose
  0.5-threshold prediction is right (so 'train_acc' is the entry accuracy)."""
  if settings.multilabel:
    right = ((logits > 0) == (batch['label'] > 0.5)) * batch['label_mask']
    counted = jnp.maximum(batch['label_mask'].sum(-1), 1.0)
    return jnp.sum(right.sum(-1) / counted)
  return jnp.sum(jnp.argmax(logits, -1) == batch['label'])


def train_step(
  state: TrainState,
  sums,
  batch,
  lr,
  drop_prob,
  *,
  model: eval_network.EvalNetwork,
  tx: optax.GradientTransformation,
  settings: StepSettings,
):
  """One SGD step on a global batch; adds loss, correct and count to the epoch sums."""
  dtype = COMPUTE_DTYPES[settings.compute_dtype]
  images = batch['image'].astype(dtype)
  labels = batch['label']
  key = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    # Mixed precision: float32 master weights, the forward and backward in `dtype`.
    (logits, aux), updates = model.apply(
      {'params': cast(params, dtype), 'batch_stats': state.batch_stats},
      images,
      drop_prob,
      train=True,
      rngs={'drop_path': key},
      mutable=['batch_stats'],
    )
    loss = _loss(logits, batch, settings)
    if aux is not None:
      loss = loss + settings.aux_weight * _loss(aux, batch, settings)
    return loss, (logits, updates['batch_stats'])

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  batch_stats = cast(batch_stats, jnp.float32)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = jax.tree.map(lambda w, u: w - lr * u, state.params, updates)
  n = labels.shape[0]
  sums = {
    'loss': sums['loss'] + loss * n,
    'correct': sums['correct'] + _correct(logits, batch, settings),
    'count': sums['count'] + n,
    'finite': sums['finite'] & jnp.isfinite(loss),
  }
  new_state = state.replace(
    step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
  )
  return new_state, sums


def cast(tree, dtype):
  """The tree with its floating-point leaves in `dtype` (mixed precision)."""
  return jax.tree.map(
    lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
  )


def zeros(*names):
  """Scalar float32 accumulators named `names`, at zero."""
  return {name: jnp.zeros((), jnp.float32) for name in names}


def epoch_sums():
  """The training step's accumulators: loss and correct sums, example count, all finite."""
  return {**zeros('loss', 'correct', 'count'), 'finite': jnp.ones((), bool)}
