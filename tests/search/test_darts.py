"""DARTS steps: second-order maths against autodiff and against first order, optimizer fidelity."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.testing import tiny_search_config
from unreal_nas_jax import optim
from unreal_nas_jax.search import darts
from unreal_nas_jax.search import setup as search_setup


@pytest.fixture(scope='module')
def setup_and_batches():
  # One node per cell: the maths checked here does not depend on the cell's size, and the
  # second-order programs compile in half the time of two nodes'.
  config = tiny_search_config(
    optim__weight_decay=3e-4, search__alpha_init='normal', model__steps=1, model__multiplier=1
  )
  setup = search_setup.build_search(config)
  state = search_setup.init_state(setup)
  # One real warm-up step first, so the momentum buffer the virtual step reuses is non-zero.
  inputs = search_setup.epoch_inputs(setup, 0)
  warmup = search_setup.make_step_fn(setup, 'warmup')
  state, _ = warmup(state, darts.init_metrics(), setup.data, *inputs)
  idx = jnp.arange(8, dtype=jnp.int32)
  train_batch = setup.batch_fn(setup.data, idx, 'train')
  val_batch = setup.batch_fn(setup.data, idx + 8, 'val')
  return setup, state, train_batch, val_batch


@pytest.fixture(scope='module')
def in_float64(setup_and_batches):
  """The state and batches in float64, and the functions the second-order tests evaluate there,
  each jitted once (eta is an argument: one program serves every eta). Call them inside
  `jax.enable_x64(True)`."""
  setup, state, train_batch, val_batch = setup_and_batches
  with jax.enable_x64(True):

    def f64(t):
      return jax.tree.map(lambda x: x.astype(jnp.float64) if x.dtype == jnp.float32 else x, t)

    state, train_batch, val_batch = f64(state), f64(train_batch), f64(val_batch)
  common = {'model': setup.model, 'weight_sgd': setup.weight_sgd}
  loss = functools.partial(darts.loss_fn, model=setup.model)
  fns = {
    # A radius small enough not to cross ReLU kinks (see test_finite_difference_...).
    'finite_difference': jax.jit(
      functools.partial(darts.second_order_fd_grad, **common, radius=1e-7)
    ),
    'exact': jax.jit(functools.partial(darts.second_order_exact_grad, **common)),
    'virtual_weights': jax.jit(functools.partial(darts.virtual_weights, **common)),
    'alpha_grad': jax.jit(lambda w, s, a, b: jax.grad(loss, 2, has_aux=True)(w, s, a, b)[0]),
    'weight_grad': jax.jit(lambda w, s, a, b: jax.grad(loss, has_aux=True)(w, s, a, b)[0]),
  }
  return fns, state, train_batch, val_batch


def _cos(a, b):
  a, b = (
    jnp.concatenate([x.ravel() for x in jax.tree.leaves(a)]),
    jnp.concatenate([x.ravel() for x in jax.tree.leaves(b)]),
  )
  return float(a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


def test_virtual_step_uses_momentum_and_weight_decay(in_float64):
  fns, state, train_batch, _ = in_float64
  with jax.enable_x64(True):
    eta = jnp.float64(0.05)
    virtual = fns['virtual_weights'](
      state.params, state.batch_stats, state.alphas, state.weight_opt_state, train_batch, eta
    )
    grads = fns['weight_grad'](state.params, state.batch_stats, state.alphas, train_batch)
    momentum = optim.direction_state(state.weight_opt_state)[1].trace
    expected = jax.tree.map(
      lambda w, g, m: w - eta * (0.9 * m + g + 3e-4 * w), state.params, grads, momentum
    )
    assert float(optax.tree.norm(momentum)) > 0
    for a, b in zip(jax.tree.leaves(virtual), jax.tree.leaves(expected), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize('hypergradient', ['finite_difference', 'exact'])
def test_second_order_with_zero_lr_equals_first_order(in_float64, hypergradient):
  fns, state, train_batch, val_batch = in_float64
  with jax.enable_x64(True):
    grad, _, _ = fns[hypergradient](state, train_batch, val_batch, jnp.float64(0.0))
    expected = fns['alpha_grad'](state.params, state.batch_stats, state.alphas, val_batch)
  for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(expected), strict=True):
    # Two differently fused programs: entries near zero differ by rounding only.
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * float(np.abs(b).max()))


def test_finite_difference_hypergradient_matches_exact(in_float64):
  """Finite-difference and autodiff hypergradients are the same maths.

  In float64 with a radius small enough not to cross ReLU kinks, the whole hypergradient and the
  Hessian-vector-product term on its own agree. (At the reference's radius 0.01 a tiny supernet
  crosses many kinks, and the quotient becomes a smoothed Hessian; see docs/search.md.)
  """
  fns, state, train_batch, val_batch = in_float64
  with jax.enable_x64(True):
    eta = jnp.float64(0.5)
    fd, _, _ = fns['finite_difference'](state, train_batch, val_batch, eta)
    exact, _, _ = fns['exact'](state, train_batch, val_batch, eta)
    virtual = fns['virtual_weights'](
      state.params, state.batch_stats, state.alphas, state.weight_opt_state, train_batch, eta
    )
    d_alpha = fns['alpha_grad'](virtual, state.batch_stats, state.alphas, val_batch)
    hvp_fd = jax.tree.map(jnp.subtract, fd, d_alpha)
    hvp_exact = jax.tree.map(jnp.subtract, exact, d_alpha)
    assert float(optax.tree.norm(hvp_exact)) > 0.05 * float(optax.tree.norm(d_alpha))
    assert _cos(hvp_fd, hvp_exact) > 0.9999
    assert _cos(fd, exact) > 0.99
    assert _cos(exact, d_alpha) < 0.9999  # the second-order term is really there


def test_weight_transform_matches_torch_sgd_order():
  """clip to global norm 5, then coupled L2, then momentum (torch SGD after clip_grad_norm_)."""
  tx = optim.weight_sgd(weight_decay=0.1, momentum=0.9, grad_clip=5.0).tx
  params = {'w': jnp.arange(4.0), 'b': jnp.ones(3)}
  state = tx.init(params)
  buf = jax.tree.map(jnp.zeros_like, params)
  for scale in (10.0, 0.1):  # the first gradient is clipped, the second is not
    grads = jax.tree.map(lambda p, s=scale: s * (p + 1.0), params)
    updates, state = tx.update(grads, state, params)
    norm = float(optax.tree.norm(grads))
    factor = min(1.0, 5.0 / norm)
    buf = jax.tree.map(lambda b, g, p, f=factor: 0.9 * b + (f * g + 0.1 * p), buf, grads, params)
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(buf), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-6)
    params = jax.tree.map(lambda p, u: p - 0.025 * u, params, updates)


def test_arch_transform_is_adam_with_coupled_decay():
  tx = optim.arch_adam(lr=3e-4, b1=0.5, b2=0.999, eps=1e-8, weight_decay=1e-3)
  alphas = {'normal': jnp.full((2, 3), 0.5)}
  grads = {'normal': jnp.asarray([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])}
  updates, _ = tx.update(grads, tx.init(alphas), alphas)
  g = grads['normal'] + 1e-3 * alphas['normal']
  m, v = 0.5 * g, 0.001 * g**2  # (1 - b1) g, (1 - b2) g^2 after one step
  expected = -3e-4 * (m / 0.5) / (jnp.sqrt(v / 0.001) + 1e-8)
  np.testing.assert_allclose(updates['normal'], expected, rtol=1e-5)


def test_cosine_learning_rate_matches_reference_formula():
  assert optim.cosine_lr(0, 50, 0.025, 0.001) == pytest.approx(0.025)
  assert optim.cosine_lr(49, 50, 0.025, 0.001) == pytest.approx(0.00102, abs=1e-5)
  for e in range(50):
    expected = 0.001 + 0.012 * (1 + np.cos(np.pi * e / 50))
    assert optim.cosine_lr(e, 50, 0.025, 0.001) == pytest.approx(expected)
  # UnrealNAS: 55 epochs to zero.
  assert optim.cosine_lr(54, 55, 0.025, 0.0) == pytest.approx(
    0.0125 * (1 + np.cos(np.pi * 54 / 55))
  )


def test_search_step_updates_alphas_then_weights_and_counts(setup_and_batches):
  """The reference order: an Adam step of the alphas on a validation batch through the weights
  from before the step, then the weights' SGD step on a training batch through the new alphas.
  The other order (weights first, then alphas through the new weights) lands visibly elsewhere."""
  setup, state, _, _ = setup_and_batches
  step = search_setup.make_step_fn(setup, 'search')
  train_perm, val_perm, _, _ = search_setup.epoch_inputs(setup, 1)
  # A large weight learning rate, so that the alphas' gradient at the updated weights differs from
  # the one at the old weights well beyond rounding.
  lr = jnp.float32(0.5)
  start = state.step  # the epoch's first step: its batches are the permutations' first ones
  # A first search step, so the alphas' Adam moments are not zero (its first update is about
  # lr * sign(gradient) whatever the gradient's size).
  state, _ = step(
    jax.tree.map(jnp.copy, state), darts.init_metrics(), setup.data, train_perm, val_perm, lr, start
  )
  before = jax.device_get(state)
  state2, sums = step(
    jax.tree.map(jnp.copy, state), darts.init_metrics(), setup.data, train_perm, val_perm, lr, start
  )
  state2, sums = jax.device_get((state2, sums))
  assert int(state2.step) == int(before.step) + 1
  assert sums['steps'] == 1 and sums['examples'] == 8
  assert np.isfinite(sums['val_loss']) and sums['val_loss'] > 0
  assert int(sums['first_bad_step']) == int(darts.NO_BAD_STEP)

  key = jax.random.fold_in(before.rng, before.step)
  position = slice(8, 16)  # the epoch's second step
  train_batch = setup.batch_fn(setup.data, train_perm[position], 'train', key)
  val_batch = setup.batch_fn(setup.data, val_perm[position], 'val', key)
  loss = functools.partial(darts.loss_fn, model=setup.model)

  def alpha_step(params, alphas):
    grad = jax.grad(loss, argnums=2, has_aux=True)(params, before.batch_stats, alphas, val_batch)[0]
    updates, _ = setup.arch_tx.update(grad, before.arch_opt_state, alphas)
    return optax.apply_updates(alphas, updates)

  def weight_step(params, alphas):
    grads = jax.grad(loss, has_aux=True)(params, before.batch_stats, alphas, train_batch)[0]
    updates, _ = setup.weight_sgd.tx.update(grads, before.weight_opt_state, params)
    return jax.tree.map(lambda w, u: w - lr * u, params, updates)

  @jax.jit
  def both_orders(params, alphas):
    alphas_first = alpha_step(params, alphas)
    weights_first = weight_step(params, alphas)
    return (
      (alphas_first, weight_step(params, alphas_first)),
      (alpha_step(weights_first, alphas), weights_first),
    )

  want, other = jax.device_get(both_orders(before.params, before.alphas))

  def distance(a, b):
    return float(optax.tree.norm(jax.tree.map(jnp.subtract, a, b)))

  for got, right, wrong, moved in (
    (state2.alphas, want[0], other[0], distance(want[0], before.alphas)),
    (state2.params, want[1], other[1], distance(want[1], before.params)),
  ):
    # The step's alphas and weights are the reference order's to rounding, and far from the other
    # order's (which would pass a check that they merely changed).
    assert distance(got, right) < 1e-4 * moved, (distance(got, right), moved)
    assert distance(right, wrong) > 1e-2 * moved, (distance(right, wrong), moved)
