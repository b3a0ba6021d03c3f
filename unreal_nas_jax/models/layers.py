"""The DARTS operations as Flax Linen modules, shared by the search supernet and the eval networks.

Layout is NHWC. Every convolution is bias-free. `affine=False` gives the search network's
BatchNorm (no scale/offset); the eval networks use `affine=True`. Initialisers mimic PyTorch's
defaults (uniform, variance 1/(3 fan_in)) so that training dynamics match the reference code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from unreal_nas_jax.ops.depthwise import depthwise_conv

# PyTorch's default conv/linear init: kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in)).
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def torch_default_bias_init(fan_in: int) -> Callable:
  bound = 1.0 / float(fan_in) ** 0.5
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class BatchNorm(nn.Module):
  """BatchNorm with PyTorch's numbers (momentum 0.1 == Flax 0.9, eps 1e-5)."""

  affine: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    return nn.BatchNorm(
      use_running_average=not train,
      momentum=0.9,
      epsilon=1e-5,
      use_scale=self.affine,
      use_bias=self.affine,
    )(x)


class Pointwise(nn.Module):
  """1x1 convolution as a matmul over channels (the fastest form on every backend)."""

  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.stride > 1:
      x = x[:, :: self.stride, :: self.stride, :]
    kernel = self.param('kernel', torch_default_init, (1, 1, x.shape[-1], self.features))
    return jnp.einsum('nhwc,cd->nhwd', x, kernel[0, 0].astype(x.dtype))


class Depthwise(nn.Module):
  """Depthwise kxk convolution; `impl` picks the XLA grouped conv or a CPU-fast form."""

  kernel_size: int
  stride: int = 1
  padding: int = 0
  dilation: int = 1
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    # Shape (k, k, C): fan_in is k*k for Flax's variance scaling, as in PyTorch's depthwise conv.
    kernel = self.param('kernel', torch_default_init, (k, k, x.shape[-1]))
    return depthwise_conv(
      x,
      kernel.astype(x.dtype),
      stride=self.stride,
      dilation=self.dilation,
      padding=self.padding,
      impl=self.impl,
    )


class Conv(nn.Module):
  """A dense (non-grouped) bias-free convolution with PyTorch padding semantics."""

  features: int
  kernel_size: tuple[int, int]
  stride: tuple[int, int] = (1, 1)
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return nn.Conv(
      self.features,
      self.kernel_size,
      strides=self.stride,
      padding=[(self.padding[0], self.padding[0]), (self.padding[1], self.padding[1])],
      use_bias=False,
      kernel_init=torch_default_init,
    )(x)


class ReLUConvBN(nn.Module):
  """ReLU -> conv -> BN (1x1 for cell preprocessing)."""

  features: int
  kernel_size: int = 1
  stride: int = 1
  padding: int = 0
  affine: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.relu(x)
    if self.kernel_size == 1:
      x = Pointwise(self.features, self.stride)(x)
    else:
      k, s, p = self.kernel_size, self.stride, self.padding
      x = Conv(self.features, (k, k), (s, s), (p, p))(x)
    return BatchNorm(self.affine)(x, train)


class FactorizedReduce(nn.Module):
  """Halves the resolution: two offset 1x1 stride-2 convs, concatenated on channels, then BN."""

  features: int
  affine: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.features % 2:
      raise ValueError(f'FactorizedReduce needs an even channel count, got {self.features}')
    x = nn.relu(x)
    half = self.features // 2
    a = Pointwise(half, stride=2)(x)
    b = Pointwise(half, stride=2)(x[:, 1:, 1:, :])
    return BatchNorm(self.affine)(jnp.concatenate([a, b], axis=-1), train)


class SepConv(nn.Module):
  """Two stacked ReLU -> depthwise kxk -> pointwise -> BN blocks; only the first is strided."""

  features: int
  kernel_size: int
  stride: int
  padding: int
  affine: bool = True
  depthwise_impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c_in = x.shape[-1]
    for features, stride in ((c_in, self.stride), (self.features, 1)):
      x = nn.relu(x)
      x = Depthwise(self.kernel_size, stride, self.padding, 1, self.depthwise_impl)(x)
      x = Pointwise(features)(x)
      x = BatchNorm(self.affine)(x, train)
    return x


