"""Cell genotypes: the discrete architecture a search produces and a retraining network builds.

A genotype lists, per intermediate node of a normal and a reduction cell, two `(op, source)` inputs
and which nodes the cell output concatenates. This module defines the type and (de)serialises it
as JSON with strict validation; `derive` turns architecture parameters into one (the DARTS rule)
and `published` holds the cells of DARTS, PC-DARTS and SGAS by name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from unreal_nas_jax import files
from unreal_nas_jax.files import write_json_atomic
from unreal_nas_jax.space.primitives import (
  EXTRA_EVAL_OPS,
  PRIMITIVES,
)

Gene = tuple[str, int]

# 'none' is a search-time device for pruning, never a retrained op; the extra ops appear only in
# hand-designed published cells (NASNet, AmoebaNet).
GENOTYPE_OPS: tuple[str, ...] = tuple(op for op in PRIMITIVES if op != 'none') + EXTRA_EVAL_OPS

_FIELDS = ('normal', 'normal_concat', 'reduce', 'reduce_concat')
_CELLS = ('normal', 'reduce')


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
  """Writes `g` as JSON to `path` (atomically)."""
  write_json_atomic(path, genotype_to_json(g), indent=2)


def load_genotype(path: str | os.PathLike) -> Genotype:
  """Reads a genotype JSON file written by `save_genotype` (or the search's genotype.json).

  Raises:
    ValueError: If the file is not valid JSON or not a valid genotype; the message names the path
      and the field.
  """
  path = os.fspath(path)
  text = files.read_text(path)
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
