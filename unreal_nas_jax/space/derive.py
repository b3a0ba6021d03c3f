"""The DARTS derivation rule: architecture parameters -> a `Genotype` (reference section 3).

Per edge, the softmax of its op logits (optionally scaled by PC-DARTS edge weights, section 8);
per intermediate node, the two incoming edges whose strongest op other than 'none' is strongest,
each with that op. Ties resolve to the lowest edge and primitive index, as in the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unreal_nas_jax.space.genotypes import Gene, Genotype
from unreal_nas_jax.space.primitives import (
  NUM_OPS,
  PRIMITIVES,
  SEARCHED_OP_INDICES,
  edge_list,
  node_edge_ranges,
  num_edges,
)


def _softmax_rows(x: np.ndarray) -> np.ndarray:
  # Shifting by the row max keeps exp finite for large logits without changing the result.
  shifted = x - x.max(axis=-1, keepdims=True)
  e = np.exp(shifted)
  return e / e.sum(axis=-1, keepdims=True)


def derive_cell(weights: Any, steps: int = 4) -> tuple[Gene, ...]:
  """Derives one cell's genes from per-edge op weights (already softmaxed and edge-weighted).

  For each node its incoming edges are ranked by their largest non-`none` weight, descending, with
  ties keeping the lower edge index; the top two are kept in that ranked order, each with its
  argmax non-`none` op (lowest op index wins ties).

  Args:
    weights: Array of shape (num_edges(steps), len(PRIMITIVES)).
    steps: Number of intermediate nodes.

  Returns:
    `2 * steps` `(op, source)` genes, two per node in node order.

  Raises:
    ValueError: If `weights` has the wrong shape or non-finite entries.
  """
  w = np.asarray(weights, dtype=np.float64)
  expected = (num_edges(steps), NUM_OPS)
  if w.shape != expected:
    raise ValueError(f'cell weights have shape {w.shape}; expected {expected} for steps={steps}')
  if not np.all(np.isfinite(w)):
    raise ValueError('cell weights contain NaN or infinite values; cannot rank edges')
  edges = edge_list(steps)
  searched = w[:, SEARCHED_OP_INDICES]
  strength = searched.max(axis=1)
  genes: list[Gene] = []
  for start, end in node_edge_ranges(steps):
    # A stable sort of the negated strengths ranks descending while ties keep edge order.
    ranked = np.argsort(-strength[start:end], kind='stable')[:2]
    for offset in ranked:
      edge = start + int(offset)
      op = PRIMITIVES[int(SEARCHED_OP_INDICES[int(np.argmax(searched[edge]))])]
      genes.append((op, edges[edge][0]))
  return tuple(genes)


def _cell_weights(alphas: Any, edge_weights: Any, steps: int, cell: str) -> np.ndarray:
  a = np.asarray(alphas, dtype=np.float64)
  expected = (num_edges(steps), NUM_OPS)
  if a.shape != expected:
    raise ValueError(
      f'alphas_{cell} has shape {a.shape}; expected {expected} '
      f'(num_edges(steps={steps}), len(PRIMITIVES))'
    )
  if not np.all(np.isfinite(a)):
    raise ValueError(f'alphas_{cell} contains NaN or infinite values')
  w = _softmax_rows(a)
  if edge_weights is not None:
    beta = np.asarray(edge_weights, dtype=np.float64)
    if beta.shape != (expected[0],):
      raise ValueError(
        f'edge_weights_{cell} has shape {beta.shape}; expected ({expected[0]},) for steps={steps}'
      )
    if not np.all(np.isfinite(beta)):
      raise ValueError(f'edge_weights_{cell} contains NaN or infinite values')
    w = w * beta[:, None]
  return w


def derive_genotype(
  alphas_normal: Any,
  alphas_reduce: Any,
  *,
  steps: int = 4,
  multiplier: int = 4,
  edge_weights_normal: Any = None,
  edge_weights_reduce: Any = None,
) -> Genotype:
  """Derives a genotype from raw architecture logits with the DARTS rule.

  Args:
    alphas_normal: Normal-cell logits, shape (num_edges(steps), len(PRIMITIVES)), numpy or jax.
    alphas_reduce: Reduction-cell logits, same shape.
    steps: Number of intermediate nodes per cell.
    multiplier: Number of trailing nodes the cell output concatenates.
    edge_weights_normal: Optional PC-DARTS edge weights (betas already normalised per node),
      shape (num_edges(steps),); each edge's op weights are scaled by it before ranking.
    edge_weights_reduce: Same for the reduction cell.

  Returns:
    The derived `Genotype`; concat is `range(2 + steps - multiplier, steps + 2)`.

  Raises:
    ValueError: On wrong shapes, non-finite values or an out-of-range `multiplier`.
  """
  if steps < 1:
    raise ValueError(f'steps must be >= 1; got {steps}')
  if not 1 <= multiplier <= steps:
    raise ValueError(f'multiplier must be in [1, steps={steps}]; got {multiplier}')
  w_normal = _cell_weights(alphas_normal, edge_weights_normal, steps, 'normal')
  w_reduce = _cell_weights(alphas_reduce, edge_weights_reduce, steps, 'reduce')
  concat = tuple(range(2 + steps - multiplier, steps + 2))
  return Genotype(
    normal=derive_cell(w_normal, steps),
    normal_concat=concat,
    reduce=derive_cell(w_reduce, steps),
    reduce_concat=concat,
  )
