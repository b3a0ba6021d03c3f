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
  config = tiny_search_config(optim__weight_decay=3e-4, search__alpha_init='normal')
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


def _cos(a, b):
  a, b = (
    jnp.concatenate([x.ravel() for x in jax.tree.leaves(a)]),
    jnp.concatenate([x.ravel() for x in jax.tree.leaves(b)]),
  )
  return float(a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


def _first_order(setup, state, batch, params=None):
  params = state.params if params is None else params
  grad = jax.jit(jax.grad(functools.partial(darts.loss_fn, model=setup.model), 2, has_aux=True))
  return grad(params, state.batch_stats, state.alphas, batch)[0]


def _virtual_weights(setup, state, batch, eta):
  # Jitted: eagerly, every op of the supernet would compile on its own.
  virtual = jax.jit(
    functools.partial(darts.virtual_weights, model=setup.model, weight_sgd=setup.weight_sgd)
  )
  return virtual(state.params, state.batch_stats, state.alphas, state.weight_opt_state, batch, eta)


def test_virtual_step_uses_momentum_and_weight_decay(setup_and_batches):
  setup, state, train_batch, _ = setup_and_batches
  eta = 0.05
  virtual = _virtual_weights(setup, state, train_batch, eta)
  grads = jax.jit(
    jax.grad(
      lambda w: darts.loss_fn(w, state.batch_stats, state.alphas, train_batch, model=setup.model)[0]
    )
  )(state.params)
  momentum = optim.direction_state(state.weight_opt_state)[1].trace
  expected = jax.tree.map(
    lambda w, g, m: w - eta * (0.9 * m + g + 3e-4 * w), state.params, grads, momentum
  )
  assert float(optax.tree.norm(momentum)) > 0
  for a, b in zip(jax.tree.leaves(virtual), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('hypergradient', ['finite_difference', 'exact'])
def test_second_order_with_zero_lr_equals_first_order(setup_and_batches, hypergradient):
  setup, state, train_batch, val_batch = setup_and_batches
  fn = darts.second_order_exact_grad if hypergradient == 'exact' else darts.second_order_fd_grad
  grad, _, _ = jax.jit(functools.partial(fn, model=setup.model, weight_sgd=setup.weight_sgd))(
    state, train_batch, val_batch, jnp.float32(0.0)
  )
  expected = _first_order(setup, state, val_batch)
  for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(expected), strict=True):
    # Two differently fused float32 programs: entries near zero differ by rounding only.
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.abs(b).max()))


def test_finite_difference_hypergradient_matches_exact(setup_and_batches):
  """Finite-difference and autodiff hypergradients are the same maths.

  In float64 with a radius small enough not to cross ReLU kinks, the whole hypergradient and the
  Hessian-vector-product term on its own agree. (At the reference's radius 0.01 a tiny supernet
  crosses many kinks, and the quotient becomes a smoothed Hessian; see the README.)
  """
  setup, state, train_batch, val_batch = setup_and_batches
  with jax.enable_x64(True):

    def f64(t):
      return jax.tree.map(lambda x: x.astype(jnp.float64) if x.dtype == jnp.float32 else x, t)

    state64, train64, val64 = f64(state), f64(train_batch), f64(val_batch)
    eta = jnp.float64(0.5)
    fd, _, _ = jax.jit(
      functools.partial(
        darts.second_order_fd_grad, model=setup.model, weight_sgd=setup.weight_sgd, radius=1e-7
      )
    )(state64, train64, val64, eta)
    exact, _, _ = jax.jit(
      functools.partial(
        darts.second_order_exact_grad, model=setup.model, weight_sgd=setup.weight_sgd
      )
    )(state64, train64, val64, eta)
    virtual = _virtual_weights(setup, state64, train64, eta)
    d_alpha = _first_order(setup, state64, val64, params=virtual)
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
  setup, state, _, _ = setup_and_batches
  step = search_setup.make_step_fn(setup, 'search')
  inputs = search_setup.epoch_inputs(setup, 1)
  before = jax.device_get(state)
  state2, sums = step(jax.tree.map(jnp.copy, state), darts.init_metrics(), setup.data, *inputs)
  sums = jax.device_get(sums)
  assert int(state2.step) == int(before.step) + 1
  assert sums['steps'] == 1 and sums['examples'] == 8
  assert np.isfinite(sums['val_loss']) and sums['val_loss'] > 0
  assert int(sums['first_bad_step']) == int(darts.NO_BAD_STEP)
  assert not np.allclose(state2.alphas['normal'], before.alphas['normal'])
  assert not np.allclose(
    state2.params['classifier']['kernel'], before.params['classifier']['kernel']
  )
