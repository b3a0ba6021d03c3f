"""The fused search supernet: published parameter count, and the same function as the supernet
written edge by edge (logits, BatchNorm statistics, first- and second-order alpha gradients)."""

import functools
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models.per_edge_supernet import PerEdgeNetwork, to_per_edge_variables
from unreal_nas_jax import optim
from unreal_nas_jax.models.supernet import SearchNetwork
from unreal_nas_jax.ops.depthwise import DEPTHWISE_IMPLS
from unreal_nas_jax.search import darts
from unreal_nas_jax.search.arch import arch_weights, init_alphas
from unreal_nas_jax.search.state import SearchState
from unreal_nas_jax.space.primitives import PRIMITIVES, num_edges, reduction_indices

# XLA's RngBitGenerator: a threefry key makes XLA:CPU compile a supernet's init for ~20 s.
INIT_KEY = jax.random.key(1, impl='unsafe_rbg')


def param_count(model, image_size=32):
  alphas = init_alphas(jax.random.PRNGKey(0))
  images = jnp.zeros((2, image_size, image_size, 3))
  shapes = jax.eval_shape(
    lambda: model.init(jax.random.PRNGKey(0), images, arch_weights(alphas), train=True)
  )
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes['params']))


def test_paper_supernet_has_published_parameter_count():
  # DARTS search network, C=16, 8 cells, 10 classes: 1,930,618 (BN without affine in cells).
  assert param_count(SearchNetwork(num_classes=10, channels=16, layers=8)) == 1_930_618
  assert param_count(PerEdgeNetwork(num_classes=10, channels=16, layers=8)) == 1_930_618


def test_parameter_count_grows_with_classes_by_the_classifier_only():
  base = param_count(SearchNetwork(num_classes=10))
  # Classifier input is 4 * 4C = 256 channels; 5000 classes add 4990 * (256 + 1) weights.
  assert param_count(SearchNetwork(num_classes=5000)) - base == 4990 * 257


def test_reduction_cells_are_at_thirds():
  assert reduction_indices(8) == (2, 5)
  assert reduction_indices(20) == (6, 13)
  assert reduction_indices(3) == (1, 2)


# (channels, layers, steps, multiplier, image size, batch), each with a normal and two reduction
# cells: a 3-node cell (groups of 3, 2 and 1 targets) with odd feature maps (12 -> 6 -> 3), and a
# 2-node cell with an even output. (The 4-node cell differs only in group sizes; its parameter
# shapes are checked against the published count above.)
SIZES = [(4, 3, 3, 3, 12, 4), (4, 3, 2, 2, 16, 4)]


def _pair(channels, layers, steps, multiplier, size, batch, impl='native', edge_form='separable'):
  kw = dict(num_classes=5, channels=channels, layers=layers, steps=steps, multiplier=multiplier)
  fused = SearchNetwork(**kw, depthwise_impl=impl, edge_form=edge_form)
  reference = PerEdgeNetwork(**kw, depthwise_impl='xla')
  key = jax.random.PRNGKey(size)
  images = jax.random.normal(key, (batch, size, size, 3))
  weights = {
    name: jax.nn.softmax(jax.random.normal(jax.random.fold_in(key, i), (num_edges(steps), 8)), -1)
    for i, name in enumerate(('normal', 'reduce'))
  }
  variables = jax.jit(lambda: fused.init(INIT_KEY, images, weights, train=True))()
  # Non-trivial running statistics, so eval mode is compared too (numpy: no per-shape compiles).
  rng = np.random.default_rng(size)
  variables = {
    'params': jax.device_get(variables['params']),
    'batch_stats': jax.tree.map(
      lambda s: np.asarray(s) + rng.uniform(0, 0.1, s.shape).astype(s.dtype),
      variables['batch_stats'],
    ),
  }
  return fused, reference, images, weights, variables


# The edge-by-edge reference's results by (what was computed, the inputs' bytes): parametrizations
# that differ only in the fused network (its edge form, its depthwise kernels) compile and run the
# reference once per test process.
_REFERENCE_RESULTS = {}


def _digest(*trees):
  h = hashlib.sha256()
  for x in jax.tree.leaves(trees):
    x = np.asarray(x)
    h.update(f'{x.dtype}{x.shape}'.encode())
    h.update(x.tobytes())
  return h.hexdigest()


