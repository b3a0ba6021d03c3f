"""The DARTS operations as Flax Linen modules, shared by the search supernet and the eval networks.

Layout is NHWC. Every convolution is bias-free. `affine=False` gives the search network's
BatchNorm (no scale/offset); the eval networks use `affine=True`. Initialisers mimic PyTorch's
defaults (uniform, variance 1/(3 fan_in)) so that training dynamics match the reference code.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from unreal_nas_jax.ops.depthwise import depthwise_conv

# The dtypes a network's activations may be computed in (search and retraining), by config name.
COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}

# PyTorch's default conv/linear init: kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in)).
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def uniform_fan_in_init(fan_in: int) -> Callable:
  """U(+-1/sqrt(fan_in)), PyTorch's default for conv and linear layers, for any (stacked) shape."""
  bound = 1.0 / float(fan_in) ** 0.5
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


# A linear layer's bias draws from the same distribution as its weights.
torch_default_bias_init = uniform_fan_in_init


def params_key(seed: int) -> jax.Array:
  """The key the networks' weights are drawn from: XLA's RngBitGenerator rather than threefry.

  A network has hundreds of parameter arrays, and XLA compiles one unrolled threefry hash per
  array, which made the threefry hashes most of what compiling the jitted initialisation cost.
  Deterministic for a seed on a given platform (not across CPU and GPU).
  """
  return jax.random.key(seed, impl='unsafe_rbg')


BN_MOMENTUM = 0.1  # PyTorch's: running = (1 - m) * running + m * batch statistic
BN_EPSILON = 1e-5


BN_MOMENTS = ('two_pass', 'shifted', 'one_pass')


def batch_moments(x: jax.Array, axes: tuple[int, ...], moments: str = 'two_pass'):
  """Mean and biased variance over `axes`, in float32 (or float64 for float64 inputs).

  'two_pass': the mean, then the mean squared deviation, as PyTorch computes them. 'one_pass':
  E[x^2] - E[x]^2 from one read of x, which loses digits to cancellation when |mean| >> std
  (it made float32 second-order alpha gradients orders of magnitude less accurate than
  PyTorch's). 'shifted': one read of x too, but of x - K with K one sample of each statistic's
  own values (the first along `axes`), so the sums cancel only as much as that sample is far from
  the mean in standard deviations, as for two passes' rounding of the mean; exact in real
  arithmetic for any K, so its gradient is the variance's.
  """
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  if moments == 'two_pass':
    mean = jnp.mean(x, axis=axes, keepdims=True)
    return mean, jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
  if moments == 'shifted':
    first = tuple(slice(0, 1) if a in axes else slice(None) for a in range(x.ndim))
    shift = jax.lax.stop_gradient(x[first])
    centred = x - shift
    offset = jnp.mean(centred, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(centred), axis=axes, keepdims=True) - jnp.square(offset)
    return shift + offset, jnp.maximum(var, 0.0)
  mean = jnp.mean(x, axis=axes, keepdims=True)
  var = jnp.maximum(jnp.mean(jnp.square(x), axis=axes, keepdims=True) - jnp.square(mean), 0.0)
  return mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def normalise(x: jax.Array, axes: tuple[int, ...], moments: str):
  """(x - mean) / sqrt(var + eps) over `axes` with the batch statistics, and (mean, var).

  The same function as the plain expression, with the backward pass written out: one pass for
  the two reductions it needs and one for the input gradient, where differentiating the
  expression takes several (the statistics' and the normalisation's separately). Its backward
  pass is itself differentiable (second-order DARTS differentiates through gradient steps).
  """
  y, mean, var, _ = _normalise_fwd_parts(x, axes, moments)
  return y, mean, var


def _normalise_fwd_parts(x, axes, moments):
  mean, var = batch_moments(x, axes, moments)
  rstd = jax.lax.rsqrt(var + BN_EPSILON)
  return ((x.astype(rstd.dtype) - mean) * rstd).astype(x.dtype), mean, var, rstd


def _normalise_fwd(x, axes, moments):
  y, mean, var, rstd = _normalise_fwd_parts(x, axes, moments)
  return (y, mean, var), (x, mean, rstd)


