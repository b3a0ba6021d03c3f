"""Architecture parameters and the per-edge op weights the supernet mixes with.

The architecture pytree holds, per cell type, the alphas `{'normal': (E, O), 'reduce': (E, O)}`
and, for PC-DARTS's edge normalisation, the betas `{'normal_beta': (E,), 'reduce_beta': (E,)}`.
Everything the architecture optimizer updates lives here and nothing else does.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from unreal_nas_jax.space.primitives import NUM_OPS, node_edge_ranges, num_edges

ALPHA_INITS = ('zeros', 'normal')
CELLS = ('normal', 'reduce')


def beta_key(cell: str) -> str:
  """The key of a cell type's PC-DARTS edge betas in the architecture pytree."""
  return f'{cell}_beta'


def steps_of(edges: int) -> int:
  """The intermediate nodes of a cell with `edges` edges (E = steps * (steps + 3) / 2)."""
  steps = int(round((math.sqrt(9 + 8 * edges) - 3) / 2))
  if num_edges(steps) != edges:
    raise ValueError(f'{edges} edges is not a DARTS cell')
  return steps


def init_alphas(
  key: jax.Array,
  *,
  steps: int = 4,
  init: str = 'zeros',
  scale: float = 1e-3,
  edge_betas: bool = False,
) -> dict[str, jax.Array]:
  """Alphas for the normal and the reduction cell (and PC-DARTS betas with `edge_betas`).

  Args:
    key: PRNG key (used by 'normal' only).
    steps: intermediate nodes per cell.
    init: 'zeros' (UnrealNAS: equal attention for every op) or 'normal' (DARTS: scale * N(0, 1)).
    scale: standard deviation of the 'normal' init.
    edge_betas: add one beta per edge and cell type, initialised like the alphas.
  """
  if init not in ALPHA_INITS:
    raise ValueError(f'alpha init {init!r} is not allowed; allowed: {", ".join(ALPHA_INITS)}')
  shapes = {cell: (num_edges(steps), NUM_OPS) for cell in CELLS}
  if edge_betas:
    shapes.update({beta_key(cell): (num_edges(steps),) for cell in CELLS})
  keys = dict(zip(shapes, jax.random.split(key, len(shapes)), strict=True))
  if init == 'zeros':
    return {name: jnp.zeros(shape) for name, shape in shapes.items()}
  return {name: scale * jax.random.normal(keys[name], shape) for name, shape in shapes.items()}


def node_softmax(betas: jax.Array) -> jax.Array:
  """PC-DARTS edge normalisation: a softmax over each node's incoming edges, (E,) -> (E,)."""
  ranges = node_edge_ranges(steps_of(betas.shape[-1]))
  return jnp.concatenate([jax.nn.softmax(betas[..., a:b], axis=-1) for a, b in ranges], axis=-1)


def arch_weights(alphas: dict[str, jax.Array], decisions: Any = None) -> dict[str, jax.Array]:
  """Per-edge op mixing weights `{'normal': (E, O), 'reduce': (E, O)}`.

  The softmax over each edge's ops, times the edge's node-normalised beta where the pytree has
  betas. `decisions` (SGAS, `search.sgas`): a decided edge runs only its op with weight 1, a
  pruned edge contributes nothing; neither passes a gradient to its alphas.
  """
  weights = {}
  for cell in CELLS:
    w = jax.nn.softmax(alphas[cell], axis=-1)
    if beta_key(cell) in alphas:
      w = w * node_softmax(alphas[beta_key(cell)])[:, None]
    if decisions is not None:
      op, pruned = decisions[cell]['op'], decisions[cell]['pruned']
      w = jnp.where((op >= 0)[:, None], jax.nn.one_hot(op, w.shape[-1], dtype=w.dtype), w)
      w = jnp.where(pruned[:, None], jnp.zeros_like(w), w)
    weights[cell] = w
  return weights


def edge_weights(alphas: dict[str, Any]) -> dict[str, np.ndarray | None]:
  """The node-normalised betas per cell type as numpy (None without betas), for the genotype."""
  return {
    cell: np.asarray(node_softmax(jnp.asarray(alphas[beta_key(cell)])))
    if beta_key(cell) in alphas
    else None
    for cell in CELLS
  }
