"""The search supernet: published parameter count, scanned edges equal the per-edge definition."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unreal_nas_jax.models.supernet import MixedOp, SearchCell, SearchNetwork, reduction_indices
from unreal_nas_jax.search.arch import arch_weights, init_alphas
from unreal_nas_jax.space.primitives import PRIMITIVES, edge_list


def param_count(model, image_size=32):
  alphas = init_alphas(jax.random.PRNGKey(0))
  images = jnp.zeros((2, image_size, image_size, 3))
  shapes = jax.eval_shape(
    lambda: model.init(jax.random.PRNGKey(0), images, arch_weights(alphas), train=True)
  )
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes['params']))


@pytest.mark.parametrize('scan_edges', [False, True])
def test_paper_supernet_has_published_parameter_count(scan_edges):
  # DARTS search network, C=16, 8 cells, 10 classes: 1,930,618 (BN without affine in cells).
  model = SearchNetwork(num_classes=10, channels=16, layers=8, scan_edges=scan_edges)
  assert param_count(model) == 1_930_618


def test_parameter_count_grows_with_classes_by_the_classifier_only():
  base = param_count(SearchNetwork(num_classes=10))
  # Classifier input is 4 * 4C = 256 channels; 5000 classes add 4990 * (256 + 1) weights.
  assert param_count(SearchNetwork(num_classes=5000)) - base == 4990 * 257


def test_reduction_cells_are_at_thirds():
  assert reduction_indices(8) == (2, 5)
  assert reduction_indices(20) == (6, 13)
  assert reduction_indices(3) == (1, 2)


def _slice(tree, key, k):
  return jax.tree.map(lambda x: x[k], tree[key]['mixed'])


@pytest.mark.parametrize('reduction,reduction_prev', [(False, False), (True, False), (False, True)])
def test_scanned_cell_equals_edge_by_edge_definition(reduction, reduction_prev):
  """The two nn.scans over stacked edge weights compute exactly the DARTS cell, and so does the
  unrolled cell with the same weights."""
  c, steps, mult = 4, 3, 3
  size_in = 16 if reduction_prev else 8
  key = jax.random.PRNGKey(1)
  s0 = jax.random.normal(key, (2, size_in, size_in, 6))
  s1 = jax.random.normal(jax.random.fold_in(key, 1), (2, 8, 8, 5))
  n_edges = len(edge_list(steps))
  weights = jax.nn.softmax(jax.random.normal(jax.random.fold_in(key, 2), (n_edges, 8)), -1)
  cell = SearchCell(c, reduction, reduction_prev, steps, mult, 'xla', scan_edges=True)
  variables = cell.init(jax.random.PRNGKey(3), s0, s1, weights, True)
  out, _ = cell.apply(variables, s0, s1, weights, True, mutable=['batch_stats'])

  params, stats = variables['params'], variables['batch_stats']

  def run(module, name, *args):
    v = {'params': params[name], 'batch_stats': stats[name]}
    return module.apply(v, *args, mutable=['batch_stats'])[0]

  from unreal_nas_jax.models.layers import FactorizedReduce, ReLUConvBN

  pre0 = FactorizedReduce(c, affine=False) if reduction_prev else ReLUConvBN(c, affine=False)
  states = [
    run(pre0, 'preprocess0', s0, True),
    run(ReLUConvBN(c, affine=False), 'preprocess1', s1, True),
  ]
  edges = edge_list(steps)
  input_edges = [e for e, (src, _) in enumerate(edges) if src < 2]
  node_edges = [e for e, (src, _) in enumerate(edges) if src >= 2]
  for node in range(steps):
    total = 0.0
    for e, (src, dst) in enumerate(edges):
      if dst != node:
        continue
      group, k = (
        ('input_edges', input_edges.index(e)) if src < 2 else ('node_edges', node_edges.index(e))
      )
      stride = 2 if (reduction and src < 2) else 1
      v = {'params': _slice(params, group, k), 'batch_stats': _slice(stats, group, k)}
      y = MixedOp(c, stride, 'xla').apply(
        v, states[src], weights[e], True, mutable=['batch_stats']
      )[0]
      total = total + y
    states.append(total)
  expected = jnp.concatenate(states[-mult:], axis=-1)
  assert out.shape == expected.shape == (2, 4 if reduction else 8, 4 if reduction else 8, mult * c)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)

  # The unrolled cell (the default) with the scanned weights unstacked edge by edge.
  unrolled_params = {k: params[k] for k in ('preprocess0', 'preprocess1')}
  unrolled_stats = {k: stats[k] for k in ('preprocess0', 'preprocess1')}
  for e, (src, _) in enumerate(edges):
    group, k = (
      ('input_edges', input_edges.index(e)) if src < 2 else ('node_edges', node_edges.index(e))
    )
    unrolled_params[f'edge_{e}'] = _slice(params, group, k)
    unrolled_stats[f'edge_{e}'] = _slice(stats, group, k)
  unrolled = SearchCell(c, reduction, reduction_prev, steps, mult, 'xla', scan_edges=False)
  assert jax.tree.structure(
    unrolled.init(jax.random.PRNGKey(3), s0, s1, weights, True)['params']
  ) == jax.tree.structure(unrolled_params)
  out2, _ = unrolled.apply(
    {'params': unrolled_params, 'batch_stats': unrolled_stats},
    s0,
    s1,
    weights,
    True,
    mutable=['batch_stats'],
  )
  np.testing.assert_allclose(out2, expected, rtol=1e-5, atol=1e-5)


def test_all_weight_on_none_leaves_only_the_classifier_bias():
  model = SearchNetwork(
    num_classes=7, channels=4, layers=3, steps=2, multiplier=2, depthwise_impl='xla'
  )
  images = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 8, 3))
  none_only = jnp.zeros((5, len(PRIMITIVES))).at[:, 0].set(1.0)
  weights = {'normal': none_only, 'reduce': none_only}
  variables = model.init(jax.random.PRNGKey(1), images, weights, train=True)
  logits, _ = model.apply(variables, images, weights, train=True, mutable=['batch_stats'])
  bias = variables['params']['classifier']['bias']
  np.testing.assert_allclose(logits, jnp.broadcast_to(bias, logits.shape), atol=1e-6)
  # And the architecture argument matters: uniform weights give example-dependent logits.
  uniform = {k: jnp.full_like(v, 1 / len(PRIMITIVES)) for k, v in weights.items()}
  logits, _ = model.apply(variables, images, uniform, train=True, mutable=['batch_stats'])
  assert float(jnp.std(logits[:, 0])) > 1e-4


def test_eval_mode_uses_running_statistics():
  model = SearchNetwork(
    num_classes=3, channels=4, layers=3, steps=2, multiplier=2, depthwise_impl='xla'
  )
  images = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 3))
  weights = arch_weights(init_alphas(jax.random.PRNGKey(0), steps=2))
  variables = model.init(jax.random.PRNGKey(1), images, weights, train=True)
  one = model.apply(variables, images[:1], weights, train=False)
  four = model.apply(variables, images, weights, train=False)
  # With running statistics an example's logits do not depend on the rest of the batch.
  np.testing.assert_allclose(one, four[:1], atol=1e-5)
  assert isinstance(model, nn.Module)
