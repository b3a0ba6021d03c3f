"""Cell genotypes: the discrete architecture a search produces and a retraining network builds.

A genotype lists, per intermediate node of a normal and a reduction cell, two `(op, source)` inputs
and which nodes the cell output concatenates. This module derives genotypes from architecture
parameters (the DARTS rule, optionally with PC-DARTS edge weights), (de)serialises them as JSON with
strict validation, and ships the published cells of DARTS, PC-DARTS and SGAS by name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from unreal_nas_jax.space.primitives import (
  EXTRA_EVAL_OPS,
  NONE_INDEX,
  NUM_OPS,
  PRIMITIVES,
  edge_list,
  node_edge_ranges,
  num_edges,
)

Gene = tuple[str, int]

# 'none' is a search-time device for pruning, never a retrained op; the extra ops appear only in
# hand-designed published cells (NASNet, AmoebaNet).
GENOTYPE_OPS: tuple[str, ...] = tuple(op for op in PRIMITIVES if op != 'none') + EXTRA_EVAL_OPS

_FIELDS = ('normal', 'normal_concat', 'reduce', 'reduce_concat')
_CELLS = ('normal', 'reduce')
# Column indices of the ops a derived gene may pick, in PRIMITIVES order so that argmax ties
# resolve to the lowest primitive index exactly as the reference does.
_SEARCHED_OP_COLUMNS = np.array([k for k in range(NUM_OPS) if k != NONE_INDEX])


class Genotype(NamedTuple):
  """A discrete cell pair.

  Attributes:
    normal: `(op, source)` genes of the normal cell, two per intermediate node in node order
      (entries 2i and 2i+1 feed node i + 2). Source 0 is c_{k-2}, 1 is c_{k-1}, j >= 2 is node j.
    normal_concat: State indices concatenated to form the normal cell's output.
    reduce: Genes of the reduction cell, same layout as `normal`.
    reduce_concat: State indices concatenated to form the reduction cell's output.
  """

  normal: tuple[Gene, ...]
  normal_concat: tuple[int, ...]
  reduce: tuple[Gene, ...]
  reduce_concat: tuple[int, ...]


# ----------------------------------------------------------------------------------------------
# Derivation (DARTS rule, reference section 3; PC-DARTS edge weights, section 8).
# ----------------------------------------------------------------------------------------------


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
  searched = w[:, _SEARCHED_OP_COLUMNS]
  strength = searched.max(axis=1)
  genes: list[Gene] = []
  for start, end in node_edge_ranges(steps):
    # A stable sort of the negated strengths ranks descending while ties keep edge order.
    ranked = np.argsort(-strength[start:end], kind='stable')[:2]
    for offset in ranked:
      edge = start + int(offset)
      op = PRIMITIVES[int(_SEARCHED_OP_COLUMNS[int(np.argmax(searched[edge]))])]
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


# ----------------------------------------------------------------------------------------------
# JSON (de)serialisation and validation.
# ----------------------------------------------------------------------------------------------


def genotype_to_json(g: Genotype) -> dict[str, list]:
  """Returns `g` as plain JSON-serialisable lists: `{'normal': [[op, source], ...], ...}`."""
  return {
    'normal': [[op, int(src)] for op, src in g.normal],
    'normal_concat': [int(i) for i in g.normal_concat],
    'reduce': [[op, int(src)] for op, src in g.reduce],
    'reduce_concat': [int(i) for i in g.reduce_concat],
  }


def _is_int(x: Any) -> bool:
  # bool is an int subclass, but true/false in a genotype file is a mistake, not a state index.
  return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _parse_genes(field: str, value: Any) -> tuple[Gene, ...]:
  if not isinstance(value, list | tuple):
    raise ValueError(
      f'genotype field {field!r}: expected a list of [op, source] pairs; got {type(value).__name__}'
    )
  if not value:
    raise ValueError(f'genotype field {field!r}: empty; need 2 [op, source] entries per node')
  if len(value) % 2:
    raise ValueError(
      f'genotype field {field!r}: {len(value)} entries; need an even number (2 per node)'
    )
  genes = []
  for k, entry in enumerate(value):
    where = f'{field}[{k}]'
    if not isinstance(entry, list | tuple) or len(entry) != 2:
      raise ValueError(f'genotype field {where!r}: expected an [op, source] pair; got {entry!r}')
    op, src = entry
    if not isinstance(op, str) or op not in GENOTYPE_OPS:
      raise ValueError(
        f'genotype field {where!r}: unknown op {op!r}; allowed: {", ".join(GENOTYPE_OPS)}'
      )
    node = k // 2 + 2
    if not _is_int(src):
      raise ValueError(f'genotype field {where!r}: source must be an integer; got {src!r}')
    if not 0 <= src < node:
      raise ValueError(
        f'genotype field {where!r}: source {src} out of range; entries {2 * (node - 2)} and '
        f'{2 * (node - 2) + 1} feed node {node}, so source must be in [0, {node - 1}]'
      )
    genes.append((op, int(src)))
  return tuple(genes)


def _parse_concat(field: str, value: Any, num_nodes: int) -> tuple[int, ...]:
  if not isinstance(value, list | tuple) or not value:
    raise ValueError(
      f'genotype field {field!r}: expected a non-empty list of node indices; got {value!r}'
    )
  last = num_nodes + 1
  for k, idx in enumerate(value):
    where = f'{field}[{k}]'
    if not _is_int(idx):
      raise ValueError(f'genotype field {where!r}: expected an integer; got {idx!r}')
    # The inputs 0 and 1 are never concatenated in the DARTS family; only intermediate nodes.
    if not 2 <= idx <= last:
      raise ValueError(
        f'genotype field {where!r}: concat index {idx} out of range; '
        f'allowed: node indices 2..{last} ({num_nodes} nodes)'
      )
  if len(set(value)) != len(value):
    raise ValueError(f'genotype field {field!r}: duplicate node indices in {list(value)}')
  return tuple(int(i) for i in value)


def genotype_from_json(d: Mapping[str, Any]) -> Genotype:
  """Builds a `Genotype` from the dict `genotype_to_json` produces, validating every field.

  Args:
    d: Mapping with exactly the keys normal, normal_concat, reduce, reduce_concat.

  Returns:
    The validated `Genotype`.

  Raises:
    ValueError: With a one-line message naming the offending field and what is allowed.
  """
  if not isinstance(d, Mapping):
    raise ValueError(
      f'genotype must be a JSON object with fields {list(_FIELDS)}; got {type(d).__name__}'
    )
  for name in _FIELDS:
    if name not in d:
      raise ValueError(f'genotype field {name!r}: missing; required fields: {", ".join(_FIELDS)}')
  extra = sorted(str(k) for k in d if k not in _FIELDS)
  if extra:
    # A misspelt key would otherwise be silently ignored.
    raise ValueError(f'genotype field {extra[0]!r}: unknown field; allowed: {", ".join(_FIELDS)}')
  normal = _parse_genes('normal', d['normal'])
  reduce = _parse_genes('reduce', d['reduce'])
  return Genotype(
    normal=normal,
    normal_concat=_parse_concat('normal_concat', d['normal_concat'], len(normal) // 2),
    reduce=reduce,
    reduce_concat=_parse_concat('reduce_concat', d['reduce_concat'], len(reduce) // 2),
  )


def validate_genotype(g: Genotype) -> Genotype:
  """Checks a `Genotype` built in code by the same rules as `genotype_from_json`; returns it."""
  return genotype_from_json(genotype_to_json(g))


def save_genotype(path: str | os.PathLike, g: Genotype) -> None:
  """Writes `g` as JSON to `path` (via a temporary file, so readers never see half a file)."""
  path = os.fspath(path)
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    json.dump(genotype_to_json(g), f, indent=2)
    f.write('\n')
  os.replace(tmp, path)


def load_genotype(path: str | os.PathLike) -> Genotype:
  """Reads a genotype JSON file written by `save_genotype` (or the search's genotype.json).

  Raises:
    ValueError: If the file is not valid JSON or not a valid genotype; the message names the path
      and the field.
  """
  path = os.fspath(path)
  with open(path) as f:
    text = f.read()
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f'{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})') from e
  try:
    return genotype_from_json(data)
  except ValueError as e:
    raise ValueError(f'{path}: {e}') from e


# ----------------------------------------------------------------------------------------------
# Inspection.
# ----------------------------------------------------------------------------------------------


def _format_cell(genes: Sequence[Gene], concat: Sequence[int]) -> str:
  nodes = [' '.join(f'{op}@{src}' for op, src in genes[i : i + 2]) for i in range(0, len(genes), 2)]
  return f'{" | ".join(nodes)} (concat {list(concat)})'


def format_genotype(g: Genotype) -> str:
  """Two lines, one per cell: `normal: op@src op@src | ... (concat [2, 3, 4, 5])`."""
  return (
    f'normal: {_format_cell(g.normal, g.normal_concat)}\n'
    f'reduce: {_format_cell(g.reduce, g.reduce_concat)}'
  )


def count_op(g: Genotype, op: str = 'skip_connect', cell: str = 'normal') -> int:
  """Number of genes of `cell` ('normal' or 'reduce') that use `op`."""
  if cell not in _CELLS:
    raise ValueError(f'cell must be one of {", ".join(_CELLS)}; got {cell!r}')
  return sum(1 for name, _ in getattr(g, cell) if name == op)


# ----------------------------------------------------------------------------------------------
# Published genotypes (reference genotypes.md), transcribed verbatim: in-node input order matters
# for exact round trips, so do not sort.
# ----------------------------------------------------------------------------------------------

# fmt: off
NASNet = Genotype(
  normal=(
    ('sep_conv_5x5', 1), ('sep_conv_3x3', 0),
    ('sep_conv_5x5', 0), ('sep_conv_3x3', 0),
    ('avg_pool_3x3', 1), ('skip_connect', 0),
    ('avg_pool_3x3', 0), ('avg_pool_3x3', 0),
    ('sep_conv_3x3', 1), ('skip_connect', 1),
  ),
  normal_concat=(2, 3, 4, 5, 6),
  reduce=(
    ('sep_conv_5x5', 1), ('sep_conv_7x7', 0),
    ('max_pool_3x3', 1), ('sep_conv_7x7', 0),
    ('avg_pool_3x3', 1), ('sep_conv_5x5', 0),
    ('skip_connect', 3), ('avg_pool_3x3', 2),
    ('sep_conv_3x3', 2), ('max_pool_3x3', 1),
  ),
  reduce_concat=(4, 5, 6),
)
AmoebaNet = Genotype(
  normal=(
    ('avg_pool_3x3', 0), ('max_pool_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 2),
    ('sep_conv_3x3', 0), ('avg_pool_3x3', 3),
    ('sep_conv_3x3', 1), ('skip_connect', 1),
    ('skip_connect', 0), ('avg_pool_3x3', 1),
  ),
  normal_concat=(4, 5, 6),
  reduce=(
    ('avg_pool_3x3', 0), ('sep_conv_3x3', 1),
    ('max_pool_3x3', 0), ('sep_conv_7x7', 2),
    ('sep_conv_7x7', 0), ('avg_pool_3x3', 1),
    ('max_pool_3x3', 0), ('max_pool_3x3', 1),
    ('conv_7x1_1x7', 0), ('sep_conv_3x3', 5),
  ),
  reduce_concat=(3, 4, 6),
)
DARTS_V1 = Genotype(
  normal=(
    ('sep_conv_3x3', 1), ('sep_conv_3x3', 0),
    ('skip_connect', 0), ('sep_conv_3x3', 1),
    ('skip_connect', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('skip_connect', 2),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('max_pool_3x3', 0), ('max_pool_3x3', 1),
    ('skip_connect', 2), ('max_pool_3x3', 0),
    ('max_pool_3x3', 0), ('skip_connect', 2),
    ('skip_connect', 2), ('avg_pool_3x3', 0),
  ),
  reduce_concat=(2, 3, 4, 5),
)
DARTS_V2 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 1), ('skip_connect', 0),
    ('skip_connect', 0), ('dil_conv_3x3', 2),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('max_pool_3x3', 0), ('max_pool_3x3', 1),
    ('skip_connect', 2), ('max_pool_3x3', 1),
    ('max_pool_3x3', 0), ('skip_connect', 2),
    ('skip_connect', 2), ('max_pool_3x3', 1),
  ),
  reduce_concat=(2, 3, 4, 5),
)
PC_DARTS_cifar = Genotype(
  normal=(
    ('sep_conv_3x3', 1), ('skip_connect', 0),
    ('sep_conv_3x3', 0), ('dil_conv_3x3', 1),
    ('sep_conv_5x5', 0), ('sep_conv_3x3', 1),
    ('avg_pool_3x3', 0), ('dil_conv_3x3', 1),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('sep_conv_5x5', 1), ('max_pool_3x3', 0),
    ('sep_conv_5x5', 1), ('sep_conv_5x5', 2),
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 3),
    ('sep_conv_3x3', 1), ('sep_conv_3x3', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
PC_DARTS_image = Genotype(
  normal=(
    ('skip_connect', 1), ('sep_conv_3x3', 0),
    ('sep_conv_3x3', 0), ('skip_connect', 1),
    ('sep_conv_3x3', 1), ('sep_conv_3x3', 3),
    ('sep_conv_3x3', 1), ('dil_conv_5x5', 4),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('sep_conv_3x3', 0), ('skip_connect', 1),
    ('dil_conv_5x5', 2), ('max_pool_3x3', 1),
    ('sep_conv_3x3', 2), ('sep_conv_3x3', 1),
    ('sep_conv_5x5', 0), ('sep_conv_3x3', 3),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_1 = Genotype(
  normal=(
    ('skip_connect', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 1),
    ('sep_conv_3x3', 1), ('sep_conv_3x3', 2),
    ('dil_conv_5x5', 2), ('dil_conv_3x3', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('max_pool_3x3', 0), ('dil_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 2),
    ('max_pool_3x3', 1), ('skip_connect', 2),
    ('skip_connect', 2), ('skip_connect', 3),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_2 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('dil_conv_3x3', 1),
    ('skip_connect', 0), ('dil_conv_3x3', 2),
    ('sep_conv_3x3', 1), ('sep_conv_3x3', 2),
    ('sep_conv_3x3', 2), ('sep_conv_5x5', 4),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('avg_pool_3x3', 0), ('sep_conv_3x3', 1),
    ('max_pool_3x3', 0), ('skip_connect', 2),
    ('max_pool_3x3', 0), ('sep_conv_5x5', 2),
    ('max_pool_3x3', 1), ('dil_conv_5x5', 3),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_3 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('dil_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_5x5', 1), ('sep_conv_5x5', 3),
    ('skip_connect', 0), ('dil_conv_5x5', 2),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('max_pool_3x3', 0), ('dil_conv_5x5', 1),
    ('sep_conv_3x3', 0), ('skip_connect', 2),
    ('sep_conv_3x3', 1), ('skip_connect', 2),
    ('max_pool_3x3', 0), ('max_pool_3x3', 1),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_4 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('skip_connect', 0), ('skip_connect', 2),
    ('sep_conv_3x3', 1), ('sep_conv_3x3', 2),
    ('dil_conv_3x3', 2), ('dil_conv_5x5', 4),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('avg_pool_3x3', 0), ('sep_conv_5x5', 1),
    ('avg_pool_3x3', 0), ('dil_conv_5x5', 2),
    ('max_pool_3x3', 0), ('dil_conv_5x5', 2),
    ('max_pool_3x3', 0), ('skip_connect', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_5 = Genotype(
  normal=(
    ('dil_conv_5x5', 0), ('sep_conv_3x3', 1),
    ('skip_connect', 0), ('sep_conv_3x3', 1),
    ('skip_connect', 0), ('sep_conv_3x3', 2),
    ('dil_conv_5x5', 2), ('sep_conv_5x5', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('max_pool_3x3', 0), ('sep_conv_5x5', 1),
    ('max_pool_3x3', 0), ('skip_connect', 2),
    ('sep_conv_3x3', 2), ('sep_conv_5x5', 3),
    ('avg_pool_3x3', 0), ('skip_connect', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_6 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('dil_conv_3x3', 1), ('dil_conv_3x3', 2),
    ('sep_conv_3x3', 1), ('dil_conv_5x5', 2),
    ('skip_connect', 1), ('sep_conv_3x3', 2),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('avg_pool_3x3', 0), ('max_pool_3x3', 1),
    ('max_pool_3x3', 1), ('dil_conv_5x5', 2),
    ('max_pool_3x3', 0), ('dil_conv_3x3', 3),
    ('skip_connect', 2), ('dil_conv_5x5', 3),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_7 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 1),
    ('skip_connect', 0), ('sep_conv_5x5', 2),
    ('sep_conv_3x3', 2), ('dil_conv_5x5', 3),
    ('sep_conv_3x3', 0), ('dil_conv_3x3', 2),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('dil_conv_3x3', 0), ('avg_pool_3x3', 1),
    ('max_pool_3x3', 0), ('sep_conv_3x3', 2),
    ('max_pool_3x3', 1), ('dil_conv_5x5', 3),
    ('avg_pool_3x3', 0), ('sep_conv_5x5', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_8 = Genotype(
  normal=(
    ('sep_conv_5x5', 0), ('sep_conv_3x3', 1),
    ('dil_conv_3x3', 1), ('dil_conv_3x3', 2),
    ('skip_connect', 0), ('sep_conv_3x3', 1),
    ('dil_conv_5x5', 1), ('sep_conv_3x3', 2),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('max_pool_3x3', 1), ('skip_connect', 2),
    ('max_pool_3x3', 1), ('sep_conv_5x5', 2),
    ('max_pool_3x3', 0), ('sep_conv_5x5', 3),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_9 = Genotype(
  normal=(
    ('sep_conv_5x5', 0), ('sep_conv_5x5', 1),
    ('sep_conv_3x3', 1), ('dil_conv_3x3', 2),
    ('sep_conv_3x3', 1), ('dil_conv_5x5', 3),
    ('sep_conv_3x3', 1), ('dil_conv_3x3', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('avg_pool_3x3', 0), ('sep_conv_3x3', 1),
    ('max_pool_3x3', 0), ('dil_conv_5x5', 2),
    ('max_pool_3x3', 0), ('sep_conv_3x3', 2),
    ('max_pool_3x3', 1), ('skip_connect', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri1_CIFAR_10 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('dil_conv_5x5', 1),
    ('sep_conv_3x3', 0), ('dil_conv_3x3', 2),
    ('sep_conv_3x3', 1), ('dil_conv_3x3', 3),
    ('dil_conv_3x3', 2), ('dil_conv_3x3', 4),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('max_pool_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 2),
    ('max_pool_3x3', 0), ('max_pool_3x3', 1),
    ('max_pool_3x3', 0), ('sep_conv_3x3', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_1 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_5x5', 0), ('sep_conv_5x5', 1),
    ('skip_connect', 0), ('sep_conv_5x5', 2),
    ('sep_conv_3x3', 1), ('dil_conv_5x5', 2),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('max_pool_3x3', 0), ('sep_conv_5x5', 1),
    ('max_pool_3x3', 1), ('sep_conv_3x3', 2),
    ('max_pool_3x3', 0), ('sep_conv_3x3', 3),
    ('sep_conv_3x3', 0), ('dil_conv_5x5', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_2 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('skip_connect', 2),
    ('sep_conv_5x5', 1), ('sep_conv_3x3', 2),
    ('dil_conv_5x5', 1), ('sep_conv_3x3', 2),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('avg_pool_3x3', 0), ('max_pool_3x3', 1),
    ('max_pool_3x3', 0), ('sep_conv_5x5', 2),
    ('max_pool_3x3', 0), ('dil_conv_5x5', 2),
    ('avg_pool_3x3', 0), ('max_pool_3x3', 1),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_3 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 2),
    ('max_pool_3x3', 0), ('sep_conv_3x3', 3),
    ('sep_conv_3x3', 2), ('sep_conv_3x3', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('sep_conv_3x3', 0), ('max_pool_3x3', 1),
    ('dil_conv_3x3', 0), ('max_pool_3x3', 1),
    ('max_pool_3x3', 0), ('sep_conv_3x3', 2),
    ('max_pool_3x3', 0), ('sep_conv_5x5', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_4 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('dil_conv_5x5', 0), ('dil_conv_3x3', 2),
    ('sep_conv_3x3', 1), ('dil_conv_5x5', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('sep_conv_5x5', 0), ('dil_conv_3x3', 1),
    ('max_pool_3x3', 0), ('max_pool_3x3', 1),
    ('dil_conv_3x3', 0), ('dil_conv_5x5', 2),
    ('max_pool_3x3', 0), ('avg_pool_3x3', 1),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_5 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 1),
    ('skip_connect', 0), ('sep_conv_5x5', 1),
    ('dil_conv_3x3', 1), ('dil_conv_3x3', 2),
    ('sep_conv_3x3', 2), ('dil_conv_5x5', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('sep_conv_5x5', 0), ('skip_connect', 1),
    ('max_pool_3x3', 1), ('sep_conv_5x5', 2),
    ('max_pool_3x3', 0), ('sep_conv_5x5', 3),
    ('max_pool_3x3', 0), ('skip_connect', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_6 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('dil_conv_5x5', 2),
    ('sep_conv_3x3', 1), ('sep_conv_3x3', 3),
    ('dil_conv_5x5', 2), ('dil_conv_3x3', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('sep_conv_5x5', 0), ('sep_conv_5x5', 1),
    ('max_pool_3x3', 0), ('max_pool_3x3', 1),
    ('avg_pool_3x3', 0), ('sep_conv_5x5', 3),
    ('max_pool_3x3', 0), ('skip_connect', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_7 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('skip_connect', 1), ('dil_conv_3x3', 2),
    ('sep_conv_5x5', 1), ('dil_conv_5x5', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('max_pool_3x3', 0), ('avg_pool_3x3', 1),
    ('max_pool_3x3', 1), ('dil_conv_5x5', 2),
    ('max_pool_3x3', 1), ('skip_connect', 2),
    ('max_pool_3x3', 0), ('sep_conv_3x3', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_8 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 1),
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_5x5', 1), ('sep_conv_5x5', 2),
    ('sep_conv_3x3', 1), ('dil_conv_5x5', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('avg_pool_3x3', 0), ('skip_connect', 1),
    ('max_pool_3x3', 0), ('skip_connect', 2),
    ('max_pool_3x3', 0), ('sep_conv_5x5', 2),
    ('max_pool_3x3', 1), ('skip_connect', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_9 = Genotype(
  normal=(
    ('max_pool_3x3', 0), ('sep_conv_5x5', 1),
    ('sep_conv_5x5', 0), ('sep_conv_5x5', 1),
    ('dil_conv_3x3', 1), ('dil_conv_3x3', 3),
    ('sep_conv_3x3', 1), ('dil_conv_3x3', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 1),
    ('max_pool_3x3', 0), ('dil_conv_5x5', 2),
    ('dil_conv_5x5', 2), ('sep_conv_3x3', 3),
    ('avg_pool_3x3', 0), ('max_pool_3x3', 1),
  ),
  reduce_concat=(2, 3, 4, 5),
)
Cri2_CIFAR_10 = Genotype(
  normal=(
    ('sep_conv_3x3', 0), ('sep_conv_5x5', 1),
    ('sep_conv_5x5', 1), ('dil_conv_5x5', 2),
    ('sep_conv_3x3', 2), ('dil_conv_5x5', 3),
    ('max_pool_3x3', 0), ('dil_conv_3x3', 3),
  ),
  normal_concat=(2, 3, 4, 5),
  reduce=(
    ('avg_pool_3x3', 0), ('skip_connect', 1),
    ('sep_conv_5x5', 0), ('skip_connect', 2),
    ('max_pool_3x3', 0), ('sep_conv_5x5', 2),
    ('max_pool_3x3', 1), ('dil_conv_3x3', 2),
  ),
  reduce_concat=(2, 3, 4, 5),
)
# fmt: on

DARTS = DARTS_V2
PCDARTS = PC_DARTS_cifar
Cri1_CIFAR_Best = Cri1_CIFAR_3
Cri2_CIFAR_Best = Cri2_CIFAR_3
# SGAS retrains its best CIFAR cells on ImageNet under these names.
Cri1_ImageNet_1 = Cri1_CIFAR_1
Cri1_ImageNet_2 = Cri1_CIFAR_2
Cri1_ImageNet_3 = Cri1_CIFAR_3
Cri2_ImageNet_1 = Cri2_CIFAR_3
Cri2_ImageNet_2 = Cri2_CIFAR_4
Cri2_ImageNet_3 = Cri2_CIFAR_5

GENOTYPES: dict[str, Genotype] = {
  'NASNet': NASNet,
  'AmoebaNet': AmoebaNet,
  'DARTS_V1': DARTS_V1,
  'DARTS_V2': DARTS_V2,
  'PC_DARTS_cifar': PC_DARTS_cifar,
  'PC_DARTS_image': PC_DARTS_image,
  'Cri1_CIFAR_1': Cri1_CIFAR_1,
  'Cri1_CIFAR_2': Cri1_CIFAR_2,
  'Cri1_CIFAR_3': Cri1_CIFAR_3,
  'Cri1_CIFAR_4': Cri1_CIFAR_4,
  'Cri1_CIFAR_5': Cri1_CIFAR_5,
  'Cri1_CIFAR_6': Cri1_CIFAR_6,
  'Cri1_CIFAR_7': Cri1_CIFAR_7,
  'Cri1_CIFAR_8': Cri1_CIFAR_8,
  'Cri1_CIFAR_9': Cri1_CIFAR_9,
  'Cri1_CIFAR_10': Cri1_CIFAR_10,
  'Cri2_CIFAR_1': Cri2_CIFAR_1,
  'Cri2_CIFAR_2': Cri2_CIFAR_2,
  'Cri2_CIFAR_3': Cri2_CIFAR_3,
  'Cri2_CIFAR_4': Cri2_CIFAR_4,
  'Cri2_CIFAR_5': Cri2_CIFAR_5,
  'Cri2_CIFAR_6': Cri2_CIFAR_6,
  'Cri2_CIFAR_7': Cri2_CIFAR_7,
  'Cri2_CIFAR_8': Cri2_CIFAR_8,
  'Cri2_CIFAR_9': Cri2_CIFAR_9,
  'Cri2_CIFAR_10': Cri2_CIFAR_10,
  'DARTS': DARTS,
  'PCDARTS': PCDARTS,
  'Cri1_CIFAR_Best': Cri1_CIFAR_Best,
  'Cri2_CIFAR_Best': Cri2_CIFAR_Best,
  'Cri1_ImageNet_1': Cri1_ImageNet_1,
  'Cri1_ImageNet_2': Cri1_ImageNet_2,
  'Cri1_ImageNet_3': Cri1_ImageNet_3,
  'Cri2_ImageNet_1': Cri2_ImageNet_1,
  'Cri2_ImageNet_2': Cri2_ImageNet_2,
  'Cri2_ImageNet_3': Cri2_ImageNet_3,
}


def genotype_names() -> list[str]:
  """Names accepted by `get_genotype`: the published cells, then the aliases."""
  return list(GENOTYPES)


def get_genotype(name: str) -> Genotype:
  """Returns the published genotype called `name` (case-sensitive, as in the source repositories).

  Raises:
    ValueError: If `name` is unknown; the message lists the known names.
  """
  try:
    return GENOTYPES[name]
  except KeyError:
    raise ValueError(f'unknown genotype {name!r}; known: {", ".join(GENOTYPES)}') from None
