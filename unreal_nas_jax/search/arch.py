"""Architecture parameters: a plain pytree `{'normal': (E, O), 'reduce': (E, O)}` of alphas."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from unreal_nas_jax.space.primitives import NUM_OPS, num_edges

ALPHA_INITS = ('zeros', 'normal')


def init_alphas(key: jax.Array, *, steps: int = 4, init: str = 'zeros', scale: float = 1e-3):
  """Alphas for the normal and the reduction cell.

  Args:
    key: PRNG key (used by 'normal' only).
    steps: intermediate nodes per cell.
    init: 'zeros' (UnrealNAS: equal attention for every op) or 'normal' (DARTS: scale * N(0, 1)).
    scale: standard deviation of the 'normal' init.
  """
  shape = (num_edges(steps), NUM_OPS)
  if init == 'zeros':
    return {'normal': jnp.zeros(shape), 'reduce': jnp.zeros(shape)}
  if init == 'normal':
    k_normal, k_reduce = jax.random.split(key)
    return {
      'normal': scale * jax.random.normal(k_normal, shape),
      'reduce': scale * jax.random.normal(k_reduce, shape),
    }
  raise ValueError(f'alpha init {init!r} is not allowed; allowed: {", ".join(ALPHA_INITS)}')


def arch_weights(alphas: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Per-edge op mixing weights: softmax over the ops of each edge."""
  return jax.tree.map(lambda a: jax.nn.softmax(a, axis=-1), alphas)
