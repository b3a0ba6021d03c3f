"""`unreal-nas data preview`: a grid of a search dataset's examples with their labels.

The grid shows exactly what the search step sees: the batch function of the configured dataset
applied to examples 0, 1, ... of the chosen split (augmented for the real-data baselines, flipped
for the validation half of unreal data), like the samples in UnrealNAS's Fig. 3.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from unreal_nas_jax import timing
from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.data import search_data
from unreal_nas_jax.search.validate import validate_search_config

PREVIEW_SPLITS = ('train', 'val')
PREVIEW_FORMATS = ('.png', '.svg', '.pdf', '.jpg')


def display_range(images: np.ndarray) -> np.ndarray:
  """Maps normalised images to [0, 1] for display: the grid's 1st-99th percentiles, clipped."""
  lo, hi = np.percentile(images, [1, 99])
  return np.clip((images - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def preview_batch(config: ml_collections.ConfigDict, count: int, split: str):
  """The first `count` examples of `split` as the search step builds them: (images, labels)."""
  timer = timing.Phases()
  with timer('build data', f'{config.data.name}, {config.data.num_examples:,} examples'):
    data = search_data.make_search_data(config.data, config.data_seed)
    jax.block_until_ready(data.arrays)
  with timer('make batch', f'{count} {split} examples'):
    indices = jnp.arange(count, dtype=jnp.int32)
    key = jax.random.PRNGKey(config.seed)
    images, labels = jax.jit(data.batch_fn, static_argnums=2)(data.arrays, indices, split, key)
    images, labels = np.asarray(images), np.asarray(labels)
  timer.close()
  return images, labels


def write_preview(
  config: ml_collections.ConfigDict, out: str, *, rows: int = 4, cols: int = 8, split: str = 'train'
) -> str:
  """Renders the grid to `out` (.png, .svg, .pdf or .jpg); returns the path written."""
  validate_search_config(config)
  extension = os.path.splitext(out)[1].lower()
  if extension not in PREVIEW_FORMATS:
    raise ConfigError(
      f'--out={out!r} is not allowed; allowed: a file ending in {", ".join(PREVIEW_FORMATS)}'
    )
  if split not in PREVIEW_SPLITS:
    raise ConfigError(f'--split={split!r} is not allowed; allowed: {", ".join(PREVIEW_SPLITS)}')
  count = rows * cols
  if not 1 <= count <= config.data.num_examples:
    raise ConfigError(
      f'--rows={rows} x --cols={cols} is not allowed; allowed: 1 to '
      f'data.num_examples={config.data.num_examples} images'
    )
  directory = os.path.dirname(os.path.abspath(out))
  if not os.path.isdir(directory):
    raise ConfigError(f'--out={out!r}: directory {directory!r} does not exist')

  images, labels = preview_batch(config, count, split)
  shown = display_range(images)

  import matplotlib  # plotting only here

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  d = config.data
  fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.45 * rows + 0.5), squeeze=False)
  for i, ax in enumerate(axes.flat):
    image = shown[i]
    if image.shape[-1] == 1:
      ax.imshow(image[..., 0], cmap='gray', vmin=0, vmax=1, interpolation='nearest')
    else:
      ax.imshow(image, interpolation='nearest')
    title = f'#{i} y={labels[i]}'
    if d.name == 'rlgd':
      title += f' c={i % d.fractal_categories}'
    ax.set_title(title, fontsize=7)
    ax.axis('off')
  fig.suptitle(_caption(config, split), fontsize=9)
  fig.tight_layout()
  fig.savefig(out, dpi=150)
  plt.close(fig)
  return out


def _caption(config: ml_collections.ConfigDict, split: str) -> str:
  d = config.data
  labels = (
    'true labels' if d.name in search_data.REAL_DATASETS else f'{d.num_classes} random labels'
  )
  extra = f', {d.fractal_categories} fractal categories (c)' if d.name == 'rlgd' else ''
  return f'{d.name} ({split}): {d.image_size}x{d.image_size}, {labels}{extra}, data seed {config.data_seed}'
