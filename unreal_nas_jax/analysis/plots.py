"""The paper's figures from run directories (matplotlib, Agg backend; .png or .svg by extension).

- `plot_search_runs`: search runs overlaid, labelled by dataset: skip connections in the derived
  normal cell per epoch (the paper's Fig. 5), train/val loss and accuracy, and the softmax weight
  of every op on every edge per epoch (one grid per run).
- `plot_difficulty`: training curves of probe networks, one per dataset, the converged epoch
  marked (Fig. 1a).
- `plot_rank`: the two rankings' values as a scatter, Kendall's tau in the title (Fig. 1b-d).
- `plot_sweep`: a metric against the number of random classes, log x (Fig. 6).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence

import numpy as np

from unreal_nas_jax.analysis import runs as runs_lib
from unreal_nas_jax.analysis.convergence import Convergence, ConvergenceRule
from unreal_nas_jax.analysis.ranking import RankResult
from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.space.primitives import PRIMITIVES

PLOT_FORMATS = ('.png', '.svg')
SEARCH_PLOT_KINDS = ('skip', 'alphas', 'loss', 'all')


def check_out(out: str) -> str:
  """`out` if it ends in .png or .svg and its directory exists; else a one-line ConfigError."""
  extension = os.path.splitext(out)[1].lower()
  if extension not in PLOT_FORMATS:
    raise ConfigError(
      f'--out={out!r} is not allowed; allowed: a file ending in {", ".join(PLOT_FORMATS)}'
    )
  directory = os.path.dirname(os.path.abspath(out))
  if not os.path.isdir(directory):
    raise ConfigError(f'--out={out!r}: directory {directory!r} does not exist')
  return out


def _pyplot():
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  return plt


def _save(fig, out: str) -> str:
  fig.savefig(out, dpi=110, bbox_inches='tight')
  _pyplot().close(fig)
  return out


def unique_labels(labels: Sequence[str], paths: Sequence[str]) -> list[str]:
  """The labels, each repeated one extended by its directory name so that legends tell them apart."""
  counts = {label: labels.count(label) for label in labels}
  return [
    label if counts[label] == 1 else f'{label} ({os.path.basename(os.path.normpath(path))})'
    for label, path in zip(labels, paths, strict=True)
  ]


def _search_runs(runs: Sequence[runs_lib.Run]) -> list[runs_lib.Run]:
  if not runs:
    raise ConfigError('no search runs to plot')
  others = [r.path for r in runs if r.kind != 'search']
  if others:
    raise ConfigError(
      f'{others[0]!r} is a {runs[[r.path for r in runs].index(others[0])].kind} run; '
      'these plots need search runs (--kind=sweep takes training runs)'
    )
  return list(runs)


def _plot_series(ax, runs, labels, key, style='-', suffix=''):
  from matplotlib.ticker import MaxNLocator

  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  drawn = False
  for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
    epochs, values = run.series(key)
    if values.size:
      ax.plot(epochs, values, style, color=f'C{i % 10}', label=label + suffix, marker='.')
      drawn = True
  return drawn


def _draw_skip(ax, runs, labels):
  _plot_series(ax, runs, labels, 'skip_connects_normal')
  ax.set_xlabel('epoch')
  ax.set_ylabel('skip connections (normal cell)')
  ax.set_title('Skip connections per epoch')
  from matplotlib.ticker import MaxNLocator

  ax.yaxis.set_major_locator(MaxNLocator(integer=True))
  ax.set_ylim(-0.3, max(ax.get_ylim()[1], 1.3))  # counts: no fractional ticks around a flat 0
  ax.legend(fontsize='small')


def _draw_loss_acc(ax_loss, ax_acc, runs, labels):
  for ax, what in ((ax_loss, 'loss'), (ax_acc, 'acc')):
    _plot_series(ax, runs, labels, f'train_{what}', '-', ' train')
    _plot_series(ax, runs, labels, f'val_{what}', '--', ' val')
    ax.set_xlabel('epoch')
    ax.set_ylabel('loss' if what == 'loss' else 'accuracy')
    ax.set_title(f'Train (solid) and val (dashed) {"loss" if what == "loss" else "accuracy"}')
    ax.legend(fontsize='x-small')


def _alpha_history(run: runs_lib.Run) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """(epochs, {cell: (epochs, edges, ops) softmax weights}) of the records that hold alphas."""
  records = [r for r in run.records if isinstance(r.get('alphas'), dict)]
  epochs = np.array([r['epoch'] for r in records], np.int64)
  cells = {
    cell: np.array([r['alphas'][cell] for r in records], np.float64)
    for cell in ('normal', 'reduce')
    if records and all(r['alphas'].get(cell) is not None for r in records)
  }
  return epochs, cells


def _draw_alphas(fig, run: runs_lib.Run, label: str) -> None:
  """One panel per cell type; in it the edges side by side, each a small plot of its ops'
  softmax weights over the epochs (one line per op, the same colour on every edge). Two axes
  instead of 28 keep the figure quick to draw."""
  epochs, cells = _alpha_history(run)
  if not cells:
    fig.suptitle(f'{label}: no alphas in metrics.jsonl')
    return
  axes = fig.subplots(len(cells), 1, squeeze=False)[:, 0]
  span = max(int(epochs[-1] - epochs[0]), 1)
  x = (epochs - epochs[0]) / span * 0.85  # each edge's epochs fill 85% of its unit-wide slot
  for ax, (cell, weights) in zip(axes, cells.items(), strict=True):
    num_edges, num_ops = weights.shape[1], weights.shape[2]
    for k in range(num_ops):
      # One line per op across all edges, NaN between edges so that the slots stay apart.
      xs = np.concatenate([np.append(e + x, np.nan) for e in range(num_edges)])
      ys = np.concatenate([np.append(weights[:, e, k], np.nan) for e in range(num_edges)])
      name = PRIMITIVES[k] if k < len(PRIMITIVES) else f'op {k}'
      ax.plot(xs, ys, color=f'C{k % 10}', label=name, linewidth=1)
    for e in range(1, num_edges):
      ax.axvline(e - 0.075, color='0.85', linewidth=0.8)
    ax.set_xticks(np.arange(num_edges) + 0.425, _edge_names(num_edges), fontsize='small')
    ax.set_xlim(-0.075, num_edges - 0.075)
    ax.set_ylabel(f'{cell} cell')
  axes[-1].set_xlabel(f'edge (source->node), epochs {epochs[0]}-{epochs[-1]} left to right')
  axes[0].legend(loc='upper left', bbox_to_anchor=(1.0, 1.0), fontsize='small')
  fig.suptitle(f'{label}: softmax weight of each op per edge and epoch', fontsize='medium')


def _edge_names(num_edges: int) -> list[str]:
  """'source->node' names in metrics.jsonl's edge order (node i has 2 + i inputs)."""
  names, node = [], 0
  while len(names) < num_edges:
    names += [f'{src}->{node + 2}' for src in range(2 + node)]
    node += 1
  return names[:num_edges]


