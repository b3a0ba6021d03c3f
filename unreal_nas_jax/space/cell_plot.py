"""Cell diagrams: inputs c_{k-2}, c_{k-1}, the intermediate nodes, op-labelled edges, the output."""

from __future__ import annotations

import os

from unreal_nas_jax.space.genotypes import Genotype

PLOT_FORMATS = ('.svg', '.png', '.pdf')


def _node_positions(num_nodes: int) -> dict[str, tuple[float, float]]:
  # Inputs near the middle, nodes zigzagging above and below: edges run left to right, and an
  # edge that skips a node passes it at a distance (no three nodes on one line).
  pos = {'c_{k-2}': (0.0, 0.5), 'c_{k-1}': (0.0, -0.5)}
  for i in range(num_nodes):
    pos[str(i)] = (1.8 * (i + 1), 1.5 if i % 2 == 0 else -1.5)
  pos['c_{k}'] = (1.8 * (num_nodes + 1), 0.0)
  return pos


def _draw_cell(ax, genes, concat, title: str) -> None:
  num_nodes = len(genes) // 2
  pos = _node_positions(num_nodes)
  names = ['c_{k-2}', 'c_{k-1}', *(str(i) for i in range(num_nodes))]
  colours = {'c_{k-2}': '#9fd39f', 'c_{k-1}': '#9fd39f', 'c_{k}': '#f5c28b'}
  edges = [(names[src], str(j // 2), op) for j, (op, src) in enumerate(genes)]
  edges += [(names[i], 'c_{k}', '') for i in concat]
  for a, b, label in edges:
    (x0, y0), (x1, y1) = pos[a], pos[b]
    ax.annotate(
      '',
      xy=(x1, y1),
      xytext=(x0, y0),
      arrowprops={'arrowstyle': '->', 'color': '#555555' if label else '#bbbbbb', 'lw': 1.0,
                  'shrinkA': 14, 'shrinkB': 14},
    )  # fmt: skip
    if label:
      # Labels sit 60% of the way along their edge, where edges into one node have spread apart.
      ax.text(0.4 * x0 + 0.6 * x1, 0.4 * y0 + 0.6 * y1, label, fontsize=7, ha='center', va='center',
              bbox={'boxstyle': 'round,pad=0.15', 'fc': 'white', 'ec': 'none', 'alpha': 0.85})  # fmt: skip
  for name, (x, y) in pos.items():
    label = f'${name}$' if name.startswith('c_') else name
    ax.text(x, y, label, ha='center', va='center', fontsize=9,
            bbox={'boxstyle': 'round,pad=0.4', 'fc': colours.get(name, '#a8c8f0'), 'ec': '#333333'})  # fmt: skip
  ax.set_title(title, fontsize=10)
  ax.set_xlim(-0.6, 2.4 + 1.8 * num_nodes)
  ax.set_ylim(-1.9, 1.9)
  ax.axis('off')


def plot_genotype(genotype: Genotype, out: str, title: str = '') -> str:
  """Draws the normal and the reduction cell of `genotype` into `out` (.svg, .png or .pdf)."""
  extension = os.path.splitext(out)[1].lower()
  if extension not in PLOT_FORMATS:
    raise ValueError(
      f'--plot={out!r} is not allowed; allowed: a file ending in {", ".join(PLOT_FORMATS)}'
    )
  import matplotlib  # plotting only here

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  width = 2.5 + 1.8 * max(len(genotype.normal), len(genotype.reduce)) // 2
  fig, axes = plt.subplots(2, 1, figsize=(width, 6.0))
  _draw_cell(axes[0], genotype.normal, genotype.normal_concat, f'{title} normal cell'.strip())
  _draw_cell(axes[1], genotype.reduce, genotype.reduce_concat, f'{title} reduction cell'.strip())
  fig.tight_layout()
  fig.savefig(out, dpi=150)
  plt.close(fig)
  return out
