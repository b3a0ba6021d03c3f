"""SGAS: sequential greedy edge decisions on top of DARTS (spec section 7), as pure functions.

After every search epoch each edge gets a score from the softmax p of its alphas:
  importance  1 - p_none
  certainty   1 - H(q) / ln 7, q = p over the 7 ops other than 'none', renormalised
  stability   (criterion 2) mean over the last 4 epochs' stored q of sum_k min(q_then, q_now),
              0 before any history; the current q is stored after scoring
  score       N(importance) * N(certainty) [* N(stability)], N = min-max over the cell's edges
              (all zeros when constant).
At a decision epoch the best-scoring undecided edge of each cell type is fixed to its strongest
op other than 'none' (lowest index on ties), and any node that now has two decided edges has its
other edges pruned. Decided edges then run only their op and pruned edges nothing
(`arch.arch_weights`). The decisions are arrays in the search state, so deciding never changes a
compiled program; only the batch, which grows after each decision, does.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from unreal_nas_jax.search.arch import CELLS, steps_of
from unreal_nas_jax.space.genotypes import Genotype
from unreal_nas_jax.space.primitives import (
  NONE_INDEX,
  NUM_OPS,
  PRIMITIVES,
  SEARCHED_OP_INDICES,
  edge_list,
  node_edge_ranges,
  num_edges,
)

CRITERIA = (1, 2)
HISTORY = 4  # epochs of q kept for the stability of criterion 2


def init_decisions(steps: int) -> dict[str, dict[str, jax.Array]]:
  """Nothing decided or pruned, no history: per cell type `op` (E,) int32 (-1: undecided),
  `pruned` (E,) bool, `history` (HISTORY, E, 7) of past q, `history_len` int32."""
  e = num_edges(steps)
  return {
    cell: {
      'op': jnp.full((e,), -1, jnp.int32),
      'pruned': jnp.zeros((e,), bool),
      'history': jnp.zeros((HISTORY, e, NUM_OPS - 1), jnp.float32),
      'history_len': jnp.zeros((), jnp.int32),
    }
    for cell in CELLS
  }


def _normalize(x: jax.Array) -> jax.Array:
  lo, hi = x.min(), x.max()
  return jnp.where(hi > lo, (x - lo) / jnp.where(hi > lo, hi - lo, 1.0), jnp.zeros_like(x))


def edge_scores(alphas: jax.Array, cell_decisions: dict[str, jax.Array], criterion: int):
  """Importance, certainty, stability and score of every edge of one cell type (each (E,))."""
  p = jax.nn.softmax(alphas.astype(jnp.float32), axis=-1)
  importance = 1.0 - p[:, NONE_INDEX]
  q = p[:, SEARCHED_OP_INDICES] / p[:, SEARCHED_OP_INDICES].sum(-1, keepdims=True)
  entropy = -jnp.sum(jnp.where(q > 0, q * jnp.log(jnp.where(q > 0, q, 1.0)), 0.0), axis=-1)
  certainty = 1.0 - entropy / math.log(NUM_OPS - 1)
  count = cell_decisions['history_len']
  kept = jnp.arange(HISTORY) < count  # the history is filled from index 0 and then rolled
  overlap = jnp.minimum(cell_decisions['history'], q[None]).sum(-1)  # (HISTORY, E)
  stability = jnp.where(
    count > 0, jnp.sum(jnp.where(kept[:, None], overlap, 0.0), 0) / jnp.maximum(count, 1), 0.0
  )
  score = _normalize(importance) * _normalize(certainty)
  if criterion == 2:
    score = score * _normalize(stability)
  return {
    'importance': importance,
    'certainty': certainty,
    'stability': stability,
    'score': score,
    'q': q,
  }


def _decide_cell(p_searched, score, cell_decisions, steps):
  op, pruned = cell_decisions['op'], cell_decisions['pruned']
  candidates = (op < 0) & ~pruned
  best = jnp.argmax(jnp.where(candidates, score, -jnp.inf))
  chosen = jnp.asarray(SEARCHED_OP_INDICES)[jnp.argmax(p_searched[best])]
  op = jnp.where(candidates.any(), op.at[best].set(chosen), op)
  ranges = node_edge_ranges(steps)
  node_of_edge = np.concatenate([np.full(b - a, i) for i, (a, b) in enumerate(ranges)])
  decided_per_node = jax.ops.segment_sum((op >= 0).astype(jnp.int32), node_of_edge, steps)
  full = decided_per_node[node_of_edge] >= 2
  return op, pruned | (full & (op < 0))


def update(
  alphas: dict[str, jax.Array], decisions: Any, decide: jax.Array | bool, *, criterion: int
):
  """One epoch end: scores, then (if `decide`) one decision per cell type, then the history.

  Returns (new decisions, {cell: scores}); jittable, `decide` may be a traced bool.
  """
  new, scores = {}, {}
  for cell in CELLS:
    d = decisions[cell]
    steps = steps_of(d['op'].shape[0])
    s = edge_scores(alphas[cell], d, criterion)
    p = jax.nn.softmax(alphas[cell].astype(jnp.float32), axis=-1)[:, SEARCHED_OP_INDICES]
    op, pruned = _decide_cell(p, s['score'], d, steps)
    op = jnp.where(decide, op, d['op'])
    pruned = jnp.where(decide, pruned, d['pruned'])
    # Append q: fill slots 0..HISTORY-1, then drop the oldest.
    full = d['history_len'] >= HISTORY
    rolled = jnp.where(full, jnp.roll(d['history'], -1, axis=0), d['history'])
    slot = jnp.minimum(d['history_len'], HISTORY - 1)
    history = rolled.at[slot].set(s.pop('q'))
    new[cell] = {
      'op': op,
      'pruned': pruned,
      'history': history,
      'history_len': jnp.minimum(d['history_len'] + 1, HISTORY),
    }
    scores[cell] = s
  return new, scores


def is_complete(decisions: Any) -> bool:
  """Every node of both cell types has two decided edges."""
  for cell in CELLS:
    op = np.asarray(decisions[cell]['op'])
    for a, b in node_edge_ranges(steps_of(op.shape[0])):
      if int((op[a:b] >= 0).sum()) < 2:
        return False
  return True


def genotype(decisions: Any, *, multiplier: int) -> Genotype:
  """The cells the decisions describe: each node's two decided edges in ascending edge order."""
  cells = {}
  for cell in CELLS:
    op = np.asarray(decisions[cell]['op'])
    steps = steps_of(op.shape[0])
    edges = edge_list(steps)
    genes = []
    for a, b in node_edge_ranges(steps):
      chosen = [e for e in range(a, b) if op[e] >= 0]
      if len(chosen) != 2:
        raise ValueError(f'{cell} node {edges[a][1]} has {len(chosen)} decided edges, not 2')
      genes += [(PRIMITIVES[int(op[e])], edges[e][0]) for e in chosen]
    cells[cell] = tuple(genes)
  concat = tuple(range(2 + steps - multiplier, steps + 2))
  return Genotype(cells['normal'], concat, cells['reduce'], concat)


def decision_count(search_epoch: int, *, start: int, every: int, steps: int) -> int:
  """Decisions made by the end of 0-based search epoch `search_epoch` (at most 2 * steps)."""
  if search_epoch < start:
    return 0
  return min((search_epoch - start) // every + 1, 2 * steps)


def is_decision_epoch(search_epoch: int, *, start: int, every: int, steps: int) -> bool:
  """Whether a decision is made at the end of 0-based search epoch `search_epoch`."""
  return (
    search_epoch >= start
    and (search_epoch - start) % every == 0
    and decision_count(search_epoch, start=start, every=every, steps=steps)
    > decision_count(search_epoch - 1, start=start, every=every, steps=steps)
  )
