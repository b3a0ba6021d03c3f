"""The DARTS search supernet, with the architecture passed in as an argument.

`SearchNetwork.apply({'params': w, 'batch_stats': bs}, images, arch_weights, train=True)`:
`arch_weights` is `{'normal': (E, O), 'reduce': (E, O)}` of per-edge op mixing weights (softmax of
the alphas, computed by the caller), never a Flax variable. So weights and architecture live in two
pytrees with two optimizers, and a gradient with respect to either is one `jax.grad`.

The mathematics is the reference's mixed op, sum_k w_k * op_k(x) on each of a cell's 14 edges, but
the program is laid out by *source state* rather than by edge, because every edge that leaves the
same state reads the same tensor:
  - the parameter-free ops (3x3 max and average pool, each followed by the search network's
    non-affine BatchNorm, and the identity) give the same tensor on every edge of a source, so
    they are computed once per source and mixed into each target with that edge's weights;
  - the convolutional ops of all edges of a source share their first ReLU, and their per-edge
    weights are stacked: one depthwise convolution with several filters per channel serves the
    first block of sep_conv_3x3, sep_conv_5x5 and dil_conv_3x3 of every edge (the 3x3 kernels
    are zero-padded into 5x5 ones inside the forward pass; dil_conv_5x5 has its own), one batched
    contraction does all their pointwise convolutions, and one BatchNorm with per-branch
    statistics normalises them;
  - the two cell inputs have the same shape, so their edges form one group; each intermediate
    node is then the source of one more group.
A cell is thus 4 groups instead of 14 edges x 7 ops.

PC-DARTS (`partial_channels` K > 1, spec section 8): only the first C/K channels of a source go
through the ops, the rest bypass them (a 2x2 max pool on stride-2 edges), each edge's output is the
channel shuffle of the two concatenated, and nodes sum their edges weighted by the edge betas. The
caller passes weights already multiplied by the betas, so an edge's bypass weight is the sum of its
row; and as the concatenation and the shuffle are linear, they are applied once per node to the
sums over its edges rather than once per edge. Parameters keep the reference's shapes
(stacked over sources and edges), so the supernet has exactly the reference's parameter count,
and `tests/models/test_supernet.py` checks logits, BatchNorm statistics and first- and
second-order alpha gradients against an edge-by-edge implementation.

Tensors of stacked branches are laid out branch-major, (branches..., N, H, W, C), so that the
batched pointwise contraction is a plain batched matrix product.
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
  avg_pool_3x3,
  channel_shuffle,
  max_pool_2x2,
  max_pool_3x3,
  strided_pixels,
  torch_default_bias_init,
  torch_default_init,
  uniform_fan_in_init,
)
from unreal_nas_jax.ops.depthwise import stacked_depthwise
from unreal_nas_jax.space.primitives import PRIMITIVES, edge_groups, reduction_indices

_OP = {name: k for k, name in enumerate(PRIMITIVES)}


def _pad_to_5x5(kernel: jax.Array, dilated: bool) -> jax.Array:
  """A 3x3 kernel (..., 3, 3, C) as the 5x5 kernel of the same convolution at padding 2.

  A 3x3 kernel at padding 1 is its 5x5 zero-padded ring; a 3x3 kernel with dilation 2 at padding 2
  is a 5x5 kernel whose odd rows and columns are zero. Either way every output pixel sums the same
  products, the extra ones being exact zeros.
  """
  lead = kernel.shape[:-3]
  if dilated:
    full = jnp.zeros((*lead, 5, 5, kernel.shape[-1]), kernel.dtype)
    return full.at[..., ::2, ::2, :].set(kernel)
  pad = [(0, 0)] * len(lead) + [(1, 1), (1, 1), (0, 0)]
  return jnp.pad(kernel, pad)


def _pointwise(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Per-branch 1x1 convolutions: (S, M, N, H, W, C) x (S, M, C, D) -> (S, M, N, H, W, D)."""
  return jnp.einsum('smnhwc,smcd->smnhwd', x, kernel.astype(x.dtype))


