"""The retraining config: its checks (once, before anything is built or written), the fields an
older config.json lacks, and the input-pipeline spec it describes.

The search's checks are `search.validate`; the probe's are `train.probe`'s.
"""

from __future__ import annotations

import ml_collections

from unreal_nas_jax.config_utils import (
  ConfigError,
  require,
  require_choice,
  require_range,
  validate_run_fields,
  validate_weight_sgd_fields,
)
from unreal_nas_jax.data import label_csv, pipeline
from unreal_nas_jax.data.datasets import CHEXPERT_COMPETITION_LABELS, CHEXPERT_LABELS, DATASETS
from unreal_nas_jax.data.pipeline_spec import AUGMENTATIONS, ON_DEVICE, PipelineSpec
from unreal_nas_jax.models.layers import COMPUTE_DTYPES
from unreal_nas_jax.ops.depthwise import DEPTHWISE_IMPLS

LR_SCHEDULES = ('cosine', 'exponential')
REMAT = ('auto', 'cells', 'none')
NETWORKS = ('auto', 'cifar', 'imagenet')

# Fields added since the first retraining runs (the folder and CSV datasets, then the rest), for a
# config.json written before them (eval of an older workdir): the values that reproduce the older
# behaviour.
ADDED_DEFAULTS = {
  'data': dict(dir='', channels=3, val_fraction=0.1, mean='', std='', stats_images=2000,
               augment='crop_flip', flip=True, affine_degrees=10.0, affine_translate=0.05,
               affine_scale=0.05, csv_train='train.csv', csv_eval='valid.csv',
               csv_path_column='Path', csv_label_columns='', uncertainty='ones', auc_labels='',
               on_device='auto'),
  'model': dict(network='auto', remat='auto'),
  'parallel': dict(xla_optimization_level='default'),
}  # fmt: skip


def fill_added_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Sets the ADDED_DEFAULTS fields a config lacks (an older config.json); returns it."""
  for section, fields in ADDED_DEFAULTS.items():
    for key, value in fields.items():
      if key not in config[section]:
        with config.unlocked():
          config[section][key] = value
  return config


def validate_train_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first field whose value is not allowed."""
  fill_added_defaults(config)
  validate_run_fields(config)
  require(bool(config.genotype), 'genotype', config.genotype, 'a published name, a genotype.json '
          'or a search workdir (--config.genotype=DARTS_V2)')  # fmt: skip
  require_choice(config, 'data.name', tuple(DATASETS))
  require_range(config, 'data.image_size', 8, integer=True)
  require_range(config, 'data.num_train_examples', 0, integer=True)
  require_range(config, 'data.num_eval_examples', 0, integer=True)
  require_range(config, 'data.cutout', 0, integer=True)
  require_range(config, 'data.crop_padding', 0, integer=True)
  require_choice(config, 'data.fake_data', (False, True))
  _validate_file_data(config)
  require_range(config, 'model.channels', 2, integer=True)
  require(config.model.channels % 2 == 0, 'model.channels', config.model.channels, 'an even number')
  require_range(config, 'model.layers', 3, integer=True)
  require_choice(config, 'model.auxiliary', (False, True))
  require_range(config, 'model.auxiliary_weight', 0)
  require_range(config, 'model.drop_path', 0, 1, high_open=True)
  require_choice(config, 'model.depthwise_impl', ('auto', *DEPTHWISE_IMPLS))
  require_choice(config, 'model.compute_dtype', tuple(COMPUTE_DTYPES))
  require_choice(config, 'model.network', NETWORKS)
  require_choice(config, 'model.remat', REMAT)
  require_range(config, 'train.epochs', 1, integer=True)
  require_range(config, 'train.batch_size', 1, integer=True)
  require_range(config, 'train.eval_every_epochs', 0, integer=True)
  require_range(config, 'train.label_smoothing', 0, 1, high_open=True)
  validate_weight_sgd_fields(config)
  require_choice(config, 'optim.lr_schedule', LR_SCHEDULES)
  require_range(config, 'optim.lr_decay', 0, 1)


