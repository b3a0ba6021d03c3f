"""Every depthwise implementation equals XLA's grouped convolution, to second order."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unreal_nas_jax.ops.depthwise import (
  DEPTHWISE_IMPLS,
  depthwise_conv,
  output_size,
  resolve_depthwise_impl,
)

CASES = list(itertools.product((3, 5), (1, 2), (1, 2), (7, 8)))  # k, dilation, stride, H


def _inputs(k, size, channels=6):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size, channels))
  kernel = jax.random.normal(jax.random.PRNGKey(1), (k, k, channels))
  return x, kernel


def _conv(impl, k, dilation, stride):
  padding = dilation * (k - 1) // 2  # the DARTS ops: 'same' padding before the stride
  return lambda x, w: depthwise_conv(
    x, w, stride=stride, dilation=dilation, padding=padding, impl=impl
  )


FAST_IMPLS = [i for i in DEPTHWISE_IMPLS if i != 'xla']


@pytest.mark.parametrize('impl', FAST_IMPLS)
@pytest.mark.parametrize('k,dilation,stride,size', CASES)
def test_value_and_gradients_match_grouped_conv(impl, k, dilation, stride, size):
  x, w = _inputs(k, size)
  ref, fast = _conv('xla', k, dilation, stride), _conv(impl, k, dilation, stride)
  out = fast(x, w)
  expected_size = output_size(size, k, stride, dilation, dilation * (k - 1) // 2)
  assert out.shape == (2, expected_size, expected_size, 6)
  np.testing.assert_allclose(out, ref(x, w), rtol=1e-4, atol=1e-4)
  cot = jax.random.normal(jax.random.PRNGKey(2), out.shape)
  grads = jax.grad(lambda x, w: jnp.sum(fast(x, w) * cot), argnums=(0, 1))(x, w)
  expected = jax.grad(lambda x, w: jnp.sum(ref(x, w) * cot), argnums=(0, 1))(x, w)
  for a, b in zip(grads, expected, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize('impl', FAST_IMPLS)
@pytest.mark.parametrize('k,dilation,stride', [(3, 1, 2), (5, 2, 1)])
def test_second_order_gradients_match(impl, k, dilation, stride):
  """grad of a function of a gradient, as in the unrolled DARTS hypergradient."""
  x, w = _inputs(k, 8)

  def meta(f):
    inner = jax.grad(lambda x, w: jnp.sum(jnp.tanh(f(x, w))), argnums=0)
    return jax.grad(lambda w: jnp.sum(inner(x, w) ** 2))

  a = meta(_conv(impl, k, dilation, stride))(w)
  b = meta(_conv('xla', k, dilation, stride))(w)
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_auto_resolves_by_platform_and_shape():
  assert jax.default_backend() == 'cpu'
  assert resolve_depthwise_impl('auto', 16, 3) == 'dense'
  assert resolve_depthwise_impl('auto', 32, 3) == 'shift'
  assert resolve_depthwise_impl('auto', 32, 5) == 'dense'
  assert resolve_depthwise_impl('auto', 64, 5) == 'shift'
  assert resolve_depthwise_impl('auto', 64, 3, spatial=16 * 16) == 'shift'
  assert resolve_depthwise_impl('auto', 64, 3, spatial=8 * 8) == 'dense'
  assert resolve_depthwise_impl('xla', 16, 3) == 'xla'


def test_bad_impl_and_channel_mismatch():
  with pytest.raises(ValueError, match="depthwise impl 'cudnn' is not allowed; allowed: auto"):
    resolve_depthwise_impl('cudnn')
  x, w = _inputs(3, 8)
  with pytest.raises(ValueError, match='kernel has 6 channels, input has 5'):
    depthwise_conv(x[..., :5], w, padding=1)
