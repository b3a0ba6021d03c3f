"""The DARTS reference's search step in PyTorch, to time it beside ours on the same machine.

`unreal-nas bench --cases=torch_reference` runs it (it needs `torch`, which the project does not
depend on). It follows the reference implementation's structure exactly, because that structure
is what is being timed: eager PyTorch, one module per op and edge (MixedOp sums all 8 ops, `none`
included), BatchNorm without affine parameters in the cells and after the pools, alphas outside
the weights, and the first-order step of `train_search.py`: an Adam step of the alphas on a
validation batch, then an SGD step of the weights (momentum 0.9, weight decay 3e-4, gradient norm
clipped to 5) on a training batch. Inputs are Gaussian noise with random labels (RLRN).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from unreal_nas_jax.space.primitives import PRIMITIVES, reduction_indices


def _build(num_classes: int, channels: int, layers: int, steps: int = 4, multiplier: int = 4):
  import torch  # optional dependency
  from torch import nn

  def relu_conv_bn(c_in, c_out, k, stride, pad):
    return nn.Sequential(
      nn.ReLU(inplace=False),
      nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, bias=False),
      nn.BatchNorm2d(c_out, affine=False),
    )

  def dil_conv(c, k, stride, pad, dil):
    return nn.Sequential(
      nn.ReLU(inplace=False),
      nn.Conv2d(c, c, k, stride, pad, dilation=dil, groups=c, bias=False),
      nn.Conv2d(c, c, 1, bias=False),
      nn.BatchNorm2d(c, affine=False),
    )

  def sep_conv(c, k, stride, pad):
    return nn.Sequential(dil_conv(c, k, stride, pad, 1), dil_conv(c, k, 1, pad, 1))

  class Zero(nn.Module):
    def __init__(self, stride):
      super().__init__()
      self.stride = stride

    def forward(self, x):
      return x[:, :, :: self.stride, :: self.stride].mul(0.0)

  class FactorizedReduce(nn.Module):
    def __init__(self, c_in, c_out):
      super().__init__()
      self.relu = nn.ReLU(inplace=False)
      self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
      self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
      self.bn = nn.BatchNorm2d(c_out, affine=False)

    def forward(self, x):
      x = self.relu(x)
      return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))

  def make_op(name, c, stride):
    if name == 'none':
      return Zero(stride)
    if name == 'max_pool_3x3':
      return nn.Sequential(nn.MaxPool2d(3, stride, 1), nn.BatchNorm2d(c, affine=False))
    if name == 'avg_pool_3x3':
      return nn.Sequential(
        nn.AvgPool2d(3, stride, 1, count_include_pad=False), nn.BatchNorm2d(c, affine=False)
      )
    if name == 'skip_connect':
      return nn.Identity() if stride == 1 else FactorizedReduce(c, c)
    k = int(name[-1])
    if name.startswith('sep'):
      return sep_conv(c, k, stride, k // 2)
    return dil_conv(c, k, stride, k - 1, 2)

  class MixedOp(nn.Module):
    def __init__(self, c, stride):
      super().__init__()
      self.ops = nn.ModuleList(make_op(name, c, stride) for name in PRIMITIVES)

    def forward(self, x, weights):
      return sum(w * op(x) for w, op in zip(weights, self.ops, strict=True))

  class Cell(nn.Module):
    def __init__(self, c_pp, c_p, c, reduction, reduction_prev):
      super().__init__()
      self.reduction = reduction
      self.pre0 = FactorizedReduce(c_pp, c) if reduction_prev else relu_conv_bn(c_pp, c, 1, 1, 0)
      self.pre1 = relu_conv_bn(c_p, c, 1, 1, 0)
      self.ops = nn.ModuleList()
      for i in range(steps):
        for j in range(2 + i):
          self.ops.append(MixedOp(c, 2 if reduction and j < 2 else 1))

    def forward(self, s0, s1, weights):
      states, offset = [self.pre0(s0), self.pre1(s1)], 0
      for _ in range(steps):
        s = sum(self.ops[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
        offset += len(states)
        states.append(s)
      return torch.cat(states[-multiplier:], dim=1)

  class Network(nn.Module):
    def __init__(self):
      super().__init__()
      c_curr = 3 * channels
      self.stem = nn.Sequential(
        nn.Conv2d(3, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr)
      )
      c_pp, c_p, c_curr = c_curr, c_curr, channels
      self.cells = nn.ModuleList()
      reduction_prev = False
      for i in range(layers):
        reduction = i in reduction_indices(layers)
        if reduction:
          c_curr *= 2
        self.cells.append(Cell(c_pp, c_p, c_curr, reduction, reduction_prev))
        reduction_prev = reduction
        c_pp, c_p = c_p, multiplier * c_curr
      self.pool = nn.AdaptiveAvgPool2d(1)
      self.classifier = nn.Linear(c_p, num_classes)
      edges = sum(2 + i for i in range(steps))
      self.alphas = [
        (1e-3 * torch.randn(edges, len(PRIMITIVES))).requires_grad_(True) for _ in range(2)
      ]

    def forward(self, x):
      s0 = s1 = self.stem(x)
      normal, reduce = (torch.softmax(a, dim=-1) for a in self.alphas)
      for cell in self.cells:
        s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal)
      return self.classifier(self.pool(s1).flatten(1))

  return Network()


def time_first_order_step(
  *,
  steps: int = 3,
  batch: int = 64,
  image_size: int = 32,
  num_classes: int = 5000,
  channels: int = 16,
  layers: int = 8,
) -> dict[str, Any]:
  """Builds the reference supernet and times its first-order search step (one record)."""
  try:
    import torch
  except ImportError:
    return {'skipped': 'torch is not installed (pip install torch); nothing to compare with'}
  torch.manual_seed(0)
  torch.set_num_threads(os.cpu_count() or 1)
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.backends.cudnn.benchmark = True  # as the reference's train_search.py
  t0 = time.perf_counter()
  model = _build(num_classes, channels, layers).to(device)
  model.alphas = [a.detach().to(device).requires_grad_(True) for a in model.alphas]
  weights = list(model.parameters())
  w_opt = torch.optim.SGD(weights, 0.025, momentum=0.9, weight_decay=3e-4)
  a_opt = torch.optim.Adam(model.alphas, 3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
  loss_fn = torch.nn.CrossEntropyLoss()
  build_s = time.perf_counter() - t0

  def batch_of_noise():
    images = torch.randn(batch, 3, image_size, image_size, device=device)
    return images, torch.randint(0, num_classes, (batch,), device=device)

  def sync():
    if device == 'cuda':
      torch.cuda.synchronize()

  def step():
    (x_train, y_train), (x_val, y_val) = batch_of_noise(), batch_of_noise()
    a_opt.zero_grad()
    loss_fn(model(x_val), y_val).backward()
    a_opt.step()
    w_opt.zero_grad()
    loss_fn(model(x_train), y_train).backward()
    torch.nn.utils.clip_grad_norm_(weights, 5.0)
    w_opt.step()
    sync()

  times = []
  for i in range(steps + 1):  # the first step warms up the allocator and kernels
    t0 = time.perf_counter()
    step()
    if i:
      times.append(time.perf_counter() - t0)
    else:
      first_step_s = time.perf_counter() - t0
  median = statistics.median(times)
  return {
    'framework': f'torch {torch.__version__}',
    'device': torch.cuda.get_device_name() if device == 'cuda' else 'cpu',
    'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    'order': 1,
    'batch': batch,
    'images_per_s': round(batch / median, 2),
    'median_step_ms': round(1000 * median, 2),
    'min_step_ms': round(1000 * min(times), 2),
    'build_s': round(build_s, 2),
    'first_step_s': round(first_step_s, 2),
    'params': sum(p.numel() for p in weights),
    'threads': torch.get_num_threads(),
    'timed_steps': steps,
    'channels': channels,
    'layers': layers,
    'image_size': image_size,
    'num_classes': num_classes,
  }


def time_in_subprocess(steps: int) -> dict[str, Any]:
  """`time_first_order_step` in a fresh process: its own peak memory, no XLA threads around."""
  code = f'import json; from unreal_nas_jax import torch_reference as t; print(json.dumps(t.time_first_order_step(steps={int(steps)})))'
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False)
  if result.returncode:
    return {'skipped': f'the PyTorch reference failed: {result.stderr.strip()[-300:]}'}
  return json.loads(result.stdout.strip().splitlines()[-1])
