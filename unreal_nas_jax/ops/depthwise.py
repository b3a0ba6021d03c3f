"""Depthwise convolution with several filters per channel, in the form that is fastest per platform.

`stacked_depthwise(x, kernel)` convolves each of S stacked inputs, channel by channel, with M
filters: x (S, N, H, W, C) and kernel (S, M, k, k, C) give (S, M, N, H', W', C). The fused search
supernet uses it to run the first depthwise convolution of every edge leaving a state at once
(M filters per channel, one input) and the second ones of all branches (M = 1, S branches); an
evaluation network's ordinary depthwise convolution is S = M = 1.

  'xla'     XLA's grouped convolution (feature_group_count = S * C); native on GPU and TPU.
  'native'  compiled CPU kernels (`depthwise_cpu.cc`, built on first use by `cpu_kernels` and
            called through XLA FFI) for the convolution and its two gradients; each is a
            custom_vjp made of the other two, so any order of reverse-mode derivative stays on
            the kernels. float32 and float64; 'shift' runs instead for other dtypes or where the
            kernels cannot be built.
  'shift'   pure JAX: k * k strided slices of the padded input times per-channel taps, summed
            (XLA fuses them into one loop); its gradients are JAX's autodiff of those ops.
            XLA:CPU runs grouped convolutions far slower than these loops.
All three are differentiable to any order, so the second-order DARTS step can differentiate
through a gradient step.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from unreal_nas_jax.ops import cpu_kernels

DEPTHWISE_IMPLS = ('xla', 'native', 'shift')


def resolve_depthwise_impl(
  impl: str, dtype=jnp.float32, platform: str | None = None, num_devices: int = 1
) -> str:
  """The concrete implementation for `impl` on `platform` ('cpu', 'gpu', 'tpu'; default JAX's
  default backend) and a mesh of `num_devices`: 'auto' is 'xla' on GPU and TPU; on one CPU device
  'native' (the compiled kernels, float32 and float64) where they build, else 'shift'; on several
  CPU devices 'shift' (XLA cannot split a custom call over devices: it gathers the whole batch to
  every device for each native kernel). 'native' falls back to 'shift' for other dtypes or where
  the kernels cannot be built."""
  if impl not in ('auto', *DEPTHWISE_IMPLS):
    raise ValueError(
      f'depthwise impl {impl!r} is not allowed; allowed: auto, {", ".join(DEPTHWISE_IMPLS)}'
    )
  if impl == 'auto':
    if (platform or jax.default_backend()) != 'cpu':
      impl = 'xla'
    else:
      impl = 'native' if num_devices == 1 else 'shift'
  if impl == 'native':
    native_dtype = jnp.dtype(dtype) in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))
    if not (native_dtype and cpu_kernels.available()):
      return 'shift'
  return impl


def output_size(size: int, kernel_size: int, stride: int, dilation: int, padding: int) -> int:
  """PyTorch's conv output size: floor((H + 2p - d(k-1) - 1) / s) + 1."""
  return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def stacked_depthwise(
  x: jax.Array,
  kernel: jax.Array,
  *,
  stride: int = 1,
  dilation: int = 1,
  padding: int = 0,
  impl: str = 'auto',
) -> jax.Array:
  """Per-channel convolutions of S stacked inputs with M filters each, no bias.

  Args:
    x: (S, N, H, W, C) inputs.
    kernel: (S, M, k, k, C) filters: filter m of channel c of input s.
    stride, dilation, padding: as in torch.nn.Conv2d (symmetric zero padding).
    impl: 'auto', or one of DEPTHWISE_IMPLS.

  Returns:
    (S, M, N, H', W', C).
  """
  if x.ndim != 5 or kernel.ndim != 5 or kernel.shape[0] != x.shape[0]:
    raise ValueError(f'stacked_depthwise needs x (S,N,H,W,C), kernel (S,M,k,k,C); got {x.shape}, '
                     f'{kernel.shape}')  # fmt: skip
  if kernel.shape[-1] != x.shape[-1]:
    raise ValueError(f'depthwise kernel has {kernel.shape[-1]} channels, input has {x.shape[-1]}')
  kernel = kernel.astype(x.dtype)
  impl = resolve_depthwise_impl(impl, x.dtype)
  if impl == 'xla':
    return _grouped_conv(x, kernel, stride, dilation, padding)
  if impl == 'native':
    return _native(x, kernel, (stride, dilation, padding))
  return _shifted(x, kernel, stride, dilation, padding)


def depthwise_conv(
  x: jax.Array,
  kernel: jax.Array,
  *,
  stride: int = 1,
  dilation: int = 1,
  padding: int = 0,
  impl: str = 'auto',
) -> jax.Array:
  """An ordinary depthwise convolution: x (N, H, W, C), kernel (k, k, C) -> (N, H', W', C)."""
  out = stacked_depthwise(
    x[None], kernel[None, None], stride=stride, dilation=dilation, padding=padding, impl=impl
  )
  return out[0, 0]


