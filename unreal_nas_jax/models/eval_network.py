"""The DARTS evaluation networks a found cell is retrained in (spec section 6).

`NetworkCIFAR` and `NetworkImageNet` stack a genotype's discrete cells with affine BatchNorm, an
auxiliary head on the second reduction cell's output (training only) and drop path on every
non-identity op. Parameter counts follow the reference convention (auxiliary head excluded):
`count_params(params)`; multiply-adds of the inference graph: `count_madds(...)`.

Drop path needs a `'drop_path'` RNG in training; its probability is an argument (a traced
scalar), so the per-epoch schedule never recompiles. With probability 0 the mask is all ones and
the op output is unchanged bit for bit.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from unreal_nas_jax.data.datasets import DATASETS
from unreal_nas_jax.models.layers import (
  BatchNorm,
  Conv,
  Depthwise,
  FactorizedReduce,
  Identity,
  Pointwise,
  ReLUConvBN,
  make_op,
  torch_default_bias_init,
  torch_default_init,
)
from unreal_nas_jax.space.genotypes import Genotype
from unreal_nas_jax.space.primitives import reduction_indices

AUXILIARY = 'auxiliary_head'


def drop_path(x: jax.Array, drop_prob: jax.Array, key: jax.Array) -> jax.Array:
  """Zeroes whole examples with probability `drop_prob` and rescales the rest by 1/keep."""
  keep = 1.0 - jnp.asarray(drop_prob, jnp.float32)
  mask = jax.random.bernoulli(key, keep, (x.shape[0], 1, 1, 1))
  return jnp.where(mask, x / keep.astype(x.dtype), jnp.zeros((), x.dtype))


def _dense(features: int, fan_in: int, name: str) -> nn.Dense:
  return nn.Dense(
    features,
    kernel_init=torch_default_init,
    bias_init=torch_default_bias_init(fan_in),
    name=name,
  )


class EvalCell(nn.Module):
  """A discrete cell: node i+2 = op(2i)(state) + op(2i+1)(state), output = concat of nodes."""

  genotype: Genotype
  features: int
  reduction: bool
  reduction_prev: bool
  depthwise_impl: str = 'auto'

  @nn.compact
  def __call__(self, s0, s1, drop_prob, train: bool) -> jax.Array:
    c = self.features
    if self.reduction_prev:
      s0 = FactorizedReduce(c, name='preprocess0')(s0, train)
    else:
      s0 = ReLUConvBN(c, name='preprocess0')(s0, train)
    s1 = ReLUConvBN(c, name='preprocess1')(s1, train)
    genes = self.genotype.reduce if self.reduction else self.genotype.normal
    concat = self.genotype.reduce_concat if self.reduction else self.genotype.normal_concat
    states = [s0, s1]
    for node in range(len(genes) // 2):
      total = None
      for j in (2 * node, 2 * node + 1):
        name, source = genes[j]
        stride = 2 if self.reduction and source < 2 else 1
        op = make_op(
          name,
          c,
          stride,
          affine=True,
          depthwise_impl=self.depthwise_impl,
          module_name=f'op_{j}_{name}',
        )
        h = op(states[source], train)
        if train and not isinstance(op, Identity):
          h = drop_path(h, drop_prob, self.make_rng('drop_path'))
        total = h if total is None else total + h
      states.append(total)
    return jnp.concatenate([states[i] for i in concat], axis=-1)


class AuxiliaryHead(nn.Module):
  """ReLU, 5x5 average pool (stride 3 CIFAR, 2 ImageNet), 1x1 conv 128, BN, ReLU, 2x2 conv 768,
  BN (CIFAR only), ReLU, dense."""

  num_classes: int
  pool_stride: int
  bn_after_768: bool

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if min(x.shape[1:3]) < 5:
      raise ValueError(
        f'the auxiliary head needs a feature map of at least 5x5, got {x.shape[1]}x{x.shape[2]} '
        '(images too small for this network); use larger images or auxiliary=False'
      )
    x = nn.relu(x)
    x = nn.avg_pool(x, (5, 5), strides=(self.pool_stride, self.pool_stride), padding='VALID')
    x = Pointwise(128)(x)
    x = nn.relu(BatchNorm()(x, train))
    x = Conv(768, (2, 2))(x)
    if self.bn_after_768:
      x = BatchNorm()(x, train)
    x = nn.relu(x).reshape(x.shape[0], -1)
    return _dense(self.num_classes, x.shape[-1], 'classifier')(x)


class _RepeatedCell(nn.Module):
  """Scan body: one normal cell whose inputs and output have the same shapes as its neighbours'."""

  genotype: Genotype
  features: int
  depthwise_impl: str
  train: bool

  @nn.compact
  def __call__(self, carry, drop_prob):
    s0, s1 = carry
    out = EvalCell(self.genotype, self.features, False, False, self.depthwise_impl, name='cell')(
      s0, s1, drop_prob, self.train
    )
    return (s1, out), None


