"""The optimizers of a search and of a retraining, reproducing PyTorch's update order exactly.

Weights (torch.optim.SGD with weight_decay, after clip_grad_norm_), in both the search and the
retraining:
  g <- clip_by_global_norm(g, clip);  g <- g + wd * w;  buf <- mu * buf + g;  w <- w - lr * buf.
The learning rate is applied by the step (it is an array input, constant within an epoch), so the
transform returns the momentum direction `buf`. The second-order virtual step of DARTS reuses the
`direction` piece (coupled decay + momentum, reading the same momentum buffer) without clipping,
exactly as the reference's unrolled model does.

Architecture (torch.optim.Adam with weight_decay): g <- g + wd * a, then Adam, then -lr.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import optax


class WeightSGD(NamedTuple):
  """SGD without the learning rate, and the piece of it the virtual step reuses.

  Attributes:
    tx: clip -> coupled weight decay -> momentum; its state is {'clip': ..., 'direction': ...}.
    direction: coupled weight decay -> momentum alone (no clipping); its state is
      `direction_state(tx state)`.
  """

  tx: optax.GradientTransformation
  direction: optax.GradientTransformation


def weight_sgd(*, weight_decay: float, momentum: float, grad_clip: float) -> WeightSGD:
  """torch.optim.SGD(momentum, weight_decay) after clip_grad_norm_(grad_clip); 0 disables clip."""
  direction = optax.chain(optax.add_decayed_weights(weight_decay), optax.trace(decay=momentum))
  clip = optax.clip_by_global_norm(grad_clip) if grad_clip > 0 else optax.identity()
  return WeightSGD(
    tx=optax.named_chain(('clip', clip), ('direction', direction)), direction=direction
  )


def direction_state(weight_opt_state: Any) -> Any:
  """The state of `WeightSGD.direction` (the momentum buffer) inside the state of `WeightSGD.tx`."""
  return weight_opt_state['direction']


def arch_adam(
  *, lr: float, b1: float, b2: float, eps: float, weight_decay: float
) -> optax.GradientTransformation:
  """Adam with coupled L2 (torch.optim.Adam(weight_decay=...)), learning rate included."""
  return optax.chain(
    optax.add_decayed_weights(weight_decay),
    optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
    optax.scale(-lr),
  )


def cosine_lr(epoch: int, total_epochs: int, lr: float, lr_min: float) -> float:
  """Epoch-wise cosine annealing (torch CosineAnnealingLR stepped once per epoch)."""
  return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * epoch / total_epochs))