def _normalise_bwd(axes, moments, residuals, cotangents):
  del moments
  x, mean, rstd = residuals
  g_y, g_mean, g_var = cotangents
  n = math.prod(x.shape[a] for a in axes)
  centred = x.astype(rstd.dtype) - mean
  x_hat = centred * rstd
  g_y = g_y.astype(rstd.dtype)
  g_sum = jnp.mean(g_y, axis=axes, keepdims=True)
  g_dot = jnp.mean(g_y * x_hat, axis=axes, keepdims=True)
  g_x = rstd * (g_y - g_sum - x_hat * g_dot)
  # The statistics' own cotangents (zero where only the running averages read them).
  g_x = g_x + g_mean / n + g_var * (2.0 / n) * centred
  return (g_x.astype(x.dtype),)


normalise.defvjp(_normalise_fwd, _normalise_bwd)


class BatchNorm(nn.Module):
  """BatchNorm with PyTorch's numbers: momentum 0.1, eps 1e-5, batch statistics in training.

  The batch is normalised with the biased variance and the running variance follows the unbiased
  one (n / (n - 1)), as torch.nn.BatchNorm2d does. Statistics are per channel and per leading
  "branch" index: for an input (B_1, ..., B_k, N, H, W, C) with `branch_dims=k` they reduce over
  (N, H, W) and keep shape (B_1, ..., B_k, C), so a stack of k-indexed branches is k BatchNorms.
  `reduce_axes` names the reduced axes instead, for branches laid out after them: (N, H, W, B_1,
  ..., B_k, C) with `reduce_axes=(0, 1, 2)` has the same statistics, of shape (B_1, ..., C).

  Attributes:
    affine: learn a scale and an offset per channel (and branch).
    branch_dims: leading axes that index independent BatchNorms.
    reduce_axes: the axes the statistics reduce over, if not those after `branch_dims` but the
      last.
    moments: how the batch statistics are computed (`batch_moments`).
    fused_backward: in training, normalise with `normalise` (its backward pass written out);
      non-affine only.
  """

  affine: bool = True
  branch_dims: int = 0
  reduce_axes: tuple[int, ...] | None = None
  moments: str = 'two_pass'
  fused_backward: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    b = self.branch_dims
    axes = self.reduce_axes if self.reduce_axes is not None else tuple(range(b, x.ndim - 1))
    stat_shape = tuple(d for a, d in enumerate(x.shape) if a not in axes)
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, stat_shape, jnp.float32)
    running_var = self.variable('batch_stats', 'var', jnp.ones, stat_shape, jnp.float32)
    expand = tuple(1 if a in axes else d for a, d in enumerate(x.shape))
    if train and self.fused_backward and not self.affine:
      y, mean, var = normalise(x, axes, self.moments)
      if not self.is_initializing():
        self._update_running(running_mean, running_var, mean, var, x.shape, axes, stat_shape)
      return y
    if train:
      mean, var = batch_moments(x, axes, self.moments)
      if not self.is_initializing():
        self._update_running(running_mean, running_var, mean, var, x.shape, axes, stat_shape)
    else:
      mean = running_mean.value.reshape(expand)
      var = running_var.value.reshape(expand)
    scale = jax.lax.rsqrt(var + BN_EPSILON)
    if self.affine:
      scale = scale * self.param('scale', nn.initializers.ones, stat_shape).reshape(expand)
    y = (x.astype(scale.dtype) - mean) * scale
    if self.affine:
      y = y + self.param('bias', nn.initializers.zeros, stat_shape).reshape(expand)
    return y.astype(x.dtype)

  @staticmethod
  def _update_running(running_mean, running_var, mean, var, shape, axes, stat_shape):
    n = math.prod(shape[a] for a in axes)
    unbiased = jax.lax.stop_gradient(var).reshape(stat_shape) * (n / max(n - 1, 1))
    mean = jax.lax.stop_gradient(mean).reshape(stat_shape)
    running_mean.value += BN_MOMENTUM * (mean - running_mean.value)
    running_var.value += BN_MOMENTUM * (unbiased - running_var.value)


class Pointwise(nn.Module):
  """1x1 convolution as a matmul over channels (the fastest form on every backend), of the
  pixels `offset`, `offset + stride`, ... of each row and column."""

  features: int
  stride: int = 1
  offset: int = 0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.stride > 1 or self.offset:
      x = strided_pixels(x, self.stride, self.offset)
    kernel = self.param('kernel', torch_default_init, (1, 1, x.shape[-1], self.features))
    return jnp.einsum('nhwc,cd->nhwd', x, kernel[0, 0].astype(x.dtype))


