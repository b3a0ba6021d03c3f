"""N independent searches (or probe architectures) stepped as one: the N-seed programs.

The N states, their epoch accumulators and epoch orders (and the data when each seed has its own)
carry a leading seed axis; the learning rate and the epoch's first step are shared. The step's
arguments are `(state, sums, data, train_perm, val_perm, lr, epoch_start)` (`search.darts`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

SEEDS_PROGRAMS = ('auto', 'vmap', 'map', 'loop')


def seeds_program(choice: str, platform: str | None = None) -> str:
  """How N seeds run. 'vmap': one vectorised step; 'map': one step that loops over the seeds
  inside the program; 'loop': the single-seed step called once per seed, so every seed is
  bit-identical to a single run. 'auto': 'vmap' on accelerators, where it fills idle parallel
  hardware; 'loop' on CPU, where there is none to fill (vmap and map were within 15% of it there,
  and their reordered float32 sums can flip near-tied alphas). `platform`: the mesh's (default
  JAX's default backend)."""
  if choice != 'auto':
    return choice
  return 'loop' if (platform or jax.default_backend()) == 'cpu' else 'vmap'


def seed_slice(tree, k: int, num_seeds: int):
  """Seed k's part of a per-seed pytree (the tree itself for a single seed)."""
  return tree if num_seeds == 1 else jax.tree.map(lambda x: x[k], tree)


def over_seeds(step, data_axis: int | None, program: str, seeds_axis: str | None = None):
  """The 'vmap' or 'map' program: N independent steps as one program. `data_axis`: 0 when each
  seed has its own data (stacked), None when they share one dataset. `seeds_axis`: the mesh axis
  the seeds are split over ('vmap' only), so that each group of devices steps its own seeds."""
  if program == 'vmap':
    return jax.vmap(step, in_axes=(0, 0, data_axis, 0, 0, None, None), spmd_axis_name=seeds_axis)

  def mapped(state, sums, data, train_perm, val_perm, lr, epoch_start):
    def one(xs):
      state, sums, train_perm, val_perm, seed_data = xs
      seed_data = data if data_axis is None else seed_data
      return step(state, sums, seed_data, train_perm, val_perm, lr, epoch_start)

    per_seed = data if data_axis is not None else jnp.zeros(train_perm.shape[0])
    return jax.lax.map(one, (state, sums, train_perm, val_perm, per_seed))

  return mapped


def host_loop(step_fn, num_seeds: int, data_axis: int | None):
  """The 'loop' program: seed k's slice of the stacked trees through the single-seed step."""
  split = jax.jit(lambda tree: [seed_slice(tree, k, num_seeds) for k in range(num_seeds)])
  stack = jax.jit(lambda trees: jax.tree.map(lambda *x: jnp.stack(x), *trees))

  # The data and the epoch's orders are the same arrays step after step: split them once per
  # epoch, not every step (the cache holds the arrays it was made from, so it is exact).
  cache: dict[str, Any] = {'inputs': None, 'split': None}

  def split_inputs(inputs):
    cached = cache['inputs']
    same = cached is not None and all(
      a is b for a, b in zip(jax.tree.leaves(inputs), jax.tree.leaves(cached), strict=True)
    )
    if not same:
      per_seed = split(inputs)
      cache['inputs'], cache['split'] = inputs, [list(x) for x in zip(*per_seed, strict=True)]
    return cache['split']

  def run(state, sums, data, train_perm, val_perm, lr, epoch_start):
    states, seed_sums = split(state), split(sums)
    seed_data, train_perms, val_perms = split_inputs(
      (data if data_axis is not None else None, train_perm, val_perm)
    )
    if data_axis is None:
      seed_data = [data] * num_seeds
    for k in range(num_seeds):
      states[k], seed_sums[k] = step_fn(
        states[k], seed_sums[k], seed_data[k], train_perms[k], val_perms[k], lr, epoch_start
      )
    return stack(states), stack(seed_sums)

  return run


def one_seed_shapes(args, data_axis: int | None):
  """One seed's shapes of the N-seed step arguments (state, sums, data, perms, lr, start): what
  the 'loop' program's single-seed step is compiled from."""

  def drop_seed_axis(tree):
    return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype, sharding=getattr(x, 'sharding', None)),
      tree,
    )

  state, sums, data, train_perm, val_perm, lr, start = args
  data = data if data_axis is None else drop_seed_axis(data)
  return (drop_seed_axis(state), drop_seed_axis(sums), data, *drop_seed_axis((train_perm, val_perm)),
          lr, start)  # fmt: skip
