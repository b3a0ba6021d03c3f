"""Architectures sampled at random from the DARTS search space, reproducibly from a seed.

UnrealNAS (Section 3.1) measures a dataset's difficulty with a probe network, an architecture
sampled at random from the DARTS space, and its distinguishability with many of them. A sampled
cell is what the DARTS derivation rule could produce: each intermediate node takes two distinct
predecessors (cell inputs or earlier nodes), each through one of the 7 ops other than 'none',
and the cell output concatenates the last `multiplier` nodes.
"""

from __future__ import annotations

import math

import numpy as np

from unreal_nas_jax.space.genotypes import Gene, Genotype
from unreal_nas_jax.space.primitives import PRIMITIVES, SEARCHED_OP_INDICES

SEARCHED_OPS: tuple[str, ...] = tuple(PRIMITIVES[k] for k in SEARCHED_OP_INDICES)


def space_size(steps: int = 4) -> int:
  """The number of distinct genotypes (normal and reduction cell) with `steps` nodes per cell."""
  ops = len(SEARCHED_OPS)
  per_cell = math.prod(math.comb(2 + i, 2) * ops * ops for i in range(steps))
  return per_cell * per_cell


def _random_cell(rng: np.random.Generator, steps: int) -> tuple[Gene, ...]:
  genes = []
  for node in range(steps):
    # Two distinct predecessors, listed by source so that equal cells are equal tuples.
    sources = sorted(int(s) for s in rng.choice(2 + node, size=2, replace=False))
    ops = rng.integers(0, len(SEARCHED_OPS), size=2)
    genes.extend((SEARCHED_OPS[int(op)], src) for op, src in zip(ops, sources, strict=True))
  return tuple(genes)


def random_genotype(rng: np.random.Generator, steps: int = 4, multiplier: int = 4) -> Genotype:
  """One genotype drawn uniformly from the DARTS space (both cells), using `rng`."""
  if not 1 <= multiplier <= steps:
    raise ValueError(f'multiplier={multiplier} is not allowed; allowed: 1..steps={steps}')
  concat = tuple(range(2 + steps - multiplier, 2 + steps))
  normal = _random_cell(rng, steps)
  reduce = _random_cell(rng, steps)
  return Genotype(normal=normal, normal_concat=concat, reduce=reduce, reduce_concat=concat)


def random_genotypes(seed: int, count: int, steps: int = 4, multiplier: int = 4) -> list[Genotype]:
  """`count` distinct genotypes from `seed`; the first k of a longer list are the list for k.

  Raises:
    ValueError: `count` < 1, or more than the space holds (tiny `steps` only).
  """
  if count < 1:
    raise ValueError(f'count={count} is not allowed; allowed: an integer >= 1')
  available = space_size(steps)
  if count > available:
    raise ValueError(f'count={count} is more than the {available} genotypes of {steps}-node cells')
  rng = np.random.default_rng(seed)
  seen: set[Genotype] = set()
  found = []
  while len(found) < count:
    genotype = random_genotype(rng, steps, multiplier)
    if genotype not in seen:  # a repeat is redrawn: the architectures of a probe are distinct
      seen.add(genotype)
      found.append(genotype)
  return found