def strided_pixels(x: jax.Array, stride: int, offset: int = 0) -> jax.Array:
  """Pixels offset, offset + stride, ... of every row and column of (..., H, W, C).

  For H and W divisible by the stride this is a reshape and a plain slice, not a strided slice:
  a strided slice of a concatenation of slices feeding a matrix product aborts XLA:GPU's
  Triton GEMM fusion (jaxlib 0.10.2, triton_tiling_propagation.cc "subdim_size_accumulator ==
  dim_size"; tests/models/test_gpu_compile.py). Same elements, so the same results everywhere.
  """
  *lead, h, w, c = x.shape
  if h % stride or w % stride:
    return x[..., offset::stride, offset::stride, :]
  x = x.reshape(*lead, h // stride, stride, w // stride, stride, c)
  return x[..., offset, :, offset, :]


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
    b = Pointwise(half, stride=2, offset=1)(x)
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


def _pool_window(x: jax.Array, stride: int):
  """reduce_window arguments of a 3x3, padding-1 pool over (H, W) of (..., H, W, C)."""
  lead = x.ndim - 3
  return (
    (1,) * lead + (3, 3, 1),
    (1,) * lead + (stride, stride, 1),
    ((0, 0),) * lead + ((1, 1), (1, 1), (0, 0)),
  )


def max_pool_3x3(x: jax.Array, stride: int) -> jax.Array:
  """3x3 max pool, padding 1, over (H, W) of (..., H, W, C) (any leading axes)."""
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, *_pool_window(x, stride))


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max pool, stride 2, no padding, over (H, W) of (..., H, W, C) with H and W even."""
  *lead, h, w, c = x.shape
  return x.reshape(*lead, h // 2, 2, w // 2, 2, c).max(axis=(-4, -2))


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
  """ShuffleNet's channel shuffle of (..., C): channel g * (C / groups) + j moves to j * groups + g."""
  *lead, c = x.shape
  return x.reshape(*lead, groups, c // groups).swapaxes(-1, -2).reshape(*lead, c)


def avg_pool_3x3(x: jax.Array, stride: int) -> jax.Array:
  """3x3 average pool, padding 1, padded cells not counted (PyTorch count_include_pad=False)."""
  sums = jax.lax.reduce_window(x, 0.0, jax.lax.add, *_pool_window(x, stride))
  # The number of real cells under each window is a constant of the shapes.
  ones = np.ones(x.shape[-3:-1], np.float32)
  padded = np.pad(ones, 1)
  h, w = sums.shape[-3:-1]
  counts = np.zeros((h, w), np.float32)
  for i in range(3):
    for j in range(3):
      counts += padded[i : i + stride * (h - 1) + 1 : stride, j : j + stride * (w - 1) + 1 : stride]
  return sums / jnp.asarray(counts[:, :, None], x.dtype)


def zero_op(x: jax.Array, stride: int) -> jax.Array:
  return jnp.zeros_like(x[:, ::stride, ::stride, :])


class Pool(nn.Module):
  """3x3 max or average pooling (the evaluation networks' pools; no BatchNorm after them)."""

  kind: str
  stride: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    del train
    return (max_pool_3x3 if self.kind == 'max' else avg_pool_3x3)(x, self.stride)


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
  depthwise_impl: str = 'auto',
  module_name: str | None = None,
) -> nn.Module:
  """Builds the op `name` (a PRIMITIVE or an extra eval op) mapping C -> `features` channels.

  Args:
    name: the op's name, e.g. 'sep_conv_3x3'.
    features: output channels (equal to the input channels inside cells).
    stride: 1, or 2 on reduction-cell edges that read a cell input.
    affine: BatchNorm scale/offset (False in the search network).
    depthwise_impl: see `unreal_nas_jax.ops.depthwise`.
    module_name: the Flax submodule name (defaults to the op's name).
  """
  kw = {'name': module_name or name}
  sep = functools.partial(SepConv, affine=affine, depthwise_impl=depthwise_impl, **kw)
  dil = functools.partial(DilConv, affine=affine, depthwise_impl=depthwise_impl, **kw)
  builders = {
    'none': lambda: Zero(stride, **kw),
    'max_pool_3x3': lambda: Pool('max', stride, **kw),
    'avg_pool_3x3': lambda: Pool('avg', stride, **kw),
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