class DilConv(nn.Module):
  """ReLU -> dilated depthwise kxk (strided) -> pointwise -> BN."""

  features: int
  kernel_size: int
  stride: int
  padding: int
  dilation: int
  affine: bool = True
  depthwise_impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.relu(x)
    x = Depthwise(self.kernel_size, self.stride, self.padding, self.dilation, self.depthwise_impl)(
      x
    )
    x = Pointwise(self.features)(x)
    return BatchNorm(self.affine)(x, train)


class Conv7x1x1x7(nn.Module):
  """ReLU -> (1,7) conv -> (7,1) conv -> BN; used only by published cells (AmoebaNet)."""

  features: int
  stride: int
  affine: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.relu(x)
    x = Conv(self.features, (1, 7), (1, self.stride), (0, 3))(x)
    x = Conv(self.features, (7, 1), (self.stride, 1), (3, 0))(x)
    return BatchNorm(self.affine)(x, train)


def max_pool_3x3(x: jax.Array, stride: int) -> jax.Array:
  return nn.max_pool(x, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)))


def avg_pool_3x3(x: jax.Array, stride: int) -> jax.Array:
  """3x3 average pool, padding 1, padded cells not counted (PyTorch count_include_pad=False)."""
  return nn.avg_pool(
    x, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)), count_include_pad=False
  )


def zero_op(x: jax.Array, stride: int) -> jax.Array:
  return jnp.zeros_like(x[:, ::stride, ::stride, :])


class Pool(nn.Module):
  """max/avg 3x3 pooling, followed by a non-affine BN in the search network only."""

  kind: str
  stride: int
  bn: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = (max_pool_3x3 if self.kind == 'max' else avg_pool_3x3)(x, self.stride)
    return BatchNorm(affine=False)(x, train) if self.bn else x


class Identity(nn.Module):
  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    del train
    return x


class Zero(nn.Module):
  stride: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    del train
    return zero_op(x, self.stride)


def make_op(
  name: str,
  features: int,
  stride: int,
  *,
  affine: bool,
  search: bool = False,
  depthwise_impl: str = 'auto',
  module_name: str | None = None,
) -> nn.Module:
  """Builds the op `name` (a PRIMITIVE or an extra eval op) mapping C -> `features` channels.

  Args:
    name: the op's name, e.g. 'sep_conv_3x3'.
    features: output channels (equal to the input channels inside cells).
    stride: 1, or 2 on reduction-cell edges that read a cell input.
    affine: BatchNorm scale/offset (False in the search network).
    search: the search network adds a non-affine BN after pooling.
    depthwise_impl: see `unreal_nas_jax.ops.depthwise`.
    module_name: the Flax submodule name (defaults to the op's name).
  """
  kw = {'name': module_name or name}
  sep = functools.partial(SepConv, affine=affine, depthwise_impl=depthwise_impl, **kw)
  dil = functools.partial(DilConv, affine=affine, depthwise_impl=depthwise_impl, **kw)
  builders = {
    'none': lambda: Zero(stride, **kw),
    'max_pool_3x3': lambda: Pool('max', stride, bn=search, **kw),
    'avg_pool_3x3': lambda: Pool('avg', stride, bn=search, **kw),
    'skip_connect': lambda: (
      Identity(**kw) if stride == 1 else FactorizedReduce(features, affine=affine, **kw)
    ),
    'sep_conv_3x3': lambda: sep(features, 3, stride, 1),
    'sep_conv_5x5': lambda: sep(features, 5, stride, 2),
    'sep_conv_7x7': lambda: sep(features, 7, stride, 3),
    'dil_conv_3x3': lambda: dil(features, 3, stride, 2, 2),
    'dil_conv_5x5': lambda: dil(features, 5, stride, 4, 2),
    'conv_7x1_1x7': lambda: Conv7x1x1x7(features, stride, affine=affine, **kw),
  }
  if name not in builders:
    raise ValueError(f'unknown op {name!r}; allowed: {", ".join(builders)}')
  return builders[name]()
