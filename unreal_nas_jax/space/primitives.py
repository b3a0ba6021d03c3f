"""The DARTS search space as data: candidate ops and the cell's edge topology.

Everything that indexes an architecture matrix (alphas, masks, genotype derivation) reads the
op order and the edge order from here, so there is one source of truth.
"""

from __future__ import annotations

import dataclasses

import numpy as np

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
# The ops a derived gene may pick (all but 'none'), in PRIMITIVES order so that an argmax over
# them resolves ties to the lowest primitive index, as the reference does.
SEARCHED_OP_INDICES = np.array([k for k in range(NUM_OPS) if k != NONE_INDEX])

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


def reduction_indices(layers: int) -> tuple[int, ...]:
  """Cells that halve the resolution and double the channels: layers//3 and 2*layers//3."""
  return tuple(sorted({layers // 3, 2 * layers // 3}))


@dataclasses.dataclass(frozen=True)
class EdgeGroup:
  """The edges that leave a set of states of one shape, the unit a fused supernet computes.

  Attributes:
    name: a name for the group's parameters, e.g. 'from_inputs', 'from_node_0'.
    sources: the states read (0, 1: the cell inputs; j >= 2: node j - 2).
    targets: the nodes written, in order.
    edges: (len(sources), len(targets)) edge indices: edge (source s -> target t).
  """

  name: str
  sources: tuple[int, ...]
  targets: tuple[int, ...]
  edges: np.ndarray


def edge_groups(steps: int = 4) -> list[EdgeGroup]:
  """The cell's edges grouped by source: both inputs together (same shape, both ready), then each
  intermediate node but the last. Every node is complete when its group is reached."""
  index = {edge: e for e, edge in enumerate(edge_list(steps))}
  groups = [
    EdgeGroup(
      'from_inputs',
      (0, 1),
      tuple(range(steps)),
      np.asarray([[index[(src, t)] for t in range(steps)] for src in (0, 1)]),
    )
  ]
  for node in range(steps - 1):
    targets = tuple(range(node + 1, steps))
    edges = np.asarray([[index[(node + 2, t)] for t in targets]])
    groups.append(EdgeGroup(f'from_node_{node}', (node + 2,), targets, edges))
  return groups