def _mix(branches: jax.Array, weights: jax.Array) -> jax.Array:
  """sum_{s,k} weights[s, k, e] * branches[s, k, e?, ...] for every target e.

  `branches` is (S, K, N, H, W, C) for ops shared by all edges of a source, or (S, K, E, N, H, W,
  C) for per-edge ops; `weights` is (S, K, E). Returns (E, N, H, W, C).
  """
  if branches.ndim == 6:
    return jnp.einsum('sknhwc,ske->enhwc', branches, weights.astype(branches.dtype))
  return jnp.einsum('skenhwc,ske->enhwc', branches, weights.astype(branches.dtype))


EDGE_FORMS = ('separable', 'dense')


def resolve_edge_form(form: str, platform: str) -> str:
  """'auto' is 'dense' on GPU (fewer, larger operations and less memory traffic in the H100/H200
  compiles) and 'separable' elsewhere: on the CPU it has the fewest flops and the compiled
  depthwise kernels; on the TPU the dense form's 5- and 6-dimensional tensors compile 4x slower and
  move more bytes (docs/speed.md has the deviceless compiles of both)."""
  if form == 'auto':
    return 'dense' if platform == 'gpu' else 'separable'
  return form


# The convolutional ops' stacked kernels, in the order their first blocks are stacked.
_FIRST_BLOCK = ('sep_conv_3x3', 'sep_conv_5x5', 'dil_conv_3x3')
_SECOND_BLOCK = ('sep_conv_3x3', 'sep_conv_5x5')


