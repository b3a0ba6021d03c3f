"""The two optimizers of a DARTS search, reproducing PyTorch's update order exactly.

Weights (torch.optim.SGD with weight_decay, after clip_grad_norm_):
  g <- clip_by_global_norm(g, 5);  g <- g + wd * w;  buf <- mu * buf + g;  w <- w - lr * buf.
The learning rate is applied by the step (it is an array input, constant within an epoch), so the
transform here returns the momentum direction `buf`. The second-order virtual step reuses
`weight_direction` (coupled decay + momentum, from the same optimizer state) without clipping,
exactly as the reference's unrolled model does.

Architecture (torch.optim.Adam with weight_decay): g <- g + wd * a, then Adam, then -lr.
"""

from __future__ import annotations

import math

import optax


def weight_direction(weight_decay: float, momentum: float) -> optax.GradientTransformation:
  """Coupled L2 then heavy-ball momentum (torch SGD without the learning rate)."""
  return optax.chain(optax.add_decayed_weights(weight_decay), optax.trace(decay=momentum))


def make_weight_tx(
  *, weight_decay: float, momentum: float, grad_clip: float
) -> optax.GradientTransformation:
  """clip -> coupled weight decay -> momentum. State: (clip, (decay, trace))."""
  clip = optax.clip_by_global_norm(grad_clip) if grad_clip > 0 else optax.identity()
  return optax.chain(clip, weight_direction(weight_decay, momentum))


def make_arch_tx(
  *, lr: float, b1: float, b2: float, eps: float, weight_decay: float
) -> optax.GradientTransformation:
  """Adam with coupled L2 (torch.optim.Adam(weight_decay=...))."""
  return optax.chain(
    optax.add_decayed_weights(weight_decay),
    optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
    optax.scale(-lr),
  )


def cosine_lr(epoch: int, total_epochs: int, lr: float, lr_min: float) -> float:
  """Epoch-wise cosine annealing (torch CosineAnnealingLR stepped once per epoch)."""
  return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * epoch / total_epochs))
