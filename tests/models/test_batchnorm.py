"""BatchNorm follows PyTorch: two-pass variance, unbiased running variance, per-branch stacks."""

import jax
import jax.numpy as jnp
import numpy as np

from unreal_nas_jax.models.layers import BatchNorm


def _apply(bn, x, train=True, variables=None):
  variables = variables or bn.init(jax.random.PRNGKey(0), x, train)
  return bn.apply(variables, x, train, mutable=['batch_stats'])


def test_two_pass_variance_keeps_float32_precision_with_a_large_mean():
  # |mean| >> std: E[x^2] - E[x]^2 cancels catastrophically in float32; PyTorch's (and ours)
  # does not. The float64 result is the truth.
  x = 3000.0 + jax.random.normal(jax.random.PRNGKey(0), (8, 4, 4, 3))
  truth = (np.float64(x) - np.float64(x).mean((0, 1, 2))) / np.sqrt(
    np.float64(x).var((0, 1, 2)) + 1e-5
  )
  two_pass, _ = _apply(BatchNorm(affine=False), x)
  one_pass, _ = _apply(BatchNorm(affine=False, moments='one_pass'), x)
  assert np.abs(np.asarray(two_pass) - truth).max() < 1e-3
  assert np.abs(np.asarray(one_pass) - truth).max() > 1e-2  # what the two passes avoid


def test_running_variance_is_unbiased_and_momentum_is_torchs():
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 3, 2, 5)) * 2.0 + 1.0
  _, updates = _apply(BatchNorm(), x)
  stats = updates['batch_stats']
  n = 4 * 3 * 2
  flat = np.asarray(x, np.float64).reshape(n, 5)
  np.testing.assert_allclose(stats['mean'], 0.1 * flat.mean(0), rtol=1e-5)
  np.testing.assert_allclose(stats['var'], 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-5)


def test_eval_mode_normalises_with_running_statistics_and_affine_parameters():
  bn = BatchNorm()
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 3, 3, 4))
  variables = bn.init(jax.random.PRNGKey(0), x, False)
  variables = {
    'params': {'scale': jnp.full((4,), 2.0), 'bias': jnp.full((4,), 0.5)},
    'batch_stats': {'mean': jnp.arange(4.0), 'var': jnp.full((4,), 4.0)},
  }
  y = bn.apply(variables, x, False)
  expected = (x - jnp.arange(4.0)) / jnp.sqrt(4.0 + 1e-5) * 2.0 + 0.5
  np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


def test_branch_dims_are_independent_batchnorms():
  x = jax.random.normal(jax.random.PRNGKey(3), (2, 3, 4, 5, 5, 6))  # (S, M, N, H, W, C)
  stacked, updates = _apply(BatchNorm(affine=False, branch_dims=2), x)
  assert updates['batch_stats']['mean'].shape == (2, 3, 6)
  for s in range(2):
    for m in range(3):
      alone, alone_updates = _apply(BatchNorm(affine=False), x[s, m])
      np.testing.assert_allclose(stacked[s, m], alone, rtol=1e-5, atol=1e-6)
      for key in ('mean', 'var'):
        np.testing.assert_allclose(
          updates['batch_stats'][key][s, m], alone_updates['batch_stats'][key], rtol=1e-6
        )


def test_shifted_one_pass_moments_keep_float32_precision_with_a_large_mean():
  # One read of x (the dense supernet form's BatchNorms) without the one-pass form's cancellation.
  x = 3000.0 + jax.random.normal(jax.random.PRNGKey(0), (8, 4, 4, 3))
  truth = (np.float64(x) - np.float64(x).mean((0, 1, 2))) / np.sqrt(
    np.float64(x).var((0, 1, 2)) + 1e-5
  )
  shifted, _ = _apply(BatchNorm(affine=False, moments='shifted'), x)
  assert np.abs(np.asarray(shifted) - truth).max() < 1e-3


def test_written_out_backward_is_the_gradient_of_the_plain_normalisation():
  # `normalise`'s backward pass (and its own derivative, which second-order DARTS takes) against
  # autodiff of the expression, for branch-minor statistics, float64.
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.PRNGKey(4), (3, 4, 4, 2, 5), jnp.float64) * 2.0 + 0.7
    probe = jax.random.normal(jax.random.PRNGKey(5), x.shape, jnp.float64)

    def loss(fused, x):
      bn = BatchNorm(affine=False, reduce_axes=(0, 1, 2), fused_backward=fused, moments='shifted')
      y, _ = _apply(bn, x)
      return jnp.sum(jnp.sin(y) * probe)

    for order in (jax.grad, lambda f: jax.grad(lambda x: jnp.sum(jax.grad(f)(x) ** 2))):
      plain = order(lambda x: loss(False, x))(x)
      fused = order(lambda x: loss(True, x))(x)
      np.testing.assert_allclose(fused, plain, rtol=1e-10, atol=1e-12)
