"""The DARTS supernet written edge by edge, as the reference defines it: the test oracle.

Each of a cell's edges is a MixedOp that runs its own 7 ops (`none` contributes exactly zero), so
the program is large; `unreal_nas_jax.models.supernet` computes the same function per source
state, and `to_per_edge_variables` maps its parameters and BatchNorm statistics onto this one.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from unreal_nas_jax.models.layers import (
  BatchNorm,
  Conv,
  FactorizedReduce,
  ReLUConvBN,
  avg_pool_3x3,
  channel_shuffle,
  make_op,
  max_pool_2x2,
  max_pool_3x3,
  torch_default_bias_init,
  torch_default_init,
)
from unreal_nas_jax.space.primitives import PRIMITIVES, edge_groups, edge_list, reduction_indices


class PoolBN(nn.Module):
  """A search-network pool: 3x3 max or average pool, then a non-affine BatchNorm."""

  kind: str
  stride: int

  @nn.compact
  def __call__(self, x, train):
    x = (max_pool_3x3 if self.kind == 'max' else avg_pool_3x3)(x, self.stride)
    return BatchNorm(affine=False, name='bn')(x, train)


class MixedOp(nn.Module):
  """sum_k w_k * op_k(x) over the candidate ops.

  With `partial_channels` K > 1 (PC-DARTS), as the reference writes it: the ops see the first C/K
  channels, the rest bypass them (2x2 max pool when strided) weighted by the edge's beta (the sum
  of its weights), then the two are concatenated and channel-shuffled, on this edge alone.
  """

  features: int
  stride: int
  depthwise_impl: str = 'xla'
  partial_channels: int = 1

  @nn.compact
  def __call__(self, x, weights, train):
    k = self.partial_channels
    if k > 1:
      part = x.shape[-1] // k
      mixed = MixedOp(part, self.stride, self.depthwise_impl, name='partial')(
        x[..., :part], weights, train
      )
      rest = x[..., part:]
      rest = max_pool_2x2(rest) if self.stride == 2 else rest
      return channel_shuffle(jnp.concatenate([mixed, weights.sum() * rest], axis=-1), k)
    out = None
    for k, name in enumerate(PRIMITIVES):
      if name == 'none':
        continue
      if name.endswith('pool_3x3'):
        op = PoolBN(name[:3], self.stride, name=name)
      else:
        op = make_op(
          name, self.features, self.stride, affine=False, depthwise_impl=self.depthwise_impl
        )
      y = weights[k] * op(x, train)
      out = y if out is None else out + y
    return out


class PerEdgeCell(nn.Module):
  features: int
  reduction: bool
  reduction_prev: bool
  steps: int = 4
  multiplier: int = 4
  depthwise_impl: str = 'xla'
  partial_channels: int = 1

  @nn.compact
  def __call__(self, s0, s1, weights, train):
    c = self.features
    if self.reduction_prev:
      s0 = FactorizedReduce(c, affine=False, name='preprocess0')(s0, train)
    else:
      s0 = ReLUConvBN(c, affine=False, name='preprocess0')(s0, train)
    s1 = ReLUConvBN(c, affine=False, name='preprocess1')(s1, train)
    states = [s0, s1]
    for node in range(self.steps):
      total = None
      for e, (src, dst) in enumerate(edge_list(self.steps)):
        if dst == node:
          stride = 2 if self.reduction and src < 2 else 1
          y = MixedOp(c, stride, self.depthwise_impl, self.partial_channels, name=f'edge_{e}')(
            states[src], weights[e], train
          )
          total = y if total is None else total + y
      states.append(total)
    return jnp.concatenate(states[2 + self.steps - self.multiplier :], axis=-1)


class PerEdgeNetwork(nn.Module):
  num_classes: int
  channels: int = 16
  layers: int = 8
  steps: int = 4
  multiplier: int = 4
  stem_multiplier: int = 3
  depthwise_impl: str = 'xla'
  partial_channels: int = 1

  @nn.compact
  def __call__(self, images, arch_weights, train=True):
    c = self.channels
    x = Conv(self.stem_multiplier * c, (3, 3), padding=(1, 1), name='stem_conv')(images)
    s0 = s1 = BatchNorm(affine=True, name='stem_bn')(x, train)
    reduction_prev = False
    for i in range(self.layers):
      reduction = i in reduction_indices(self.layers)
      if reduction:
        c *= 2
      cell = PerEdgeCell(
        c, reduction, reduction_prev, self.steps, self.multiplier, self.depthwise_impl,
        self.partial_channels, name=f'cell_{i}',
      )  # fmt: skip
      s0, s1 = s1, cell(s0, s1, arch_weights['reduce' if reduction else 'normal'], train)
      reduction_prev = reduction
    pooled = jnp.mean(s1, axis=(1, 2))
    return nn.Dense(
      self.num_classes,
      kernel_init=torch_default_init,
      bias_init=torch_default_bias_init(pooled.shape[-1]),
      name='classifier',
    )(pooled)


# Fused parameter name -> (per-edge op, path inside the op's module).
_CONV_PARAMS = {
  'sep_conv_3x3_depthwise_1': ('sep_conv_3x3', ('Depthwise_0', 'kernel')),
  'sep_conv_3x3_pointwise_1': ('sep_conv_3x3', ('Pointwise_0', 'kernel')),
  'sep_conv_3x3_depthwise_2': ('sep_conv_3x3', ('Depthwise_1', 'kernel')),
  'sep_conv_3x3_pointwise_2': ('sep_conv_3x3', ('Pointwise_1', 'kernel')),
  'sep_conv_5x5_depthwise_1': ('sep_conv_5x5', ('Depthwise_0', 'kernel')),
  'sep_conv_5x5_pointwise_1': ('sep_conv_5x5', ('Pointwise_0', 'kernel')),
  'sep_conv_5x5_depthwise_2': ('sep_conv_5x5', ('Depthwise_1', 'kernel')),
  'sep_conv_5x5_pointwise_2': ('sep_conv_5x5', ('Pointwise_1', 'kernel')),
  'dil_conv_3x3_depthwise': ('dil_conv_3x3', ('Depthwise_0', 'kernel')),
  'dil_conv_3x3_pointwise': ('dil_conv_3x3', ('Pointwise_0', 'kernel')),
  'dil_conv_5x5_depthwise': ('dil_conv_5x5', ('Depthwise_0', 'kernel')),
  'dil_conv_5x5_pointwise': ('dil_conv_5x5', ('Pointwise_0', 'kernel')),
  'skip_connect_reduce_a': ('skip_connect', ('Pointwise_0', 'kernel')),
  'skip_connect_reduce_b': ('skip_connect', ('Pointwise_1', 'kernel')),
}
# Fused BatchNorm -> [(index range along its op-major branch axis, per-edge op, BN path)].
_BN_STATS = {
  'conv_bn_1': [
    (0, 'sep_conv_3x3', ('BatchNorm_0',)),
    (1, 'sep_conv_5x5', ('BatchNorm_0',)),
    (2, 'dil_conv_3x3', ('BatchNorm_0',)),
  ],
  'conv_bn_2': [(0, 'sep_conv_3x3', ('BatchNorm_1',)), (1, 'sep_conv_5x5', ('BatchNorm_1',))],
  'dil5_bn': [(0, 'dil_conv_5x5', ('BatchNorm_0',))],
  'skip_bn': [(0, 'skip_connect', ('BatchNorm_0',))],
}


def _set(tree, path, value):
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def to_per_edge_variables(variables, steps: int, partial_channels: int = 1):
  """{'params', 'batch_stats'} of the fused SearchNetwork as the per-edge network's variables."""
  # numpy: hundreds of small slices, which jax would dispatch (and compile) one by one.
  params, stats = jax.device_get((variables['params'], variables['batch_stats']))
  out_params, out_stats = {}, {}
  for name in params:
    if not name.startswith('cell_'):
      out_params[name] = params[name]
      if name in stats:
        out_stats[name] = stats[name]
      continue
    cell_p, cell_s = params[name], stats[name]
    new_p = {k: cell_p[k] for k in ('preprocess0', 'preprocess1')}
    new_s = {k: cell_s[k] for k in ('preprocess0', 'preprocess1')}
    for group in edge_groups(steps):
      gp, gs = cell_p[group.name], cell_s[group.name]
      for si in range(len(group.sources)):
        for ti in range(len(group.targets)):
          edge = f'edge_{int(group.edges[si, ti])}'
          edge = (edge, 'partial') if partial_channels > 1 else (edge,)
          for pname, (op, path) in _CONV_PARAMS.items():
            if pname in gp:
              value = gp[pname][si, ti]
              if path[0].startswith('Pointwise'):
                value = value[None, None]  # a 1x1 convolution's (1, 1, C_in, C_out) kernel
              _set(new_p, (*edge, op, *path), value)
          for bname, parts in _BN_STATS.items():
            if bname not in gs:
              continue
            n_edges = len(group.targets)
            for block, op, path in parts:
              for stat in ('mean', 'var'):
                _set(new_s, (*edge, op, *path, stat), gs[bname][stat][si, block * n_edges + ti])
          for j, pool in enumerate(('max_pool_3x3', 'avg_pool_3x3')):
            for stat in ('mean', 'var'):
              _set(new_s, (*edge, pool, 'bn', stat), gs['pool_bn'][stat][si, j])
    out_params[name], out_stats[name] = new_p, new_s
  return {'params': out_params, 'batch_stats': out_stats}
