"""Every depthwise implementation equals XLA's grouped convolution, to second order."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unreal_nas_jax.ops import cpu_kernels
from unreal_nas_jax.ops.depthwise import (
  DEPTHWISE_IMPLS,
  depthwise_conv,
  output_size,
  resolve_depthwise_impl,
  stacked_depthwise,
)

# k, dilation, stride, H; W = H + 1 (non-square, odd and even sizes).
CASES = list(itertools.product((3, 5), (1, 2), (1, 2), (7, 8)))
FAST_IMPLS = [i for i in DEPTHWISE_IMPLS if i != 'xla']


def _inputs(k, size, sources=2, filters=3, channels=6, dtype=jnp.float32):
  x = jax.random.normal(jax.random.PRNGKey(0), (sources, 2, size, size + 1, channels), dtype)
  kernel = jax.random.normal(jax.random.PRNGKey(1), (sources, filters, k, k, channels), dtype)
  return x, kernel


def _conv(impl, k, dilation, stride):
  padding = dilation * (k - 1) // 2  # the DARTS ops: 'same' padding before the stride
  return lambda x, w: stacked_depthwise(
    x, w, stride=stride, dilation=dilation, padding=padding, impl=impl
  )


@pytest.mark.skipif(cpu_kernels._compiler() is None, reason='no C++ compiler here')
def test_native_kernels_build_here():
  # Where there is a compiler, the fast path must not silently vanish.
  assert cpu_kernels.available()
  assert resolve_depthwise_impl('auto') == 'native'


@pytest.mark.parametrize('impl', FAST_IMPLS)
@pytest.mark.parametrize('k,dilation,stride,size', CASES)
def test_value_and_gradients_match_grouped_conv(impl, k, dilation, stride, size):
  x, w = _inputs(k, size)
  ref, fast = jax.jit(_conv('xla', k, dilation, stride)), jax.jit(_conv(impl, k, dilation, stride))
  out = fast(x, w)
  pad = dilation * (k - 1) // 2
  expected_shape = (2, 3, 2, output_size(size, k, stride, dilation, pad))
  assert out.shape == (*expected_shape, output_size(size + 1, k, stride, dilation, pad), 6)
  np.testing.assert_allclose(out, ref(x, w), rtol=1e-5, atol=1e-5)
  cot = jax.random.normal(jax.random.PRNGKey(2), out.shape)

  def grads(f):
    return jax.jit(jax.grad(lambda x, w: jnp.sum(f(x, w) * cot), argnums=(0, 1)))(x, w)

  for a, b in zip(grads(fast), grads(ref), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('impl', FAST_IMPLS)
@pytest.mark.parametrize('k,dilation,stride', [(3, 1, 2), (5, 2, 1), (5, 1, 2)])
def test_second_order_gradients_match(impl, k, dilation, stride):
  """Gradients of a function of both gradients, as in the unrolled DARTS hypergradient."""
  x, w = _inputs(k, 8)

  def meta(f):
    inner = jax.grad(lambda x, w: jnp.sum(jnp.tanh(f(x, w))), argnums=(0, 1))

    def outer(x, w):
      gx, gw = inner(x, w)
      return jnp.sum(gx**2) + jnp.sum(jnp.sin(gw))

    return jax.jit(jax.grad(outer, argnums=(0, 1)))(x, w)

  fast, ref = meta(_conv(impl, k, dilation, stride)), meta(_conv('xla', k, dilation, stride))
  for a, b in zip(fast, ref, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))


def test_native_float64_is_exact():
  with jax.enable_x64(True):
    x, w = _inputs(5, 7, dtype=jnp.float64)
    native, ref = _conv('native', 5, 1, 2), _conv('shift', 5, 1, 2)
    out = native(x, w)
    assert out.dtype == jnp.float64
    np.testing.assert_allclose(out, ref(x, w), rtol=1e-13, atol=1e-13)
    cot = jnp.cos(out)
    a = jax.grad(lambda x, w: jnp.sum(native(x, w) * cot), argnums=(0, 1))(x, w)
    b = jax.grad(lambda x, w: jnp.sum(ref(x, w) * cot), argnums=(0, 1))(x, w)
    for u, v in zip(a, b, strict=True):
      np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)


def test_native_results_do_not_depend_on_threads_or_batching():
  """Fixed work chunks: the same bits whatever the thread pool does; vmap loops over calls."""
  x, w = _inputs(5, 8, sources=3, filters=4, channels=20)
  f = jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(_conv('native', 5, 1, 1)(x, w))), (0, 1)))
  first = jax.device_get(f(x, w))
  for _ in range(3):
    for a, b in zip(first, jax.device_get(f(x, w)), strict=True):
      np.testing.assert_array_equal(a, b)
  batched = jax.vmap(_conv('native', 5, 1, 1))(jnp.stack([x, 2 * x]), jnp.stack([w, w]))
  np.testing.assert_allclose(batched[1], 2 * _conv('native', 5, 1, 1)(x, w), rtol=1e-6)


def test_depthwise_conv_is_the_one_input_one_filter_case():
  x, w = _inputs(3, 8, sources=1, filters=1)
  out = depthwise_conv(x[0], w[0, 0], stride=2, dilation=1, padding=1, impl='native')
  np.testing.assert_allclose(out, _conv('xla', 3, 1, 2)(x, w)[0, 0], rtol=1e-5, atol=1e-5)


def test_auto_resolves_by_platform_and_dtype():
  assert jax.default_backend() == 'cpu'
  assert resolve_depthwise_impl('auto', jnp.float32) == 'native'
  assert resolve_depthwise_impl('auto', jnp.bfloat16) == 'shift'  # native is float32/64 only
  assert resolve_depthwise_impl('xla') == 'xla'
  assert resolve_depthwise_impl('shift') == 'shift'


def test_bad_impl_and_shape_mismatch():
  with pytest.raises(ValueError, match="depthwise impl 'cudnn' is not allowed; allowed: auto"):
    resolve_depthwise_impl('cudnn')
  x, w = _inputs(3, 8)
  with pytest.raises(ValueError, match='kernel has 6 channels, input has 5'):
    stacked_depthwise(x[..., :5], w, padding=1)
  with pytest.raises(ValueError, match=r'needs x \(S,N,H,W,C\), kernel \(S,M,k,k,C\)'):
    stacked_depthwise(x[0], w, padding=1)