def _names(text: str) -> tuple[str, ...]:
  """'a, b' -> ('a', 'b'): list-valued data fields are comma-separated strings (command line)."""
  return tuple(part.strip() for part in str(text).split(',') if part.strip())


def _floats(config, key: str) -> tuple[float, ...]:
  text = config.data[key.split('.')[-1]]
  try:
    return tuple(float(v) for v in _names(text))
  except ValueError:
    raise ConfigError(
      f'config.{key}={text!r} is not allowed; allowed: comma-separated numbers (one per channel, '
      'or one for all), or empty to compute them from the data'
    ) from None


def _validate_file_data(config) -> None:
  """The folder and CSV fields (checked whatever the dataset, so a typo fails early)."""
  d = config.data
  require_choice(config, 'data.channels', (1, 3))
  require_range(config, 'data.val_fraction', 0, 1, high_open=True)
  require_range(config, 'data.stats_images', 0, integer=True)
  require_choice(config, 'data.augment', AUGMENTATIONS)
  require_choice(config, 'data.flip', (False, True))
  require_range(config, 'data.affine_degrees', 0, 180)
  require_range(config, 'data.affine_translate', 0, 1)
  require_range(config, 'data.affine_scale', 0, 1, high_open=True)
  require_choice(config, 'data.uncertainty', label_csv.UNCERTAINTY_POLICIES)
  require_choice(config, 'data.on_device', ON_DEVICE)
  _floats(config, 'data.mean')
  _floats(config, 'data.std')
  require(all(v > 0 for v in _floats(config, 'data.std')), 'data.std', d.std, 'positive numbers')
  source = DATASETS[d.name].source
  if source == 'tfds':
    return
  require(bool(d.dir) or d.fake_data, 'data.dir', d.dir,
          f'the dataset directory ({d.name} reads its images there)')  # fmt: skip
  if source == 'csv':
    labels = _names(d.csv_label_columns) or CHEXPERT_LABELS
    unknown = [n for n in _names(d.auc_labels) if n not in labels]
    require(not unknown, 'data.auc_labels', d.auc_labels,
            f'labels among data.csv_label_columns ({", ".join(labels)})')  # fmt: skip


def auc_labels(config) -> tuple[str, ...]:
  """The labels whose mean AUC is reported: data.auc_labels, or the five CheXpert competition
  labels when the CSV has them all, else every label."""
  labels = _names(config.data.csv_label_columns) or CHEXPERT_LABELS
  chosen = _names(config.data.auc_labels)
  if chosen:
    return chosen
  if all(n in labels for n in CHEXPERT_COMPETITION_LABELS):
    return CHEXPERT_COMPETITION_LABELS
  return labels


def pipeline_spec(config: ml_collections.ConfigDict) -> PipelineSpec:
  """The input pipeline's spec of a (validated) config; folder and CSV datasets resolved (their
  classes or labels read, normalisation statistics computed when not given)."""
  d = config.data
  spec = PipelineSpec(
    dataset=d.name,
    image_size=d.image_size,
    batch_size=config.train.batch_size,
    seed=config.seed,
    tfds_data_dir=d.tfds_data_dir,
    manual_dir=d.manual_dir,
    download=d.download,
    fake_data=d.fake_data,
    num_train_examples=d.num_train_examples,
    num_eval_examples=d.num_eval_examples,
    cutout=d.cutout,
    crop_padding=d.crop_padding,
    data_dir=d.dir,
    channels=d.channels,
    val_fraction=d.val_fraction,
    mean=_floats(config, 'data.mean'),
    std=_floats(config, 'data.std'),
    stats_images=d.stats_images,
    augment=d.augment,
    flip=d.flip,
    affine_degrees=d.affine_degrees,
    affine_translate=d.affine_translate,
    affine_scale=d.affine_scale,
    csv_train=d.csv_train,
    csv_eval=d.csv_eval,
    csv_path_column=d.csv_path_column,
    csv_label_columns=_names(d.csv_label_columns) or CHEXPERT_LABELS,
    uncertainty=d.uncertainty,
    on_device=d.on_device,
  )
  return pipeline.resolve(spec)