def _reference(name, compute, *inputs):
  """`compute(*inputs)`, computed once per test process for equal inputs."""
  key = (name, _digest(*inputs))
  if key not in _REFERENCE_RESULTS:
    _REFERENCE_RESULTS[key] = jax.device_get(compute(*inputs))
  return _REFERENCE_RESULTS[key]


def _outputs(model, variables, images, weights):
  """Training logits, updated BatchNorm statistics, eval logits and alpha gradients, one jit."""

  def run(variables, images, weights):
    def loss(w):
      logits, updates = model.apply(variables, images, w, train=True, mutable=['batch_stats'])
      return jnp.sum(jnp.sin(logits)), (logits, updates['batch_stats'])

    grads, (logits, stats) = jax.grad(loss, has_aux=True)(weights)
    return logits, stats, model.apply(variables, images, weights, train=False), grads

  return jax.jit(run)(variables, images, weights)


@pytest.mark.parametrize(
  'sizes,impl,dtype,edge_form',
  # float64 shows exact equality on the 3-node cell; float32 the rounding-level agreement. The
  # dense form (accelerators': product kernels, branches after the pixels, one-pass BatchNorm
  # statistics with a written-out backward) is the same function too.
  [(SIZES[0], 'native', 'float64', 'separable'), (SIZES[0], 'native', 'float64', 'dense')]
  + [(SIZES[1], impl, 'float32', 'separable') for impl in DEPTHWISE_IMPLS]
  + [(SIZES[1], 'native', 'float32', 'dense')],
)
def test_fused_supernet_equals_edge_by_edge_definition(sizes, impl, dtype, edge_form):
  # float32: rounding differs between the two summation orders and is amplified through three
  # cells of small-batch BatchNorm (most in the alpha gradients); float64 shows that the two are
  # the same function to its rounding.
  tol, grad_tol = (5e-5, 5e-4) if dtype == 'float32' else (1e-11, 1e-10)
  with jax.enable_x64(dtype == 'float64'):
    fused, reference, images, weights, variables = _pair(*sizes, impl=impl, edge_form=edge_form)
    cast = lambda tree: jax.tree.map(lambda x: x.astype(dtype), tree)  # noqa: E731
    images, weights, variables = cast(images), cast(weights), cast(variables)
    steps = sizes[2]
    ref_vars = to_per_edge_variables(variables, steps)
    ref_init = jax.eval_shape(lambda: reference.init(jax.random.PRNGKey(1), images, weights))
    assert jax.tree.structure(ref_init) == jax.tree.structure(ref_vars)
    logits, stats, eval_logits, grads = _outputs(fused, variables, images, weights)
    ref_logits, ref_stats, ref_eval, ref_grads = _reference(
      f'outputs {reference}', functools.partial(_outputs, reference), ref_vars, images, weights
    )
    assert logits.dtype == dtype

    scale = float(np.abs(ref_logits).max())
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=tol * scale)
    np.testing.assert_allclose(eval_logits, ref_eval, rtol=0, atol=tol * scale)
    stats = to_per_edge_variables({'params': variables['params'], 'batch_stats': stats}, steps)
    for (path, a), b in zip(
      jax.tree_util.tree_leaves_with_path(stats['batch_stats']),
      jax.tree.leaves(ref_stats),
      strict=True,
    ):
      np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=jax.tree_util.keystr(path))
    for key in grads:
      gmax = float(np.abs(ref_grads[key]).max())
      np.testing.assert_allclose(grads[key], ref_grads[key], rtol=0, atol=grad_tol * gmax)


def _search_state(model, variables, alphas, weight_tx, arch_tx):
  return SearchState(
    step=jnp.zeros((), jnp.int32),
    params=variables['params'],
    batch_stats=variables['batch_stats'],
    alphas=alphas,
    weight_opt_state=weight_tx.init(variables['params']),
    arch_opt_state=arch_tx.init(alphas),
    rng=jax.random.PRNGKey(0),
    decisions=None,
  )


def _with_trace(state, trace):
  decay, momentum = optim.direction_state(state.weight_opt_state)
  return decay, momentum._replace(trace=trace)