def _edge_params(module: nn.Module, s: int, e: int, c: int, stride: int) -> dict[str, jax.Array]:
  """The weights of the edges from `s` sources to `e` targets, each stacked (S, E, ...), with the
  reference's shapes (so the supernet has its parameter count) and in one creation order (Linen
  draws them in that order: both forms start from the same weights)."""

  def edge_param(name, shape, fan_in):
    return module.param(name, uniform_fan_in_init(fan_in), (s, e, *shape))

  params = {
    'sep_conv_3x3_depthwise_1': edge_param('sep_conv_3x3_depthwise_1', (3, 3, c), 9),
    'sep_conv_5x5_depthwise_1': edge_param('sep_conv_5x5_depthwise_1', (5, 5, c), 25),
    'dil_conv_3x3_depthwise': edge_param('dil_conv_3x3_depthwise', (3, 3, c), 9),
    'sep_conv_3x3_pointwise_1': edge_param('sep_conv_3x3_pointwise_1', (c, c), c),
    'sep_conv_5x5_pointwise_1': edge_param('sep_conv_5x5_pointwise_1', (c, c), c),
    'dil_conv_3x3_pointwise': edge_param('dil_conv_3x3_pointwise', (c, c), c),
    'dil_conv_5x5_depthwise': edge_param('dil_conv_5x5_depthwise', (5, 5, c), 25),
    'dil_conv_5x5_pointwise': edge_param('dil_conv_5x5_pointwise', (c, c), c),
    'sep_conv_3x3_depthwise_2': edge_param('sep_conv_3x3_depthwise_2', (3, 3, c), 9),
    'sep_conv_5x5_depthwise_2': edge_param('sep_conv_5x5_depthwise_2', (5, 5, c), 25),
    'sep_conv_3x3_pointwise_2': edge_param('sep_conv_3x3_pointwise_2', (c, c), c),
    'sep_conv_5x5_pointwise_2': edge_param('sep_conv_5x5_pointwise_2', (c, c), c),
  }
  if stride == 2:
    params['skip_connect_reduce_a'] = edge_param('skip_connect_reduce_a', (c, c // 2), c)
    params['skip_connect_reduce_b'] = edge_param('skip_connect_reduce_b', (c, c // 2), c)
  return params


def _stacked_kernels(p: dict[str, jax.Array], block: int) -> tuple[jax.Array, jax.Array]:
  """A block's depthwise kernels as 5x5 ones and its pointwise kernels, ops stacked op-major:
  (S, K E, 5, 5, C) and (S, K E, C, C), K the ops of `_FIRST_BLOCK` (block 1) or
  `_SECOND_BLOCK` (block 2)."""
  ops = _FIRST_BLOCK if block == 1 else _SECOND_BLOCK
  suffix = {'sep_conv_3x3': '_1', 'sep_conv_5x5': '_1', 'dil_conv_3x3': ''}
  suffix = suffix if block == 1 else {op: '_2' for op in ops}
  depthwise = [p[f'{op}_depthwise{suffix[op]}'] for op in ops]
  depthwise = [
    _pad_to_5x5(k, dilated=op.startswith('dil')) if k.shape[2] == 3 else k
    for op, k in zip(ops, depthwise, strict=True)
  ]
  pointwise = [p[f'{op}_pointwise{suffix[op]}'] for op in ops]
  return _stack_ops(depthwise), _stack_ops(pointwise)


def _stack_ops(kernels):  # [(S, E, ...)] -> (S, len * E, ...), op-major
  stacked = jnp.stack(kernels, axis=1)
  return stacked.reshape(stacked.shape[0], -1, *stacked.shape[3:])


def _skip_reduce_kernel(p: dict[str, jax.Array]) -> jax.Array:
  """skip_connect on a strided edge is a FactorizedReduce per edge: two 1x1 stride-2
  convolutions, the second on the input shifted by one pixel, concatenated. As one contraction
  over both halves: (S, E, 2, C, C), zero blocks keeping the halves apart."""
  ka, kb = p['skip_connect_reduce_a'], p['skip_connect_reduce_b']
  zeros = jnp.zeros_like(ka)
  return jnp.stack([jnp.concatenate([ka, zeros], -1), jnp.concatenate([zeros, kb], -1)], axis=2)


class EdgeGroup(nn.Module):
  """Every mixed edge leaving `S` source states of one shape, computed together.

  Called with x: (S, N, H, W, C), the sources; weights: (S, E, O), the mixing weights of the edge
  from source s to the e-th target (O ops in PRIMITIVES order). Returns (E, N, H', W', C): for
  each target, the sum over the sources of their mixed ops. `stride` 2 is a reduction cell's
  input edges. Each separable and dilated convolution runs as a depthwise convolution and a
  pointwise contraction (the CPU's form: few flops).
  """

  num_targets: int
  stride: int = 1
  depthwise_impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array, weights: jax.Array, train: bool) -> jax.Array:
    s, e, st = x.shape[0], self.num_targets, self.stride
    c = x.shape[-1]
    p = _edge_params(self, s, e, c, st)
    w = jnp.moveaxis(weights, 2, 1)  # (S, O, E): op-major, like the stacked branches

    def bn(y, name):
      return BatchNorm(affine=False, branch_dims=2, name=name)(y, train)

    def per_edge(y, ops):  # (S, len(ops) * E, ...) -> (S, len(ops), E, ...)
      return y.reshape(s, len(ops), e, *y.shape[2:])

    def op_weights(*names):
      return w[:, np.asarray([_OP[n] for n in names])]

    # Parameter-free ops: the same tensors on every edge of a source.
    pooled = jnp.stack([max_pool_3x3(x, st), avg_pool_3x3(x, st)], axis=1)
    shared = bn(pooled, 'pool_bn')  # (S, 2, N, H', W', C)
    shared_ops = ('max_pool_3x3', 'avg_pool_3x3')
    if st == 1:
      shared = jnp.concatenate([shared, x[:, None]], axis=1)
      shared_ops += ('skip_connect',)
    out = _mix(shared, op_weights(*shared_ops))

    # The convolutional ops' first blocks all start from relu(x).
    r = nn.relu(x)
    impl = self.depthwise_impl
    k5, p5 = _stacked_kernels(p, 1)
    first = stacked_depthwise(r, k5, stride=st, dilation=1, padding=2, impl=impl)
    first = bn(_pointwise(first, p5), 'conv_bn_1')  # (S, 3E, ...): sep3, sep5, dil3
    dil5 = stacked_depthwise(
      r, p['dil_conv_5x5_depthwise'], stride=st, dilation=2, padding=4, impl=impl
    )
    dil5 = bn(_pointwise(dil5, p['dil_conv_5x5_pointwise']), 'dil5_bn')
    out = out + _mix(per_edge(first[:, 2 * e :], ['d3']), op_weights('dil_conv_3x3'))
    out = out + _mix(per_edge(dil5, ['d5']), op_weights('dil_conv_5x5'))

    # The second block of both separable convolutions, stride 1, on every (source, edge) branch.
    sep = nn.relu(first[:, : 2 * e])
    branches = sep.reshape(s * 2 * e, *sep.shape[2:])
    k2, p2 = _stacked_kernels(p, 2)
    sep = stacked_depthwise(
      branches, k2.reshape(s * 2 * e, 1, 5, 5, c), stride=1, dilation=1, padding=2, impl=impl
    )
    sep = bn(_pointwise(sep.reshape(s, 2 * e, *sep.shape[2:]), p2), 'conv_bn_2')
    out = out + _mix(per_edge(sep, ['s3', 's5']), op_weights('sep_conv_3x3', 'sep_conv_5x5'))

    if st == 2:
      halves = jnp.stack(
        [strided_pixels(r, 2, 0), strided_pixels(r, 2, 1)], axis=-2
      )  # (S, N, H', W', 2, C)
      kernel = _skip_reduce_kernel(p).astype(r.dtype)
      reduced = bn(jnp.einsum('snhwjc,sejcd->senhwd', halves, kernel), 'skip_bn')
      out = out + _mix(reduced[:, None], op_weights('skip_connect'))
    return out


def _product_kernel(depthwise: jax.Array, pointwise: jax.Array, dtype) -> jax.Array:
  """(S, M, k, k, C) depthwise and (S, M, C, D) pointwise kernels as the (k, k, C, S M D) kernel
  whose output channel (s, m, d) is the filter depthwise[s, m] * pointwise[s, m, :, d]: a
  depthwise convolution followed by a pointwise one is the dense convolution with the product
  kernel (grouped by source, or by branch). The product is taken at least in the compute dtype's
  precision (float64 inputs: float64; bfloat16: float32)."""
  dtype = jnp.promote_types(depthwise.dtype, dtype)
  kernel = jnp.einsum('smijc,smcd->ijcsmd', depthwise.astype(dtype), pointwise.astype(dtype))
  k, c = kernel.shape[0], kernel.shape[2]
  return kernel.reshape(k, k, c, -1)


def _grouped_conv(x, kernel, groups, stride, padding, dilation=1):
  """NHWC convolution with `groups` feature groups and symmetric zero padding."""
  return jax.lax.conv_general_dilated(
    x,
    kernel.astype(x.dtype),
    (stride, stride),
    [(padding, padding)] * 2,
    rhs_dilation=(dilation, dilation),
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    feature_group_count=groups,
  )


def _fold(x: jax.Array) -> jax.Array:
  """(N, H, W, B..., C) -> (N, H, W, B... C): the branches folded into channels."""
  return x.reshape(*x.shape[:3], -1)


def _spatial(fn, x: jax.Array, *args) -> jax.Array:
  """A per-channel `fn` of (N, H, W, C) applied to (N, H, W, B..., C)."""
  y = fn(_fold(x), *args)
  return y.reshape(*y.shape[:3], *x.shape[3:])


class DenseEdgeGroup(nn.Module):
  """`EdgeGroup`'s edges with branches laid out after the pixels, and every separable or dilated
  convolution as one dense convolution with the product of its depthwise and pointwise kernels
  (accelerators' form: more flops, a third of the memory traffic, far fewer operations).

  Called with x: (N, H, W, S, C) and weights (S, E, O); returns (N, H', W', E, C). The same
  weights, BatchNorm statistics (and their shapes) and mathematics as `EdgeGroup`.
  """

  num_targets: int
  stride: int = 1
  bn_moments: str = 'two_pass'

  @nn.compact
  def __call__(self, x: jax.Array, weights: jax.Array, train: bool) -> jax.Array:
    s, c = x.shape[3], x.shape[-1]
    e, st = self.num_targets, self.stride
    p = _edge_params(self, s, e, c, st)

    def bn(y, name):
      return BatchNorm(
        affine=False,
        reduce_axes=(0, 1, 2),
        moments=self.bn_moments,
        fused_backward=True,
        name=name,
      )(y, train)

    def op_weights(*names):  # (S, len(names), E)
      return jnp.moveaxis(weights[:, :, np.asarray([_OP[n] for n in names])], 2, 1).astype(x.dtype)

    def mix(branches, names):  # (N, H', W', S, K[, E], C) -> (N, H', W', E, C)
      # Weighted sums over the few (source, op) pairs, not matrix products: elementwise work that
      # fuses with the BatchNorms before it instead of a GEMM reading materialised branches.
      w = op_weights(*names)[..., None]  # (S, K, E, 1)
      if branches.ndim == 6:
        return jnp.sum(branches[:, :, :, :, :, None] * w, axis=(3, 4))
      return jnp.sum(branches * w, axis=(3, 4))

    # Parameter-free ops: the same tensors on every edge of a source.
    pooled = jnp.stack([_spatial(max_pool_3x3, x, st), _spatial(avg_pool_3x3, x, st)], axis=4)
    shared = bn(pooled, 'pool_bn')  # (N, H', W', S, 2, C)
    shared_ops = ('max_pool_3x3', 'avg_pool_3x3')
    if st == 1:
      shared = jnp.concatenate([shared, x[:, :, :, :, None]], axis=4)
      shared_ops += ('skip_connect',)
    out = mix(shared, shared_ops)

    r = nn.relu(x)
    k5, p5 = _stacked_kernels(p, 1)
    first = _grouped_conv(
      _fold(r), _product_kernel(k5, p5, x.dtype), s, st, 2
    )  # (N, H', W', S 3E C)
    first = bn(first.reshape(*first.shape[:3], s, 3 * e, c), 'conv_bn_1')
    kernel = _product_kernel(p['dil_conv_5x5_depthwise'], p['dil_conv_5x5_pointwise'], x.dtype)
    dil5 = _grouped_conv(_fold(r), kernel, s, st, 4, 2)
    dil5 = bn(dil5.reshape(*dil5.shape[:3], s, e, c), 'dil5_bn')
    out = out + mix(first[:, :, :, :, None, 2 * e :], ('dil_conv_3x3',))
    out = out + mix(dil5[:, :, :, :, None], ('dil_conv_5x5',))

    k2, p2 = _stacked_kernels(p, 2)
    sep = nn.relu(first[:, :, :, :, : 2 * e])
    sep = _grouped_conv(_fold(sep), _product_kernel(k2, p2, x.dtype), s * 2 * e, 1, 2)
    sep = bn(sep.reshape(*sep.shape[:3], s, 2 * e, c), 'conv_bn_2')
    out = out + mix(sep.reshape(*sep.shape[:4], 2, e, c), _SECOND_BLOCK)

    if st == 2:
      halves = jnp.stack(
        [_spatial(strided_pixels, r, 2, 0), _spatial(strided_pixels, r, 2, 1)], axis=4
      )  # (N, H', W', S, 2, C)
      kernel = _skip_reduce_kernel(p).astype(r.dtype)
      reduced = bn(jnp.einsum('nhwsjc,sejcd->nhwsed', halves, kernel), 'skip_bn')
      out = out + mix(reduced[:, :, :, :, None], ('skip_connect',))
    return out


class SearchCell(nn.Module):
  """A DARTS search cell: `steps` nodes, each the sum of mixed ops over all earlier states.

  `edge_form`: 'separable' (`EdgeGroup`) or 'dense' (`DenseEdgeGroup`), the same mathematics.
  """

  features: int
  reduction: bool
  reduction_prev: bool
  steps: int = 4
  multiplier: int = 4
  depthwise_impl: str = 'auto'
  partial_channels: int = 1
  edge_form: str = 'separable'
  bn_moments: str = 'two_pass'

  @nn.compact
  def __call__(self, s0: jax.Array, s1: jax.Array, weights: jax.Array, train: bool) -> jax.Array:
    c = self.features
    if self.reduction_prev:
      s0 = FactorizedReduce(c, affine=False, name='preprocess0')(s0, train)
    else:
      s0 = ReLUConvBN(c, affine=False, name='preprocess0')(s0, train)
    s1 = ReLUConvBN(c, affine=False, name='preprocess1')(s1, train)

    if self.edge_form == 'dense':
      return self._dense_nodes(s0, s1, weights, train)
    k = self.partial_channels
    states = [s0, s1]
    nodes: list[jax.Array | None] = [None] * self.steps
    for group in edge_groups(self.steps):
      sources = jnp.stack([states[i] for i in group.sources])
      stride = 2 if self.reduction and group.sources[0] < 2 else 1
      mixed = EdgeGroup(len(group.targets), stride, self.depthwise_impl, name=group.name)
      out = self._partial(mixed, sources, weights[group.edges], stride, train, dense=False)
      for i, target in enumerate(group.targets):
        nodes[target] = out[i] if nodes[target] is None else nodes[target] + out[i]
      if len(states) - 2 < self.steps:
        # The next node is complete: every group that adds into it came before (the last group
        # completes the last node).
        node = len(states) - 2
        nodes[node] = nodes[node] if k == 1 else channel_shuffle(nodes[node], k)
        states.append(nodes[node])
    return jnp.concatenate(nodes[self.steps - self.multiplier :], axis=-1)

  def _dense_nodes(self, s0, s1, weights, train):
    """The dense form's nodes as one (N, H, W, steps, C) array: each group adds into the slice of
    nodes it feeds (always nodes i..steps-1) and reads its source node from it, and the cell's
    output, the last `multiplier` nodes side by side, is a reshape of it (no concatenation)."""
    k = self.partial_channels
    nodes = None
    for group in edge_groups(self.steps):
      if group.sources == (0, 1):
        sources = jnp.stack([s0, s1], axis=3)
      else:
        node = group.sources[0] - 2
        sources = nodes[:, :, :, node : node + 1]
        if k > 1:  # its last group has added into the node: shuffle it before it is read
          sources = channel_shuffle(sources, k)
          nodes = nodes.at[:, :, :, node : node + 1].set(sources)
      stride = 2 if self.reduction and group.sources[0] < 2 else 1
      mixed = DenseEdgeGroup(len(group.targets), stride, self.bn_moments, name=group.name)
      out = self._partial(mixed, sources, weights[group.edges], stride, train, dense=True)
      first = group.targets[0]
      nodes = out if nodes is None else nodes.at[:, :, :, first:].add(out)
    if k > 1:
      nodes = nodes.at[:, :, :, -1:].set(channel_shuffle(nodes[:, :, :, -1:], k))
    kept = nodes[:, :, :, self.steps - self.multiplier :]
    return kept.reshape(*kept.shape[:3], -1)

  def _partial(self, mixed, sources, group_weights, stride, train, *, dense):
    """The group's mixed edges; PC-DARTS (K > 1) sends only the first C/K channels of the sources
    through them and the rest around them, weighted by the edge betas."""
    k = self.partial_channels
    if k == 1:
      return mixed(sources, group_weights, train)
    part = self.features // k
    bypass = sources[..., part:]
    if stride == 2:
      bypass = _spatial(max_pool_2x2, bypass) if dense else max_pool_2x2(bypass)
    edge_weights = group_weights.sum(-1).astype(bypass.dtype)  # the betas
    subscripts = 'nhwsc,se->nhwec' if dense else 'snhwc,se->enhwc'
    return jnp.concatenate(
      [
        mixed(sources[..., :part], group_weights, train),
        jnp.einsum(subscripts, bypass, edge_weights),
      ],
      axis=-1,
    )


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
    partial_channels: K of PC-DARTS (1/K of each edge's channels go through the ops); 1 is DARTS.
    edge_form: how a cell's edges are computed, 'separable' or 'dense' (`SearchCell`).
    bn_moments: how the dense form's BatchNorms compute batch statistics (`batch_moments`).
    compute_dtype: the cells' activations ('float32' or 'bfloat16'); weights, the stem, the
      classifier and BatchNorm statistics stay float32 (each kernel is cast where it is used).
  """

  num_classes: int
  channels: int = 16
  layers: int = 8
  steps: int = 4
  multiplier: int = 4
  stem_multiplier: int = 3
  depthwise_impl: str = 'auto'
  partial_channels: int = 1
  edge_form: str = 'separable'
  bn_moments: str = 'two_pass'
  compute_dtype: str = 'float32'

  @nn.compact
  def __call__(
    self, images: jax.Array, arch_weights: dict[str, jax.Array], train: bool = True
  ) -> jax.Array:
    c = self.channels
    x = Conv(self.stem_multiplier * c, (3, 3), padding=(1, 1), name='stem_conv')(images)
    s0 = s1 = BatchNorm(affine=True, name='stem_bn')(x, train)
    if self.compute_dtype != 'float32':  # float32 keeps the input's precision (float64 in tests)
      s0 = s1 = s0.astype(self.compute_dtype)
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
        self.partial_channels,
        self.edge_form,
        self.bn_moments,
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