def cell_runs(
  genotype: Genotype, layers: int, auxiliary_at: int | None = None
) -> list[tuple[int, int]]:
  """[start, end) runs of cells that can share one traced body: normal cells whose two inputs
  and output all have the same shape, so the scan carry keeps its shape. Within a stage that
  holds from the third cell on (the first reads the previous stage's output through a
  FactorizedReduce, the second the stem or that first cell's wider input), except that a cell
  reading a reduction cell's output is steady only where the reduction cell concatenates as
  many nodes as the normal cell (NASNet: 3 and 5). A run ends at the cell the auxiliary head
  reads."""
  reductions = reduction_indices(layers)
  # Output channels of each cell in units of the network's C (the stem plays no part: cells 0
  # and 1 never join a run).
  widths, c = [], 1
  for i in range(layers):
    c *= 2 if i in reductions else 1
    concat = genotype.reduce_concat if i in reductions else genotype.normal_concat
    widths.append(len(concat) * c)

  def steady(j):  # a normal cell whose inputs and output have one shape
    return (
      j >= 2
      and j not in reductions
      and j - 1 not in reductions
      and widths[j - 2] == widths[j - 1] == widths[j]
    )

  runs, start = [], 0
  for i in range(1, layers + 1):
    joins = i < layers and steady(i) and steady(i - 1) and i - 1 != auxiliary_at
    if not joins:
      runs.append((start, i))
      start = i
  return runs


class EvalNetwork(nn.Module):
  """Shared by both networks: the cell stack, the auxiliary head and the classifier.

  `scan_cells` runs every stretch of identical cells (`cell_runs`) as one `nn.scan` over
  stacked parameters, so the 20-cell CIFAR network traces 9 cell bodies instead of 20; the
  arithmetic is the same as with `scan_cells=False`, which `count_madds` uses to count it.
  """

  genotype: Genotype
  num_classes: int
  channels: int
  layers: int
  auxiliary: bool = True
  depthwise_impl: str = 'auto'
  scan_cells: bool = True

  def stem(self, images, train):  # -> (s0, s1, channels of the cells' first C, reduction_prev)
    raise NotImplementedError

  def aux_head(self) -> AuxiliaryHead:
    raise NotImplementedError

  def pool(self, x: jax.Array) -> jax.Array:
    raise NotImplementedError

  @nn.compact
  def __call__(self, images: jax.Array, drop_prob=0.0, train: bool = False):
    """Returns logits, or (logits, auxiliary logits or None) when `train`."""
    drop_prob = jnp.asarray(drop_prob, jnp.float32)
    s0, s1, c, reduction_prev = self.stem(images, train)
    reductions = reduction_indices(self.layers)
    auxiliary_at = 2 * self.layers // 3
    logits_aux = None
    for start, end in cell_runs(self.genotype, self.layers, auxiliary_at):
      for i in range(start, end):
        if i in reductions:
          c *= 2
      if self.scan_cells and end - start > 1:
        body = nn.scan(
          _RepeatedCell,
          variable_axes={'params': 0, 'batch_stats': 0},
          split_rngs={'params': True, 'drop_path': True},
          in_axes=nn.broadcast,
          length=end - start,
        )
        (s0, s1), _ = body(
          self.genotype, c, self.depthwise_impl, train, name=f'cells_{start}_{end - 1}'
        )((s0, s1), drop_prob)
        reduction_prev = False
      else:
        for i in range(start, end):
          reduction = i in reductions
          cell = EvalCell(
            self.genotype, c, reduction, reduction_prev, self.depthwise_impl, name=f'cell_{i}'
          )
          s0, s1 = s1, cell(s0, s1, drop_prob, train)
          reduction_prev = reduction
      if end - 1 == auxiliary_at and self.auxiliary and train:
        logits_aux = self.aux_head()(s1, train)
    pooled = self.pool(s1)
    logits = _dense(self.num_classes, pooled.shape[-1], 'classifier')(pooled)
    return (logits, logits_aux) if train else logits


class NetworkCIFAR(EvalNetwork):
  """Stem 3x3 conv 3 -> 3C + BN; global average pool; auxiliary head at 8x8 (for 32x32 input)."""

  stem_multiplier: int = 3

  def stem(self, images, train):
    x = Conv(self.stem_multiplier * self.channels, (3, 3), padding=(1, 1), name='stem_conv')(images)
    x = BatchNorm(name='stem_bn')(x, train)
    return x, x, self.channels, False

  def aux_head(self):
    return AuxiliaryHead(self.num_classes, pool_stride=3, bn_after_768=True, name=AUXILIARY)

  def pool(self, x):
    return jnp.mean(x, axis=(1, 2))


