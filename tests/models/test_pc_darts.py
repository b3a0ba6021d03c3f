"""PC-DARTS: partial channels and the channel shuffle, edge betas, the beta-weighted genotype, the
supernet's size, and the fused supernet against the edge-by-edge definition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models.per_edge_supernet import PerEdgeNetwork, to_per_edge_variables
from unreal_nas_jax.models.layers import channel_shuffle, max_pool_2x2
from unreal_nas_jax.models.supernet import SearchNetwork
from unreal_nas_jax.search import arch, derivation
from unreal_nas_jax.space.primitives import PRIMITIVES, num_edges


def test_channel_shuffle_interleaves_the_groups_like_pytorch():
  x = jnp.arange(8.0).reshape(1, 1, 1, 8)
  # torch: view(N, 4, 2, H, W).transpose(1, 2): channel g * 2 + j -> j * 4 + g.
  np.testing.assert_array_equal(channel_shuffle(x, 4)[0, 0, 0], [0, 2, 4, 6, 1, 3, 5, 7])
  np.testing.assert_array_equal(channel_shuffle(x, 2)[0, 0, 0], [0, 4, 1, 5, 2, 6, 3, 7])
  np.testing.assert_array_equal(channel_shuffle(x, 1), x)


def test_max_pool_2x2_takes_each_block_maximum():
  x = jnp.asarray([[1.0, 5, 2, 0], [3, 4, 8, 1], [0, 0, 6, 7], [9, 1, 2, 3]])[None, :, :, None]
  np.testing.assert_array_equal(max_pool_2x2(x)[0, :, :, 0], [[5, 8], [9, 7]])


def test_betas_are_a_softmax_within_each_node():
  betas = jnp.asarray([0.0, 1.0, 2.0, 0.0, -1.0])  # steps=2: node 0 edges 0-1, node 1 edges 2-4
  w = arch.node_softmax(betas)
  np.testing.assert_allclose(w[:2], jax.nn.softmax(betas[:2]), rtol=1e-6)
  np.testing.assert_allclose(w[2:], jax.nn.softmax(betas[2:]), rtol=1e-6)
  alphas = {'normal': jnp.zeros((5, 8)), 'reduce': jnp.ones((5, 8))}
  alphas |= {'normal_beta': betas, 'reduce_beta': jnp.zeros(5)}
  weights = arch.arch_weights(alphas)
  # Each edge's op weights sum to its beta, so each node's edges sum to 1.
  np.testing.assert_allclose(weights['normal'].sum(-1), w, rtol=1e-6)
  np.testing.assert_allclose(weights['reduce'].sum(-1), [0.5, 0.5, 1 / 3, 1 / 3, 1 / 3], rtol=1e-6)


def test_betas_reorder_the_derived_edges():
  # Node 0 (edges 0, 1) and node 1 (edges 2-4); alphas make edge 0 < edge 1 on op strength, and
  # edges 2, 3 the strongest of node 1.
  steps, ops = 2, len(PRIMITIVES)
  a = np.zeros((num_edges(steps), ops))
  sep3, max3 = PRIMITIVES.index('sep_conv_3x3'), PRIMITIVES.index('max_pool_3x3')
  a[0, sep3], a[1, sep3], a[2, max3], a[3, max3], a[4, sep3] = 1.0, 2.0, 3.0, 3.0, 1.0
  alphas = {'normal': jnp.asarray(a), 'reduce': jnp.asarray(a)}
  plain = derivation.search_genotype(alphas, None, method='darts', steps=steps, multiplier=2)
  assert plain.normal == (('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('max_pool_3x3', 0),
                          ('max_pool_3x3', 1))  # fmt: skip
  # Betas that weigh edge 0 far above edge 1 and edge 4 above edges 2 and 3.
  betas = jnp.asarray([3.0, 0.0, 0.0, 0.0, 4.0])
  weighted = derivation.search_genotype(
    alphas | {'normal_beta': betas, 'reduce_beta': jnp.zeros(5)},
    None,
    method='pc_darts',
    steps=steps,
    multiplier=2,
  )
  assert weighted.normal == (('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2),
                             ('max_pool_3x3', 0))  # fmt: skip
  assert weighted.reduce == plain.reduce  # equal betas change nothing


def _reference_param_count(c, layers, k, classes=10, steps=4, multiplier=4, stem=3):
  """The PC-DARTS search network's weights, counted from the reference's module definitions."""

  def edge(ch, stride):
    ch //= k
    sep = lambda s: 2 * (s * s * ch + ch * ch)  # noqa: E731 (two depthwise + pointwise blocks)
    dil = lambda s: s * s * ch + ch * ch  # noqa: E731
    skip = ch * ch if stride == 2 else 0  # FactorizedReduce: two 1x1 convs to ch / 2
    return sep(3) + sep(5) + dil(3) + dil(5) + skip

  total = 27 * stem * c + 2 * stem * c  # stem conv (no bias) and its affine BatchNorm
  c_pp, c_p, c_cur = stem * c, stem * c, c
  for i in range(layers):
    reduction = i in (layers // 3, 2 * layers // 3)
    c_cur *= 2 if reduction else 1
    total += c_pp * c_cur + c_p * c_cur  # preprocess0 (1x1 or FactorizedReduce), preprocess1
    for node in range(steps):
      total += sum(edge(c_cur, 2 if reduction and j < 2 else 1) for j in range(2 + node))
    c_pp, c_p = c_p, multiplier * c_cur
  return total + c_p * classes + classes


@pytest.mark.parametrize('k', [1, 4])
def test_supernet_parameter_count(k):
  if k == 1:
    assert _reference_param_count(16, 8, 1) == 1_930_618  # the published DARTS count
  model = SearchNetwork(num_classes=10, channels=16, layers=8, partial_channels=k)
  alphas = arch.init_alphas(jax.random.PRNGKey(0))
  shapes = jax.eval_shape(
    lambda: model.init(
      jax.random.PRNGKey(0), jnp.zeros((2, 32, 32, 3)), arch.arch_weights(alphas), train=True
    )
  )
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes['params']))
  assert count == _reference_param_count(16, 8, k)


_REFERENCE_RESULTS = {}


@pytest.mark.parametrize('edge_form', ['separable', 'dense'])
def test_fused_partial_channel_supernet_equals_edge_by_edge_definition(edge_form):
  """Per node shuffle of the summed edges (fused) = sum of per-edge shuffles (reference)."""
  kw = dict(num_classes=5, channels=8, layers=3, steps=2, multiplier=2, partial_channels=4)
  fused = SearchNetwork(**kw, depthwise_impl='native', edge_form=edge_form)
  reference = PerEdgeNetwork(**kw, depthwise_impl='xla')
  with jax.enable_x64(True):
    key = jax.random.PRNGKey(7)
    images = jax.random.normal(key, (4, 8, 8, 3), jnp.float64)
    alphas = arch.init_alphas(key, steps=2, init='normal', scale=1.0, edge_betas=True)
    alphas = jax.tree.map(lambda a: a.astype(jnp.float64), alphas)
    variables = jax.jit(
      lambda: fused.init(
        jax.random.key(1, impl='unsafe_rbg'), images, arch.arch_weights(alphas), train=True
      )
    )()
    variables = jax.tree.map(lambda x: np.asarray(x, np.float64), jax.device_get(variables))
    ref_vars = to_per_edge_variables(variables, 2, partial_channels=4)
    shapes = jax.eval_shape(lambda: reference.init(key, images, arch.arch_weights(alphas)))
    assert jax.tree.structure(shapes) == jax.tree.structure(ref_vars)

    def run(model, variables):
      def loss(a):
        logits, _ = model.apply(
          variables, images, arch.arch_weights(a), train=True, mutable=['batch_stats']
        )
        return jnp.sum(jnp.sin(logits)), logits

      return jax.grad(loss, has_aux=True)(alphas)

    grads, logits = jax.jit(lambda v: run(fused, v))(variables)
    # The reference does not depend on the fused network's edge form: computed once per process.
    key = tuple(np.asarray(x).tobytes() for x in jax.tree.leaves((ref_vars, images, alphas)))
    if key not in _REFERENCE_RESULTS:
      _REFERENCE_RESULTS[key] = jax.device_get(jax.jit(lambda v: run(reference, v))(ref_vars))
    ref_grads, ref_logits = _REFERENCE_RESULTS[key]
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=1e-11 * np.abs(ref_logits).max())
    assert set(grads) == {'normal', 'reduce', 'normal_beta', 'reduce_beta'}
    for name in grads:
      scale = float(np.abs(ref_grads[name]).max())
      assert scale > 0, name  # the betas get a gradient
      np.testing.assert_allclose(grads[name], ref_grads[name], rtol=0, atol=1e-10 * scale)
