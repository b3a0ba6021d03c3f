"""The DARTS search step as one pure function: `(state, metrics, data, perms, lr, start) -> ...`.

One search step (reference order): (1) an architecture step on a validation batch, first order or
second order, then (2) a weight step on a training batch with the updated alphas. A warm-up step
is the weight step alone. Batches are made inside the step from example indices, so the host only
launches steps. Everything that varies over a run (learning rate, epoch permutations) is an array
argument, so each phase compiles exactly once.

Second order (spec section 4), with eta the current weight learning rate:
  w' = w - eta * (mu * buf + grad_w L_train(w, a) + wd * w)          (virtual step, no clipping)
  d_a, v = grad_{a, w'} L_val(w', a)
  hvp = [grad_a L_train(w + R v, a) - grad_a L_train(w - R v, a)] / 2R,  R = 0.01 / ||v||
  grad_a = d_a - eta * hvp
or, with `hypergradient='exact'`, grad_a = d/da L_val(w'(a), a) by differentiating through w'.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from unreal_nas_jax import optim
from unreal_nas_jax.search.arch import arch_weights
from unreal_nas_jax.search.state import SearchState

HYPERGRADIENTS = ('finite_difference', 'exact')
FD_RADIUS = 0.01

# Batch = (images, labels); a BatchFn maps (example indices, split) to a batch on device.
Batch = tuple[jax.Array, jax.Array]
BatchFn = Callable[[Any, jax.Array, str], Batch]

METRIC_KEYS = ('train_loss', 'train_correct', 'val_loss', 'val_correct', 'steps', 'examples')
NO_BAD_STEP = jnp.iinfo(jnp.int32).max


def init_metrics() -> dict[str, jax.Array]:
  """Epoch accumulators, summed on device and read once per epoch."""
  sums = {k: jnp.zeros((), jnp.float32) for k in METRIC_KEYS}
  return {**sums, 'first_bad_step': jnp.asarray(NO_BAD_STEP, jnp.int32)}


def loss_fn(params, batch_stats, alphas, batch: Batch, *, model: nn.Module, decisions=None):
  """Mean cross entropy of the supernet in training mode; aux = (new batch stats, logits).

  `decisions`: SGAS's decided and pruned edges (`search.sgas`), or None.
  """
  images, labels = batch
  logits, updates = model.apply(
    {'params': params, 'batch_stats': batch_stats},
    images,
    arch_weights(alphas, decisions),
    train=True,
    mutable=['batch_stats'],
  )
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss, (updates['batch_stats'], logits)


def _correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.sum(jnp.argmax(logits, -1) == labels).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class StepSettings:
  """The static settings of a search step (one compiled program per distinct value).

  Attributes:
    batch_size: global batch of each half (split over the devices).
    order: 1 (first-order DARTS) or 2 (unrolled).
    hypergradient: second order: 'finite_difference' (reference) or 'exact'.
    fd_radius: ||R v|| of the finite-difference Hessian-vector product (reference: 0.01).
    sgas: apply the state's SGAS decisions to the mixing weights.
  """

  batch_size: int
  order: int = 1
  hypergradient: str = 'finite_difference'
  fd_radius: float = FD_RADIUS
  sgas: bool = False


def virtual_weights(
  params,
  batch_stats,
  alphas,
  weight_opt_state,
  train_batch,
  eta,
  *,
  model,
  weight_sgd,
  decisions=None,
):
  """w' = w - eta * direction(grad_w L_train), reusing the real optimizer's momentum state.

  `weight_sgd` is the `optim.WeightSGD` whose `tx` state `weight_opt_state` is.
  """
  loss = functools.partial(loss_fn, model=model, decisions=decisions)
  grads = jax.grad(lambda w: loss(w, batch_stats, alphas, train_batch)[0])(params)
  momentum = optim.direction_state(weight_opt_state)
  direction, _ = weight_sgd.direction.update(grads, momentum, params)
  return jax.tree.map(lambda w, d: w - eta * d, params, direction)


def second_order_fd_grad(
  state: SearchState,
  train_batch,
  val_batch,
  eta,
  *,
  model,
  weight_sgd,
  radius: float = FD_RADIUS,
  decisions=None,
):
  """The reference's unrolled hypergradient with a finite-difference Hessian-vector product.

  `radius` is the reference's 0.01: the weights move by R v with ||R v|| = radius. ReLU and max
  pool kinks make the difference quotient an average of the Hessian over that segment, so it
  tracks the exact product closely on real-size batches and only roughly on tiny ones.
  """
  bs = state.batch_stats
  loss = functools.partial(loss_fn, model=model, decisions=decisions)
  w_virtual = virtual_weights(
    state.params,
    bs,
    state.alphas,
    state.weight_opt_state,
    train_batch,
    eta,
    model=model,
    weight_sgd=weight_sgd,
    decisions=decisions,
  )
  (val_loss, (_, val_logits)), (v, d_alpha) = jax.value_and_grad(
    loss, argnums=(0, 2), has_aux=True
  )(w_virtual, bs, state.alphas, val_batch)
  radius = radius / optax.tree.norm(v)

  def train_alpha_grad(w):
    return jax.grad(loss, argnums=2, has_aux=True)(w, bs, state.alphas, train_batch)[0]

  # w + Rv and w - Rv share one traced gradient program (lax.map), halving what XLA compiles.
  pair = jax.tree.map(lambda w, d: jnp.stack([w + radius * d, w - radius * d]), state.params, v)
  g_pair = jax.lax.map(train_alpha_grad, pair)
  grad = jax.tree.map(lambda d, g: d - eta * (g[0] - g[1]) / (2.0 * radius), d_alpha, g_pair)
  return grad, val_loss, val_logits


def second_order_exact_grad(
  state: SearchState, train_batch, val_batch, eta, *, model, weight_sgd, decisions=None
):
  """The exact unrolled hypergradient: autodiff through the virtual step."""
  bs = state.batch_stats

  def unrolled_val_loss(alphas):
    w_virtual = virtual_weights(
      state.params,
      bs,
      alphas,
      state.weight_opt_state,
      train_batch,
      eta,
      model=model,
      weight_sgd=weight_sgd,
      decisions=decisions,
    )
    loss, (_, logits) = loss_fn(w_virtual, bs, alphas, val_batch, model=model, decisions=decisions)
    return loss, logits

  (val_loss, val_logits), grad = jax.value_and_grad(unrolled_val_loss, has_aux=True)(state.alphas)
  return grad, val_loss, val_logits


def _take_batch(batch_fn, data, perm, position, batch_size, split, key, mesh):
  indices = jax.lax.dynamic_slice_in_dim(perm, position * batch_size, batch_size)
  if mesh is not None:
    # Shard the example indices so every device generates and processes only its slice.
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
    indices = jax.lax.with_sharding_constraint(indices, sharding)
  return batch_fn(data, indices, split, key)


def search_step(
  state: SearchState,
  metrics: dict[str, jax.Array],
  data: Any,
  train_perm: jax.Array,
  val_perm: jax.Array,
  lr: jax.Array,
  epoch_start: jax.Array,
  *,
  model: nn.Module,
  batch_fn: BatchFn,
  weight_sgd: optim.WeightSGD,
  arch_tx: optax.GradientTransformation | None,
  settings: StepSettings,
  mesh: jax.sharding.Mesh | None = None,
):
  """One warm-up step (`arch_tx=None`: weights only) or one DARTS search step.

  Args:
    state: the search state (donated by the caller's jit).
    metrics: epoch accumulators from `init_metrics` (donated).
    data: the dataset's device arrays, passed to `batch_fn`.
    train_perm, val_perm: this epoch's example orders for the two halves.
    lr: the weight learning rate of this epoch (also eta of the virtual step).
    epoch_start: the global step of this epoch's first step (the position in the permutations).
    model: the supernet.
    batch_fn: makes a batch from indices, see `unreal_nas_jax.data.search_data`.
    weight_sgd: the weights' optimizer (`optim.weight_sgd`); arch_tx: the alphas' (`optim.arch_adam`).
    settings: the static sizes and the DARTS variant.
    mesh: device mesh with a 'data' axis, or None.

  Returns:
    (new state, updated metrics).
  """
  batch_size = settings.batch_size
  position = state.step - epoch_start
  decisions = state.decisions if settings.sgas else None
  loss = functools.partial(loss_fn, model=model, decisions=decisions)
  # Augmentation randomness (real data) is a function of the step: a resumed run repeats it.
  take = functools.partial(
    _take_batch,
    batch_fn,
    data,
    position=position,
    batch_size=batch_size,
    key=jax.random.fold_in(state.rng, state.step),
  )
  train_batch = take(train_perm, split='train', mesh=mesh)
  alphas, arch_opt_state, batch_stats = state.alphas, state.arch_opt_state, state.batch_stats
  val_loss = None

  if arch_tx is not None:
    val_batch = take(val_perm, split='val', mesh=mesh)
    if settings.order == 1:
      (val_loss, (batch_stats, val_logits)), grad = jax.value_and_grad(
        loss, argnums=2, has_aux=True
      )(state.params, batch_stats, alphas, val_batch)
    else:
      common = dict(model=model, weight_sgd=weight_sgd, decisions=decisions)
      if settings.hypergradient == 'exact':
        second_order = functools.partial(second_order_exact_grad, **common)
      else:
        second_order = functools.partial(second_order_fd_grad, **common, radius=settings.fd_radius)
      grad, val_loss, val_logits = second_order(state, train_batch, val_batch, lr)
    updates, arch_opt_state = arch_tx.update(grad, arch_opt_state, alphas)
    alphas = optax.apply_updates(alphas, updates)

  (train_loss, (batch_stats, logits)), grads = jax.value_and_grad(loss, has_aux=True)(
    state.params, batch_stats, alphas, train_batch
  )
  updates, weight_opt_state = weight_sgd.tx.update(grads, state.weight_opt_state, state.params)
  params = jax.tree.map(lambda w, u: w - lr * u, state.params, updates)

  new_state = state.replace(
    step=state.step + 1,
    params=params,
    batch_stats=batch_stats,
    alphas=alphas,
    weight_opt_state=weight_opt_state,
    arch_opt_state=arch_opt_state,
  )
  finite = jnp.isfinite(train_loss)
  if val_loss is not None:
    finite &= jnp.isfinite(val_loss)
  metrics = dict(metrics)
  metrics['train_loss'] += train_loss
  metrics['train_correct'] += _correct(logits, train_batch[1])
  if val_loss is not None:
    metrics['val_loss'] += val_loss
    metrics['val_correct'] += _correct(val_logits, val_batch[1])
  metrics['steps'] += 1.0
  metrics['examples'] += float(batch_size)
  metrics['first_bad_step'] = jnp.where(
    finite, metrics['first_bad_step'], jnp.minimum(metrics['first_bad_step'], state.step)
  )
  return new_state, metrics
