"""Validation of a search config before anything is built or written."""

from __future__ import annotations

import ml_collections

from unreal_nas_jax.config_utils import (
  get,
  require,
  require_choice,
  require_range,
  validate_run_fields,
  validate_weight_sgd_fields,
)
from unreal_nas_jax.data.datasets import CIFAR_DATASETS, DATASETS
from unreal_nas_jax.data.search_data import FRACTAL_COLOR_MODES, SEARCH_DATASETS
from unreal_nas_jax.models.layers import COMPUTE_DTYPES
from unreal_nas_jax.models.supernet import EDGE_FORMS
from unreal_nas_jax.ops.depthwise import DEPTHWISE_IMPLS
from unreal_nas_jax.search.arch import ALPHA_INITS
from unreal_nas_jax.search.darts import HYPERGRADIENTS
from unreal_nas_jax.search.derivation import SEARCH_METHODS
from unreal_nas_jax.search.seeds import SEEDS_PROGRAMS
from unreal_nas_jax.search.sgas import CRITERIA
from unreal_nas_jax.space.primitives import reduction_indices


def _validate_data_source(config: ml_collections.ConfigDict) -> None:
  d = config.data
  if d.name == 'rlgd':
    require_range(config, 'data.fractal_categories', 1, integer=True)
    require_range(config, 'data.fractal_fill_threshold', 0, 1)
    require_range(config, 'data.fractal_fill_points', 2, integer=True)
    require_range(config, 'data.fractal_variation_weight', 0, 0.5, high_open=True)
    require_choice(config, 'data.fractal_color_mode', FRACTAL_COLOR_MODES)
    require_range(config, 'data.fractal_num_points', 0, integer=True)
    require_range(config, 'data.render_batch_size', 1, integer=True)
    allowed_channels = (3,) if d.fractal_color_mode == 'color' else (1, 3)
    require(
      d.channels in allowed_channels,
      'data.channels',
      d.channels,
      f'{" or ".join(map(str, allowed_channels))} for fractal_color_mode={d.fractal_color_mode!r}',
    )
  if d.name in ('rlrd', *CIFAR_DATASETS):
    require(d.channels == 3, 'data.channels', d.channels, f'3 for {d.name} (RGB images)')
    require_range(config, 'data.crop_padding', 0, integer=True)
    require_choice(config, 'data.download', (False, True))
    # rlrd flips the same images for the architecture; the real baseline needs a second half.
    halves = 1 if d.name == 'rlrd' else 2
    train_size = DATASETS['cifar10' if d.name == 'rlrd' else d.name].split_sizes['train']
    require(
      halves * d.num_examples <= train_size,
      'data.num_examples',
      d.num_examples,
      f'at most {train_size // halves} for {d.name} ({halves} x num_examples training images)',
    )
  if d.name in CIFAR_DATASETS:
    classes = DATASETS[d.name].num_classes
    require(
      d.num_classes == classes,
      'data.num_classes',
      d.num_classes,
      f'{classes} for {d.name} (its true labels)',
    )