class NetworkImageNet(EvalNetwork):
  """Stems 224 -> 56 -> 28 (three stride-2 3x3 convs), 7x7 average pool before the classifier."""

  def stem(self, images, train):
    c = self.channels
    x = Conv(c // 2, (3, 3), (2, 2), (1, 1), name='stem0_conv0')(images)
    x = nn.relu(BatchNorm(name='stem0_bn0')(x, train))
    x = Conv(c, (3, 3), (2, 2), (1, 1), name='stem0_conv1')(x)
    s0 = BatchNorm(name='stem0_bn1')(x, train)
    x = Conv(c, (3, 3), (2, 2), (1, 1), name='stem1_conv')(nn.relu(s0))
    s1 = BatchNorm(name='stem1_bn')(x, train)
    return s0, s1, c, True

  def aux_head(self):
    return AuxiliaryHead(self.num_classes, pool_stride=2, bn_after_768=False, name=AUXILIARY)

  def pool(self, x):
    # The reference's AvgPool2d(7) on the 7x7 map of a 224 input (any larger map: 7x7 windows).
    x = nn.avg_pool(x, (7, 7), strides=(7, 7), padding='VALID')
    return x.reshape(x.shape[0], -1)


def count_params(params) -> int:
  """Trainable parameters, auxiliary head excluded (the reference's `count_parameters_in_MB`)."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return int(
    sum(
      np.prod(leaf.shape)
      for path, leaf in flat
      if not any(getattr(k, 'key', None) == AUXILIARY for k in path)
    )
  )


def count_madds(model: EvalNetwork, image_shape: tuple[int, int, int]) -> int:
  """Multiply-adds of one inference forward pass (convolutions and the classifier).

  Counted from the shapes each convolution and dense layer sees (without running anything):
  a convolution costs output elements x kernel height x width x input channels per group.
  """
  total = 0

  def interceptor(next_fun, args, kwargs, context):
    nonlocal total
    out = next_fun(*args, **kwargs)
    module = context.module
    if context.method_name != '__call__':
      return out
    x = args[0]
    if isinstance(module, nn.Conv):
      kh, kw = module.kernel_size
      total += int(np.prod(out.shape[1:])) * kh * kw * x.shape[-1]
    elif isinstance(module, Pointwise):
      total += int(np.prod(out.shape[1:])) * x.shape[-1]
    elif isinstance(module, nn.Dense):
      total += int(np.prod(out.shape[1:])) * x.shape[-1]
    elif isinstance(module, Depthwise):
      total += int(np.prod(out.shape[1:])) * module.kernel_size**2
    return out

  # Scanned cells are traced once per run, so count the unrolled network.
  model = model.clone(scan_cells=False)
  images = jnp.zeros((1, *image_shape), jnp.float32)

  def forward():
    variables = model.init(jax.random.PRNGKey(0), images, train=False)
    with nn.intercept_methods(interceptor):
      return model.apply(variables, images, train=False)

  total = 0
  jax.eval_shape(forward)
  return total


# The reference's retraining sizes (spec section 6): (network, C, cells).
STANDARD_NETWORKS = {
  'cifar10': (NetworkCIFAR, 36, 20),
  'cifar100': (NetworkCIFAR, 36, 20),
  'imagenet': (NetworkImageNet, 48, 14),
}


def standard_network(dataset: str, genotype: Genotype, **kwargs) -> EvalNetwork:
  """The evaluation network of `dataset` ('cifar10', 'cifar100', 'imagenet') at the paper's size."""
  network, channels, layers = STANDARD_NETWORKS[dataset]
  classes = DATASETS[dataset].num_classes
  return network(genotype, num_classes=classes, channels=channels, layers=layers, **kwargs)


def network_costs(genotype: Genotype) -> dict[str, dict[str, int]]:
  """{'params': {dataset: N}, 'madds': {dataset: N}} of the three standard networks."""
  params, madds = {}, {}
  rngs = {'params': jax.random.PRNGKey(0), 'drop_path': jax.random.PRNGKey(0)}
  for dataset in STANDARD_NETWORKS:
    image_shape = DATASETS[dataset].image_shape
    model = standard_network(dataset, genotype)
    images = jnp.zeros((2, *image_shape), jnp.float32)
    shapes = jax.eval_shape(lambda m=model, x=images: m.init(rngs, x, 0.0, train=True))
    params[dataset] = count_params(shapes['params'])
    madds[dataset] = count_madds(model, image_shape)
  return {'params': params, 'madds': madds}