@pytest.mark.parametrize('edge_form', ['separable', 'dense'])
def test_fused_second_order_alpha_gradient_equals_edge_by_edge(edge_form):
  """The exact unrolled hypergradient (a gradient through a gradient step, momentum and weight
  decay included; for the dense form through its BatchNorm's written-out backward pass). The
  finite-difference one combines first-order gradients, which the test above compares at
  arbitrary weights."""
  sizes = SIZES[1]
  fused, reference, images, _, variables = _pair(*sizes, edge_form=edge_form)
  steps = sizes[2]
  alphas = init_alphas(jax.random.PRNGKey(3), steps=steps, init='normal', scale=0.5)
  labels = jnp.arange(images.shape[0]) % 5
  train, val = (images, labels), (images[::-1] * 0.5, labels[::-1])
  weight_sgd = optim.weight_sgd(weight_decay=3e-4, momentum=0.9, grad_clip=5.0)
  weight_tx = weight_sgd.tx
  arch_tx = optim.arch_adam(lr=3e-4, b1=0.5, b2=0.999, eps=1e-8, weight_decay=1e-3)
  state = _search_state(fused, variables, alphas, weight_tx, arch_tx)
  # A non-zero momentum buffer (the virtual step reuses it), mapped onto the reference's weights.
  trace = jax.tree.map(lambda w: 0.3 * jnp.cos(w * 7.0), state.params)
  state = state.replace(
    weight_opt_state={**state.weight_opt_state, 'direction': _with_trace(state, trace)}
  )
  ref_trace = to_per_edge_variables({'params': trace, 'batch_stats': state.batch_stats}, steps)
  ref_vars = to_per_edge_variables(variables, steps)
  ref_state = _search_state(reference, ref_vars, alphas, weight_tx, arch_tx)
  ref_state = ref_state.replace(
    weight_opt_state={
      **ref_state.weight_opt_state,
      'direction': _with_trace(ref_state, ref_trace['params']),
    }
  )
  fn = darts.second_order_exact_grad
  eta = jnp.float32(0.1)
  grad, val_loss, _ = jax.jit(functools.partial(fn, model=fused, weight_sgd=weight_sgd))(
    state, train, val, eta
  )
  ref_grad, ref_loss, _ = _reference(
    f'second order {reference}',
    jax.jit(functools.partial(fn, model=reference, weight_sgd=weight_sgd)),
    ref_state,
    train,
    val,
    eta,
  )
  np.testing.assert_allclose(val_loss, ref_loss, rtol=1e-5)
  for key in grad:
    gmax = float(jnp.abs(ref_grad[key]).max())
    np.testing.assert_allclose(grad[key], ref_grad[key], rtol=0, atol=1e-4 * gmax)


def test_all_weight_on_none_leaves_only_the_classifier_bias():
  model = SearchNetwork(num_classes=7, channels=4, layers=3, steps=2, multiplier=2)
  images = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 8, 3))
  none_only = jnp.zeros((5, len(PRIMITIVES))).at[:, 0].set(1.0)
  uniform = jnp.full_like(none_only, 1 / len(PRIMITIVES))

  @jax.jit
  def run():
    weights = {'normal': none_only, 'reduce': none_only}
    variables = model.init(INIT_KEY, images, weights, train=True)
    logits = model.apply(variables, images, weights, train=True, mutable=['batch_stats'])[0]
    mixed = {'normal': uniform, 'reduce': uniform}
    mixed_logits = model.apply(variables, images, mixed, train=True, mutable=['batch_stats'])[0]
    return logits, mixed_logits, variables['params']['classifier']['bias']

  logits, mixed_logits, bias = run()
  np.testing.assert_allclose(logits, jnp.broadcast_to(bias, logits.shape), atol=1e-6)
  # And the architecture argument matters: uniform weights give example-dependent logits.
  assert float(jnp.std(mixed_logits[:, 0])) > 1e-4


def test_eval_mode_uses_running_statistics():
  model = SearchNetwork(num_classes=3, channels=4, layers=3, steps=2, multiplier=2)
  images = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 3))
  weights = arch_weights(init_alphas(jax.random.PRNGKey(0), steps=2))
  variables = jax.jit(lambda: model.init(INIT_KEY, images, weights, train=True))()
  evaluate = jax.jit(lambda x: model.apply(variables, x, weights, train=False))
  # With running statistics an example's logits do not depend on the rest of the batch.
  np.testing.assert_allclose(evaluate(images[:1]), evaluate(images)[:1], atol=1e-5)
