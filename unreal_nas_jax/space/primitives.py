"""The DARTS search space as data: candidate ops and the cell's edge topology.

Everything that indexes an architecture matrix (alphas, masks, genotype derivation) reads the
op order and the edge order from here, so there is one source of truth.
"""

from __future__ import annotations

# The column order of every (num_edges, num_ops) architecture matrix.
PRIMITIVES: tuple[str, ...] = (
  'none',
  'max_pool_3x3',
  'avg_pool_3x3',
  'skip_connect',
  'sep_conv_3x3',
  'sep_conv_5x5',
  'dil_conv_3x3',
  'dil_conv_5x5',
)
NUM_OPS = len(PRIMITIVES)
NONE_INDEX = PRIMITIVES.index('none')

# Ops that only appear in published (non-searched) cells such as NASNet and AmoebaNet.
EXTRA_EVAL_OPS: tuple[str, ...] = ('sep_conv_7x7', 'conv_7x1_1x7')


def num_edges(steps: int = 4) -> int:
  """Edges of a cell with `steps` intermediate nodes: node i has 2 + i inputs (14 for 4 nodes)."""
  return sum(2 + i for i in range(steps))


def edge_list(steps: int = 4) -> list[tuple[int, int]]:
  """(source state, target node) per edge, in the reference's edge order.

  States 0 and 1 are the two cell inputs and state j >= 2 is intermediate node j - 2. Edges are
  grouped by target node, sources ascending: node 0 owns edges 0-1, node 1 edges 2-4, node 2 edges
  5-8, node 3 edges 9-13. Every source of an edge is computed before any edge that reads it.
  """
  return [(src, node) for node in range(steps) for src in range(2 + node)]


def node_edge_ranges(steps: int = 4) -> list[tuple[int, int]]:
  """[start, end) edge index range of each intermediate node."""
  ranges, start = [], 0
  for node in range(steps):
    ranges.append((start, start + 2 + node))
    start += 2 + node
  return ranges