def plot_search_runs(runs: Sequence[runs_lib.Run], out: str, kind: str = 'all') -> str:
  """Draws search runs overlaid (`kind`: skip, alphas, loss or all) into `out`; returns `out`.

  Raises:
    ConfigError: a bad `out` or `kind`, no runs, or a run that is not a search.
  """
  check_out(out)
  if kind not in SEARCH_PLOT_KINDS:
    raise ConfigError(f'--kind={kind!r} is not allowed; allowed: {", ".join(SEARCH_PLOT_KINDS)}')
  runs = _search_runs(runs)
  labels = unique_labels([r.label for r in runs], [r.path for r in runs])
  plt = _pyplot()
  if kind == 'skip':
    fig, ax = plt.subplots(figsize=(6, 4))
    _draw_skip(ax, runs, labels)
  elif kind == 'loss':
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4))
    _draw_loss_acc(ax_loss, ax_acc, runs, labels)
  else:
    with_curves = kind == 'all'
    fig = plt.figure(figsize=(16, 4 * with_curves + 5.5 * len(runs)), layout='constrained')
    parts = fig.subfigures(
      with_curves + len(runs), 1, height_ratios=[4] * with_curves + [5.5] * len(runs), squeeze=False
    )[:, 0]
    if with_curves:
      ax_skip, ax_loss, ax_acc = parts[0].subplots(1, 3)
      _draw_skip(ax_skip, runs, labels)
      _draw_loss_acc(ax_loss, ax_acc, runs, labels)
    for part, run, label in zip(parts[with_curves:], runs, labels, strict=True):
      _draw_alphas(part, run, label)
  return _save(fig, out)


