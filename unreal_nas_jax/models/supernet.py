"""The DARTS search supernet, with the architecture passed in as an argument.

`SearchNetwork.apply({'params': w, 'batch_stats': bs}, images, arch_weights, train=True)`:
`arch_weights` is `{'normal': (E, O), 'reduce': (E, O)}` of per-edge op mixing weights (softmax of
the alphas, computed by the caller), never a Flax variable. So weights and architecture live in two
pytrees with two optimizers, and a gradient with respect to either is one `jax.grad`.

Compile time against step time: a cell has 14 mixed edges of 7 ops each, so the unrolled
supernet is thousands of small ops, and XLA needs minutes to compile a second-order step of it.
`scan_edges=True` runs each cell's edges as two `nn.scan`s over stacked per-edge weights: the
edges that read the two cell inputs (independent of each other, strided in reduction cells) and
the edges between intermediate nodes (in edge order, so every source node is complete before it
is read). One mixed op is traced per scan instead of one per edge (about 3x less to compile) and
the arithmetic is unchanged, but XLA:CPU runs the loop bodies about 4x slower than the unrolled
graph (measured: C=8, 5 cells, 16x16, batch 32, forward+backward 2.7 s scanned vs 0.59 s
unrolled; compile 13 s vs 42 s). Unrolled is the default; scan when compiles dominate.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from unreal_nas_jax.models.layers import (
  BatchNorm,
  Conv,
  FactorizedReduce,
  ReLUConvBN,
  make_op,
  torch_default_bias_init,
  torch_default_init,
)
from unreal_nas_jax.space.primitives import PRIMITIVES, edge_list


class MixedOp(nn.Module):
  """sum_k w_k * op_k(x) over the candidate ops; `none` contributes exactly zero and is skipped."""

  features: int
  stride: int
  depthwise_impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array, weights: jax.Array, train: bool) -> jax.Array:
    out = None
    for k, name in enumerate(PRIMITIVES):
      if name == 'none':
        continue
      op = make_op(
        name,
        self.features,
        self.stride,
        affine=False,
        search=True,
        depthwise_impl=self.depthwise_impl,
      )
      y = weights[k] * op(x, train)
      out = y if out is None else out + y
    return out


class _InputEdge(nn.Module):
  """Scan body over the edges that read a cell input (carry: the two inputs, unchanged)."""

  features: int
  stride: int
  depthwise_impl: str
  train: bool

  @nn.compact
  def __call__(self, inputs: jax.Array, xs: tuple[jax.Array, jax.Array]):
    source, weights = xs
    x = jax.lax.dynamic_index_in_dim(inputs, source, axis=0, keepdims=False)
    y = MixedOp(self.features, self.stride, self.depthwise_impl, name='mixed')(
      x, weights, self.train
    )
    return inputs, y


class _NodeEdge(nn.Module):
  """Scan body over the edges between intermediate nodes (carry: the node partial sums)."""

  features: int
  depthwise_impl: str
  train: bool

  @nn.compact
  def __call__(self, nodes: jax.Array, xs: tuple[jax.Array, jax.Array, jax.Array]):
    source, target, weights = xs
    x = jax.lax.dynamic_index_in_dim(nodes, source, axis=0, keepdims=False)
    y = MixedOp(self.features, 1, self.depthwise_impl, name='mixed')(x, weights, self.train)
    updated = jax.lax.dynamic_index_in_dim(nodes, target, axis=0, keepdims=False) + y
    return jax.lax.dynamic_update_index_in_dim(nodes, updated, target, axis=0), None


def _scan(body: type[nn.Module], length: int) -> type[nn.Module]:
  return nn.scan(
    body,
    variable_axes={'params': 0, 'batch_stats': 0},
    split_rngs={'params': True},
    in_axes=0,
    out_axes=0,
    length=length,
  )


class SearchCell(nn.Module):
  """A DARTS search cell: `steps` nodes, each the sum of mixed ops over all earlier states."""

  features: int
  reduction: bool
  reduction_prev: bool
  steps: int = 4
  multiplier: int = 4
  depthwise_impl: str = 'auto'
  scan_edges: bool = False

  @nn.compact
  def __call__(self, s0: jax.Array, s1: jax.Array, weights: jax.Array, train: bool) -> jax.Array:
    c = self.features
    if self.reduction_prev:
      s0 = FactorizedReduce(c, affine=False, name='preprocess0')(s0, train)
    else:
      s0 = ReLUConvBN(c, affine=False, name='preprocess0')(s0, train)
    s1 = ReLUConvBN(c, affine=False, name='preprocess1')(s1, train)

    edges = edge_list(self.steps)
    stride = 2 if self.reduction else 1
    if not self.scan_edges:
      states = [s0, s1]
      for node in range(self.steps):
        total = None
        for e, (src, dst) in enumerate(edges):
          if dst == node:
            edge_stride = stride if src < 2 else 1
            mixed = MixedOp(c, edge_stride, self.depthwise_impl, name=f'edge_{e}')
            y = mixed(states[src], weights[e], train)
            total = y if total is None else total + y
        states.append(total)
      return jnp.concatenate(states[2 + self.steps - self.multiplier :], axis=-1)

    input_edges = [e for e, (src, _) in enumerate(edges) if src < 2]
    node_edges = [e for e, (src, _) in enumerate(edges) if src >= 2]

    # Input edges come ordered (node 0: src 0, src 1), (node 1: src 0, src 1), ...
    sources = jnp.asarray([edges[e][0] for e in input_edges], jnp.int32)
    _, ys = _scan(_InputEdge, len(input_edges))(
      c, stride, self.depthwise_impl, train, name='input_edges'
    )(jnp.stack([s0, s1]), (sources, weights[np.asarray(input_edges)]))
    nodes = ys[0::2] + ys[1::2]

    if node_edges:
      sources = jnp.asarray([edges[e][0] - 2 for e in node_edges], jnp.int32)
      targets = jnp.asarray([edges[e][1] for e in node_edges], jnp.int32)
      nodes, _ = _scan(_NodeEdge, len(node_edges))(
        c, self.depthwise_impl, train, name='node_edges'
      )(nodes, (sources, targets, weights[np.asarray(node_edges)]))

    # Concatenate the last `multiplier` nodes on channels, node-major like torch.cat(dim=1).
    out = jnp.moveaxis(nodes[self.steps - self.multiplier :], 0, -2)
    return out.reshape(*out.shape[:-2], self.multiplier * c)


def reduction_indices(layers: int) -> tuple[int, ...]:
  """Cells that halve the resolution and double the channels: layers//3 and 2*layers//3."""
  return tuple(sorted({layers // 3, 2 * layers // 3}))


class SearchNetwork(nn.Module):
  """The DARTS supernet (spec section 2).

  Attributes:
    num_classes: classifier width (the number of random labels on unreal data).
    channels: initial channels C (16 in the paper).
    layers: number of cells (8 in the paper).
    steps: intermediate nodes per cell (4).
    multiplier: how many of the last nodes are concatenated into the cell output (4).
    stem_multiplier: the stem outputs stem_multiplier * C channels (3).
    depthwise_impl: depthwise convolution implementation ('auto' picks by platform).
    scan_edges: run each cell's edges as scans (smaller program, slower on CPU); see above.
  """

  num_classes: int
  channels: int = 16
  layers: int = 8
  steps: int = 4
  multiplier: int = 4
  stem_multiplier: int = 3
  depthwise_impl: str = 'auto'
  scan_edges: bool = False

  @nn.compact
  def __call__(
    self, images: jax.Array, arch_weights: dict[str, jax.Array], train: bool = True
  ) -> jax.Array:
    c = self.channels
    x = Conv(self.stem_multiplier * c, (3, 3), padding=(1, 1), name='stem_conv')(images)
    s0 = s1 = BatchNorm(affine=True, name='stem_bn')(x, train)
    reductions = reduction_indices(self.layers)
    reduction_prev = False
    for i in range(self.layers):
      reduction = i in reductions
      if reduction:
        c *= 2
      cell = SearchCell(
        c,
        reduction,
        reduction_prev,
        self.steps,
        self.multiplier,
        self.depthwise_impl,
        self.scan_edges,
        name=f'cell_{i}',
      )
      s0, s1 = s1, cell(s0, s1, arch_weights['reduce' if reduction else 'normal'], train)
      reduction_prev = reduction
    pooled = jnp.mean(s1, axis=(1, 2))
    return nn.Dense(
      self.num_classes,
      kernel_init=torch_default_init,
      bias_init=torch_default_bias_init(pooled.shape[-1]),
      name='classifier',
    )(pooled)
