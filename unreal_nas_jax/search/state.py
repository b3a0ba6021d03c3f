"""The whole search state as one pytree: everything a resume needs, nothing in Python attributes."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax


@flax.struct.dataclass
class SearchState:
  """Search state.

  Attributes:
    step: global step counter (warm-up steps included), int32 scalar.
    params: supernet weights.
    batch_stats: BatchNorm running statistics (forwards at the real weights update them).
    alphas: architecture parameters `{'normal': (E, O), 'reduce': (E, O)}`.
    weight_opt_state: state of `optim.weight_sgd(...).tx` (holds the momentum buffer).
    arch_opt_state: state of `optim.arch_adam` (Adam moments).
    rng: PRNG key for stochastic search methods.
    decisions: SGAS's decided and pruned edges and score history (`search.sgas`); present and
      unused (nothing decided) for the other methods.
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  alphas: Any
  weight_opt_state: Any
  arch_opt_state: Any
  rng: jax.Array
  decisions: Any
