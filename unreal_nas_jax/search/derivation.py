"""The genotype a search state gives, for every search method.

DARTS and PC-DARTS: the DARTS rule (`space.derive`) on the alphas, PC-DARTS weighting each edge
by its node-normalised beta. SGAS: its decisions, completed greedily by the current scores if the
run ended before every node had two decided edges.
"""

from __future__ import annotations

from typing import Any

import jax

from unreal_nas_jax.search import arch, sgas
from unreal_nas_jax.space import derive
from unreal_nas_jax.space.genotypes import Genotype

SEARCH_METHODS = ('darts', 'sgas', 'pc_darts')

_sgas_update = jax.jit(sgas.update, static_argnames='criterion')


def search_genotype(
  alphas: dict[str, Any],
  decisions: Any,
  *,
  method: str,
  steps: int,
  multiplier: int,
  sgas_criterion: int = 1,
) -> Genotype:
  """The genotype of a search whose architecture state is (`alphas`, `decisions`)."""
  if method == 'sgas':
    while not sgas.is_complete(decisions):
      decisions, _ = _sgas_update(alphas, decisions, criterion=sgas_criterion, decide=True)
    return sgas.genotype(decisions, multiplier=multiplier)
  betas = arch.edge_weights(alphas)
  return derive.derive_genotype(
    alphas['normal'],
    alphas['reduce'],
    steps=steps,
    multiplier=multiplier,
    edge_weights_normal=betas['normal'],
    edge_weights_reduce=betas['reduce'],
  )