def validate_search_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first field whose value is not allowed."""
  validate_run_fields(config)
  require_range(config, 'data_seed', 0, integer=True)

  require_choice(config, 'data.name', SEARCH_DATASETS)
  require_range(config, 'data.num_classes', 2, integer=True)
  require_range(config, 'data.num_examples', 1, integer=True)
  require_range(config, 'data.channels', 1, integer=True)
  require_range(config, 'data.noise_std', 0, low_open=True)
  require_range(config, 'data.noise_mean')
  _validate_data_source(config)

  require_range(config, 'model.channels', 2, integer=True)
  require(
    config.model.channels % 2 == 0,
    'model.channels',
    config.model.channels,
    'an even number (FactorizedReduce splits channels in two)',
  )
  require_range(config, 'model.layers', 1, integer=True)
  require_range(config, 'model.steps', 1, integer=True)
  require_range(config, 'model.multiplier', 1, config.model.steps, integer=True)
  require_range(config, 'model.stem_multiplier', 1, integer=True)
  require_choice(config, 'model.depthwise_impl', ('auto', *DEPTHWISE_IMPLS))
  require_choice(config, 'model.edge_form', ('auto', *EDGE_FORMS))
  require_choice(config, 'model.compute_dtype', tuple(COMPUTE_DTYPES))
  downsample = 2 ** len(reduction_indices(config.model.layers))
  require_range(config, 'data.image_size', downsample, integer=True)
  require(
    config.data.image_size % downsample == 0,
    'data.image_size',
    config.data.image_size,
    f'a multiple of {downsample} (the supernet halves the resolution '
    f'{len(reduction_indices(config.model.layers))} times)',
  )

  require_choice(config, 'search.method', SEARCH_METHODS)
  require_range(config, 'search.num_seeds', 1, integer=True)
  require_choice(config, 'search.seeds_share_data', (True, False))
  require_choice(config, 'search.seeds_program', SEEDS_PROGRAMS)
  require_range(config, 'parallel.seed_shards', 1, integer=True)
  shards = config.parallel.seed_shards
  require(
    config.search.num_seeds % shards == 0,
    'parallel.seed_shards',
    shards,
    f'a divisor of search.num_seeds={config.search.num_seeds} (each group of devices steps '
    f'the same number of seeds)',
  )
  require(
    shards == 1 or config.search.seeds_program in ('auto', 'vmap'),
    'search.seeds_program',
    config.search.seeds_program,
    f"'auto' or 'vmap' when the seeds are split over devices (parallel.seed_shards={shards})",
  )
  require_choice(config, 'search.sgas_criterion', CRITERIA)
  require_range(config, 'search.sgas_decision_start', 0, integer=True)
  require_range(config, 'search.sgas_decision_every', 1, integer=True)
  require_range(config, 'search.sgas_batch_increase', 0, integer=True)
  require_range(config, 'search.partial_channels', 1, integer=True)
  if config.search.method == 'sgas':
    largest = config.search.batch_size + 2 * config.model.steps * config.search.sgas_batch_increase
    require(
      largest <= config.data.num_examples,
      'search.sgas_batch_increase',
      config.search.sgas_batch_increase,
      f'a growth that keeps the batch within data.num_examples={config.data.num_examples} after '
      f'all {2 * config.model.steps} decisions (it would reach {largest})',
    )
  if config.search.method == 'pc_darts':
    k = config.search.partial_channels
    require(
      config.model.channels % (2 * k) == 0,
      'model.channels',
      config.model.channels,
      f'a multiple of 2 x search.partial_channels={k} (each edge splits its channels K ways and '
      'a strided skip halves its share)',
    )
  require_choice(config, 'search.order', (1, 2))
  require_choice(config, 'search.hypergradient', HYPERGRADIENTS)
  require_range(config, 'search.fd_radius', 0, low_open=True)
  require_range(config, 'search.warmup_epochs', 0, integer=True)
  require_range(config, 'search.epochs', 0, integer=True)
  require(
    config.search.warmup_epochs + config.search.epochs >= 1,
    'search.epochs',
    config.search.epochs,
    'warmup_epochs + epochs >= 1',
  )
  require_batch_fits_data(config, 'search.batch_size')
  require_choice(config, 'search.alpha_init', ALPHA_INITS)
  require_range(config, 'search.alpha_init_scale', 0)

  validate_weight_sgd_fields(config)
  require_range(config, 'optim.arch_lr', 0)
  require_range(config, 'optim.arch_b1', 0, 1, high_open=True)
  require_range(config, 'optim.arch_b2', 0, 1, high_open=True)
  require_range(config, 'optim.arch_eps', 0, low_open=True)
  require_range(config, 'optim.arch_weight_decay', 0)


def require_batch_fits_data(config: ml_collections.ConfigDict, key: str) -> None:
  """`key` (a global batch) is a positive integer of at most `data.num_examples`."""
  require_range(config, key, 1, integer=True)
  batch = get(config, key)
  limit = config.data.num_examples
  require(batch <= limit, key, batch, f'at most data.num_examples={limit}')