def plot_difficulty(
  curves: Sequence[tuple[str, np.ndarray, np.ndarray, Convergence]],
  out: str,
  metric: str,
  rule: ConvergenceRule,
) -> str:
  """One training curve per dataset (label, epochs, values, its Convergence), converged epoch
  marked; returns `out`."""
  check_out(out)
  if not curves:
    raise ConfigError('no curves to plot')
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for i, (label, epochs, values, conv) in enumerate(curves):
    color = f'C{i % 10}'
    score = conv.epoch if conv.epoch is not None else 'not converged'
    ax.plot(epochs, values, color=color, alpha=0.35, linewidth=1)
    ax.plot(epochs, conv.smoothed, color=color, label=f'{label}: {score}')
    if conv.epoch is not None:
      ax.axvline(conv.epoch, color=color, linestyle=':', linewidth=1)
      ax.plot([conv.epoch], [conv.smoothed[list(epochs).index(conv.epoch)]], 'o', color=color)
  ax.set_xlabel('epoch')
  ax.set_ylabel(metric)
  ax.set_title('Epochs to convergence of the training curve')
  ax.legend(title='dataset: converged epoch', fontsize='small')
  # The rule under the axes, below the x label (bbox_inches='tight' keeps it in the file).
  caption = textwrap.fill('convergence: ' + rule.describe(), 100)
  ax.annotate(caption, (0, -0.16), xycoords='axes fraction', va='top', fontsize='x-small')
  return _save(fig, out)


def plot_rank(result: RankResult, out: str) -> str:
  """The architectures' values in the two rankings as a scatter; returns `out`."""
  check_out(out)
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5.5, 5))
  ax.scatter(result.a, result.b)
  if result.n <= 30:
    for name, a, b in zip(result.names, result.a, result.b, strict=True):
      ax.annotate(name, (a, b), fontsize='x-small', xytext=(3, 3), textcoords='offset points')
  ax.set_xlabel(f'{result.a_label} ({result.metric})')
  ax.set_ylabel(result.b_label)
  tau = 'undefined' if np.isnan(result.tau) else f'{result.tau:.3f}'
  ax.set_title(f"Kendall's tau {tau} (p = {result.p_value:.2g}, n = {result.n})")
  return _save(fig, out)


def sweep_points(runs: Sequence[runs_lib.Run], metric: str) -> list[tuple[int, float, str]]:
  """(random classes, final `metric`, label) for each run that has the metric.

  Raises:
    ConfigError: no run has a value of `metric` (an empty sweep), or a run's class count is
      unknown.
  """
  points = []
  for run in runs:
    value = run.final(metric)
    if value is not None:
      points.append((runs_lib.random_classes(run), value, run.label))
  if not points:
    given = f'{len(runs)} run(s)' if runs else 'no runs'
    raise ConfigError(f'empty sweep: {given} given, none has a value of {metric!r}')
  return sorted(points)


def plot_sweep(points: Sequence[tuple[int, float, str]], out: str, metric: str) -> str:
  """`metric` against the number of random classes (log x), one series per dataset (and method);
  several runs of a class count (seeds) are drawn as points with their mean joined. Returns
  `out`."""
  check_out(out)
  if not points:
    raise ConfigError('empty sweep: nothing to plot')
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  series: dict[str, list[tuple[int, float]]] = {}
  for classes, value, label in points:
    series.setdefault(label.split(' seed ')[0], []).append((classes, value))
  for i, (name, pairs) in enumerate(sorted(series.items())):
    classes = np.array([c for c, _ in pairs])
    values = np.array([v for _, v in pairs])
    distinct = np.unique(classes)
    color = f'C{i % 10}'
    ax.scatter(classes, values, color=color, alpha=0.4)
    means = [values[classes == c].mean() for c in distinct]
    ax.plot(distinct, means, '-o', color=color, label=name)
  ax.set_xscale('log')
  ax.set_xlabel('number of random classes (data.num_classes)')
  ax.set_ylabel(metric)
  ax.set_title(f'{metric} against the number of random classes')
  ax.legend(fontsize='small')
  return _save(fig, out)