def _grouped_conv(x, kernel, stride, dilation, padding):
  s, n, h, w, c = x.shape
  m, k = kernel.shape[1], kernel.shape[2]
  # Channels (s, c) are the groups; each group's outputs are its M filters, minor.
  lhs = jnp.moveaxis(x, 0, 3).reshape(n, h, w, s * c)
  rhs = jnp.transpose(kernel, (2, 3, 0, 4, 1)).reshape(k, k, 1, s * c * m)
  y = lax.conv_general_dilated(
    lhs,
    rhs,
    (stride, stride),
    [(padding, padding)] * 2,
    rhs_dilation=(dilation, dilation),
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    feature_group_count=s * c,
  )
  y = y.reshape(n, y.shape[1], y.shape[2], s, c, m)
  return jnp.transpose(y, (3, 5, 0, 1, 2, 4))


def _shifted(x, kernel, stride, dilation, padding):
  """Pure JAX: k*k strided windows of the padded input times per-channel taps, summed."""
  s, n, h, w, c = x.shape
  k = kernel.shape[2]
  out_h, out_w = (output_size(d, k, stride, dilation, padding) for d in (h, w))
  padded = jnp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding), (0, 0)))
  out = None
  for i in range(k):
    for j in range(k):
      start = (0, 0, i * dilation, j * dilation, 0)
      limit = (s, n, start[2] + stride * (out_h - 1) + 1, start[3] + stride * (out_w - 1) + 1, c)
      window = lax.slice(padded, start, limit, (1, 1, stride, stride, 1))
      tap = window[:, None] * kernel[:, :, i, j, None, None, None, :]
      out = tap if out is None else out + tap
  return out


# The compiled CPU kernels: the convolution and its two gradients are bilinear maps whose
# vector-Jacobian products are each other, so each is a custom_vjp built from the other two and
# any order of reverse-mode derivative (second-order DARTS) stays on the compiled kernels.
def _ffi(name, out_shape, dtype, *args, geometry):
  stride, dilation, padding = geometry
  call = jax.ffi.ffi_call(name, jax.ShapeDtypeStruct(out_shape, dtype), vmap_method='sequential')
  return call(
    *args, stride=np.int64(stride), dilation=np.int64(dilation), padding=np.int64(padding)
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _native(x, kernel, geometry):
  s, n, h, w, c = x.shape
  k = kernel.shape[2]
  out_h, out_w = (output_size(d, k, *geometry) for d in (h, w))
  shape = (s, kernel.shape[1], n, out_h, out_w, c)
  return _ffi('unreal_nas_depthwise_forward', shape, x.dtype, x, kernel, geometry=geometry)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _native_input_grad(grad, kernel, geometry, input_hw):
  s, _, n, _, _, c = grad.shape
  shape = (s, n, *input_hw, c)
  return _ffi('unreal_nas_depthwise_input_grad', shape, grad.dtype, grad, kernel, geometry=geometry)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _native_kernel_grad(grad, x, geometry, kernel_size):
  s, m, _, _, _, c = grad.shape
  shape = (s, m, kernel_size, kernel_size, c)
  return _ffi('unreal_nas_depthwise_kernel_grad', shape, grad.dtype, grad, x, geometry=geometry)


def _native_fwd(x, kernel, geometry):
  return _native(x, kernel, geometry), (x, kernel)


def _native_bwd(geometry, residuals, grad):
  x, kernel = residuals
  return (
    _native_input_grad(grad, kernel, geometry, x.shape[2:4]),
    _native_kernel_grad(grad, x, geometry, kernel.shape[2]),
  )


def _input_grad_fwd(grad, kernel, geometry, input_hw):
  return _native_input_grad(grad, kernel, geometry, input_hw), (grad, kernel)


def _input_grad_bwd(geometry, input_hw, residuals, cotangent):
  grad, kernel = residuals  # <h, A_K^T g> = <A_K h, g>
  return (
    _native(cotangent, kernel, geometry),
    _native_kernel_grad(grad, cotangent, geometry, kernel.shape[2]),
  )


def _kernel_grad_fwd(grad, x, geometry, kernel_size):
  return _native_kernel_grad(grad, x, geometry, kernel_size), (grad, x)


def _kernel_grad_bwd(geometry, kernel_size, residuals, cotangent):
  grad, x = residuals  # <H, dK(g, x)> = <A_H x, g>
  return (
    _native(x, cotangent, geometry),
    _native_input_grad(grad, cotangent, geometry, x.shape[2:4]),
  )


_native.defvjp(_native_fwd, _native_bwd)
_native_input_grad.defvjp(_input_grad_fwd, _input_grad_bwd)
_native_kernel_grad.defvjp(_kernel_grad_fwd, _kernel_grad_bwd)
