"""Retraining a found cell on CIFAR-10/100, ImageNet or your own images, and evaluating it.

Datasets (spec section 6, and `data.datasets`): the tfds ones, image class folders and
CheXpert-style multi-label CSVs; the last two keep their class (label) names in the workdir
(`classes.json`) and refuse a resume or eval on other ones. Multi-label data trains with masked
binary cross-entropy and evaluates per-label ROC AUC (`train.metrics`).

Pure jitted steps (`train_step`, `eval_step`) over a `TrainState`; the loop feeds them global
batches from `unreal_nas_jax.data.train_pipeline`, keeps the epoch's metrics on device, and writes
an Orbax checkpoint and a metrics.jsonl line every epoch. Rerunning the same command resumes
after the latest checkpoint; the workdir keeps the genotype it trains (`genotype.json`) and
refuses a run whose genotype differs.

Loss = CE(logits) + auxiliary_weight * CE(auxiliary logits), both with the configured label
smoothing (multi-label: the masked BCE of both); SGD momentum 0.9 with coupled weight decay after
clipping the global norm to 5 (the reference's torch update order); the learning rate is constant within an epoch (cosine or
exponential per epoch) and drop path rises linearly, p = drop_path * epoch / epochs.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from contextlib import nullcontext
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from unreal_nas_jax import checkpointing, files, optim, parallel, timing
from unreal_nas_jax.config_utils import (
  ConfigError,
  require,
  require_choice,
  require_range,
  validate_run_fields,
  validate_weight_sgd_fields,
)
from unreal_nas_jax.data import label_csv, train_pipeline
from unreal_nas_jax.data.datasets import CHEXPERT_COMPETITION_LABELS, CHEXPERT_LABELS, DATASETS
from unreal_nas_jax.models import eval_network
from unreal_nas_jax.models.layers import params_key
from unreal_nas_jax.ops.depthwise import DEPTHWISE_IMPLS, resolve_depthwise_impl
from unreal_nas_jax.space import genotypes
from unreal_nas_jax.train import metrics, outputs, startup
from unreal_nas_jax.train import run as run_lib
from unreal_nas_jax.train.genotype_source import resolve_genotype
from unreal_nas_jax.train.tensorboard import train_epoch_scalars

LR_SCHEDULES = ('cosine', 'exponential')
NETWORKS = ('auto', 'cifar', 'imagenet')
COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array


# Fields added with the folder and CSV datasets, for a config.json written before them (eval of an
# older workdir): the values that reproduce the older behaviour.
ADDED_DEFAULTS = {
  'data': dict(dir='', channels=3, val_fraction=0.1, mean='', std='', stats_images=2000,
               augment='crop_flip', flip=True, affine_degrees=10.0, affine_translate=0.05,
               affine_scale=0.05, csv_train='train.csv', csv_eval='valid.csv',
               csv_path_column='Path', csv_label_columns='', uncertainty='ones', auc_labels='',
               on_device='auto'),
  'model': dict(network='auto'),
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
  require_choice(config, 'data.augment', train_pipeline.AUGMENTATIONS)
  require_choice(config, 'data.flip', (False, True))
  require_range(config, 'data.affine_degrees', 0, 180)
  require_range(config, 'data.affine_translate', 0, 1)
  require_range(config, 'data.affine_scale', 0, 1, high_open=True)
  require_choice(config, 'data.uncertainty', label_csv.UNCERTAINTY_POLICIES)
  require_choice(config, 'data.on_device', train_pipeline.ON_DEVICE)
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


@dataclasses.dataclass
class TrainSetup:
  config: ml_collections.ConfigDict
  mesh: Any
  genotype: genotypes.Genotype
  genotype_source: str
  model: eval_network.EvalNetwork
  tx: optax.GradientTransformation
  spec: train_pipeline.PipelineSpec
  source: train_pipeline.Source

  def lr(self, epoch: int) -> float:
    o = self.config.optim
    if o.lr_schedule == 'exponential':
      return o.lr * o.lr_decay**epoch
    return optim.cosine_lr(epoch, self.config.train.epochs, o.lr, o.lr_min)

  def drop_prob(self, epoch: int) -> float:
    return self.config.model.drop_path * epoch / self.config.train.epochs


def build_train(config: ml_collections.ConfigDict, mesh=None) -> TrainSetup:
  validate_train_config(config)
  mesh = parallel.data_mesh(
    config.parallel.num_devices, config.train.batch_size, 'config.train.batch_size', mesh
  )
  genotype, source = resolve_genotype(config.genotype)
  d, m = config.data, config.model
  spec = pipeline_spec(config)
  imagenet_net = m.network == 'imagenet' or (
    m.network == 'auto' and (d.name == 'imagenet' or d.image_size >= 128)
  )
  network = eval_network.NetworkImageNet if imagenet_net else eval_network.NetworkCIFAR
  model = network(
    genotype,
    num_classes=spec.num_classes,
    channels=m.channels,
    layers=m.layers,
    auxiliary=m.auxiliary,
    depthwise_impl=resolve_depthwise_impl(m.depthwise_impl, platform=parallel.mesh_platform(mesh)),
  )
  tx = optim.weight_sgd(
    weight_decay=config.optim.weight_decay,
    momentum=config.optim.momentum,
    grad_clip=config.optim.grad_clip,
  ).tx
  return TrainSetup(
    config, mesh, genotype, source, model, tx, spec, train_pipeline.Source(spec, mesh)
  )


def pipeline_spec(config: ml_collections.ConfigDict) -> train_pipeline.PipelineSpec:
  """The input pipeline's spec of a (validated) config; folder and CSV datasets resolved (their
  classes or labels read, normalisation statistics computed when not given)."""
  d = config.data
  spec = train_pipeline.PipelineSpec(
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
  return train_pipeline.resolve(spec)


def init_state(setup: TrainSetup) -> TrainState:
  config = setup.config

  def init():
    k_drop, k_rng = jax.random.split(jax.random.PRNGKey(config.seed), 2)
    size = config.data.image_size
    images = jnp.zeros((2, size, size, setup.spec.image_channels), jnp.float32)
    rngs = {'params': params_key(config.seed), 'drop_path': k_drop}
    variables = setup.model.init(rngs, images, 0.0, train=True)
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=variables['params'],
      batch_stats=variables['batch_stats'],
      opt_state=setup.tx.init(variables['params']),
      rng=k_rng,
    )

  return jax.jit(init, out_shardings=parallel.replicated(setup.mesh))()


def abstract_state(setup: TrainSetup) -> TrainState:
  return parallel.abstract_replicated(lambda: init_state(setup), setup.mesh)


def cross_entropy(logits, labels, num_classes: int, smoothing: float) -> jax.Array:
  targets = (
    optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)
    if smoothing
    else (jax.nn.one_hot(labels, num_classes))
  )
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


@dataclasses.dataclass(frozen=True)
class StepSettings:
  """The static settings of the training step.

  Attributes:
    num_classes: classes of the dataset (the one-hot targets).
    label_smoothing: of both losses.
    aux_weight: weight of the auxiliary head's loss (used when the model has the head).
    compute_dtype: a `COMPUTE_DTYPES` name: the forward and backward pass's dtype.
    multilabel: `num_classes` independent binary labels: masked binary cross-entropy
      (`metrics.masked_bce`) on batch['label'] (B, L) and batch['label_mask'] (B, L).
  """

  num_classes: int
  label_smoothing: float = 0.0
  aux_weight: float = 0.0
  compute_dtype: str = 'float32'
  multilabel: bool = False


def _loss(logits, batch, settings: StepSettings) -> jax.Array:
  if settings.multilabel:
    return metrics.masked_bce(logits, batch['label'], batch['label_mask'])
  n, smoothing = settings.num_classes, settings.label_smoothing
  return cross_entropy(logits, batch['label'], n, smoothing).mean()


def _correct(logits, batch, settings: StepSettings) -> jax.Array:
  """Correct top-1 predictions; multi-label: per example, the fraction of counted labels whose
  0.5-threshold prediction is right (so 'train_acc' is the entry accuracy)."""
  if settings.multilabel:
    right = ((logits > 0) == (batch['label'] > 0.5)) * batch['label_mask']
    counted = jnp.maximum(batch['label_mask'].sum(-1), 1.0)
    return jnp.sum(right.sum(-1) / counted)
  return jnp.sum(jnp.argmax(logits, -1) == batch['label'])


def train_step(
  state: TrainState,
  sums,
  batch,
  lr,
  drop_prob,
  *,
  model: eval_network.EvalNetwork,
  tx: optax.GradientTransformation,
  settings: StepSettings,
):
  """One SGD step on a global batch; adds loss, correct and count to the epoch sums."""
  dtype = COMPUTE_DTYPES[settings.compute_dtype]
  images = batch['image'].astype(dtype)
  labels = batch['label']
  key = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    # Mixed precision: float32 master weights, the forward and backward in `dtype`.
    (logits, aux), updates = model.apply(
      {'params': _cast(params, dtype), 'batch_stats': state.batch_stats},
      images,
      drop_prob,
      train=True,
      rngs={'drop_path': key},
      mutable=['batch_stats'],
    )
    loss = _loss(logits, batch, settings)
    if aux is not None:
      loss = loss + settings.aux_weight * _loss(aux, batch, settings)
    return loss, (logits, updates['batch_stats'])

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  batch_stats = _cast(batch_stats, jnp.float32)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = jax.tree.map(lambda w, u: w - lr * u, state.params, updates)
  n = labels.shape[0]
  sums = {
    'loss': sums['loss'] + loss * n,
    'correct': sums['correct'] + _correct(logits, batch, settings),
    'count': sums['count'] + n,
    'finite': sums['finite'] & jnp.isfinite(loss),
  }
  new_state = state.replace(
    step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
  )
  return new_state, sums


def _cast(tree, dtype):
  return jax.tree.map(
    lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
  )


def eval_step(
  state: TrainState, sums, batch, *, model: eval_network.EvalNetwork, settings: StepSettings
):
  """Masked loss, top-1 and top-5 sums of one eval batch (running BN statistics).

  Multi-label: returns (sums of the masked BCE and the example count, the batch's float32 logits)
  for the host's AUC.
  """
  dtype, num_classes = COMPUTE_DTYPES[settings.compute_dtype], settings.num_classes
  logits = model.apply(
    {'params': _cast(state.params, dtype), 'batch_stats': state.batch_stats},
    batch['image'].astype(dtype),
    train=False,
  ).astype(jnp.float32)
  mask, labels = batch['mask'], batch['label']
  if settings.multilabel:
    label_mask = batch['label_mask'] * mask[:, None]
    bce = metrics.masked_bce(logits, labels, label_mask) * jnp.maximum(label_mask.sum(), 1.0)
    return {
      'loss': sums['loss'] + bce,
      'entries': sums['entries'] + label_mask.sum(),
      'count': sums['count'] + jnp.sum(mask),
    }, logits
  loss = cross_entropy(logits, labels, num_classes, 0.0)
  top5 = jnp.any(jax.lax.top_k(logits, min(5, num_classes))[1] == labels[:, None], axis=-1)
  return {
    'loss': sums['loss'] + jnp.sum(loss * mask),
    'top1': sums['top1'] + jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
    'top5': sums['top5'] + jnp.sum(top5 * mask),
    'count': sums['count'] + jnp.sum(mask),
  }


def _zeros(*names):
  return {name: jnp.zeros((), jnp.float32) for name in names}


def epoch_sums():
  """The training step's accumulators: loss and correct sums, example count, all finite."""
  return {**_zeros('loss', 'correct', 'count'), 'finite': jnp.ones((), bool)}


def make_steps(setup: TrainSetup):
  config = setup.config
  settings = StepSettings(
    num_classes=setup.spec.num_classes,
    label_smoothing=config.train.label_smoothing,
    aux_weight=config.model.auxiliary_weight,
    compute_dtype=config.model.compute_dtype,
    multilabel=setup.spec.multilabel,
  )
  replicated = parallel.replicated(setup.mesh)
  train = jax.jit(
    functools.partial(train_step, model=setup.model, tx=setup.tx, settings=settings),
    out_shardings=(replicated, replicated),
    donate_argnums=(0, 1),
  )
  evaluate = jax.jit(
    functools.partial(eval_step, model=setup.model, settings=settings),
    out_shardings=replicated,
    donate_argnums=(1,),
  )
  return train, evaluate


def evaluate(setup: TrainSetup, state: TrainState, eval_fn=None) -> dict[str, Any]:
  """Top-1, top-5 (fractions) and mean loss over the eval split.

  Multi-label: the mean masked BCE, per-label ROC AUC ('auc', None for a label with one class in
  the eval split) and their mean over `auc_labels` ('mean_auc').
  """
  eval_fn = eval_fn or make_steps(setup)[1]
  split = DATASETS[setup.spec.dataset].eval_split
  if setup.spec.multilabel:
    return _evaluate_multilabel(setup, state, eval_fn, split)
  sums = parallel.replicate(_zeros('loss', 'top1', 'top5', 'count'), setup.mesh)
  for batch in setup.source.batches(split, 0):
    sums = eval_fn(state, sums, batch)
  sums = jax.device_get(sums)
  count = float(sums['count'])
  return {
    'top1': float(sums['top1']) / count,
    'top5': float(sums['top5']) / count,
    'loss': float(sums['loss']) / count,
    'examples': int(count),
  }


def _evaluate_multilabel(setup, state, eval_fn, split) -> dict[str, Any]:
  sums = parallel.replicate(_zeros('loss', 'entries', 'count'), setup.mesh)
  scores, targets, masks = [], [], []
  for batch in setup.source.batches(split, 0):
    sums, logits = eval_fn(state, sums, batch)
    host = jax.device_get({'logits': logits, 'label': batch['label'], 'm': batch['label_mask'],
                           'mask': batch['mask']})  # fmt: skip
    scores.append(host['logits'])
    targets.append(host['label'])
    masks.append(host['m'] * host['mask'][:, None])
  sums = jax.device_get(sums)
  aucs = metrics.label_aucs(
    np.concatenate(scores),
    np.concatenate(targets),
    np.concatenate(masks),
    setup.spec.names,
    auc_labels(setup.config),
  )
  return {
    'loss': float(sums['loss']) / max(float(sums['entries']), 1.0),
    'mean_auc': aucs['mean_auc'],
    'auc': aucs['auc'],
    'undefined_auc': aucs['undefined_auc'],
    'examples': int(sums['count']),
  }


def check_classes(workdir: str, spec: train_pipeline.PipelineSpec, *, write: bool) -> None:
  """Keeps a folder or CSV run's class (label) names in `workdir/classes.json`; refuses others.

  Args:
    workdir: the training workdir.
    spec: the resolved pipeline spec (its `names`, `mean`, `std`).
    write: write the file when it is missing (training); eval only checks.

  Raises:
    ConfigError: the workdir trained other classes (a resume or eval on another dataset).
  """
  if spec.source == 'tfds':
    return
  path = files.join(workdir, 'classes.json')
  if files.exists(path):
    saved = files.read_json(path)
    if list(saved['names']) != list(spec.names):
      new = [n for n in spec.names if n not in saved['names']]
      gone = [n for n in saved['names'] if n not in spec.names]
      raise ConfigError(
        f'{path}: the workdir trained classes {saved["names"]}; the data of config.data.dir '
        f'has {list(spec.names)} (new: {new}, missing: {gone}, or another order): use the '
        'training data or a new --workdir'
      )
  elif write and outputs.is_writer():
    record = {'names': list(spec.names), 'mean': list(spec.mean), 'std': list(spec.std)}
    files.write_json_atomic(path, record, indent=1)


def _check_genotype(workdir: str, genotype: genotypes.Genotype) -> None:
  path = files.join(workdir, 'genotype.json')
  if files.exists(path):
    saved = genotypes.load_genotype(path)
    if saved != genotype:
      raise ConfigError(
        f'workdir {workdir!r} trains another genotype ({path}); the one given now differs: '
        'use a new --workdir'
      )


def _check_finite(epoch: int):
  def check(sums):
    if not bool(sums['finite']):
      raise run_lib.NonFiniteLossError(
        f'loss became NaN or Inf in epoch {epoch + 1}; stopped without saving it; the last good '
        'checkpoint is kept'
      )

  return check


def train_batches(setup: TrainSetup, epoch: int, done: int = 0):
  """The global training batches of 0-based `epoch` from step `done` + 1 on."""
  return setup.source.batches('train', epoch, done)


def run_train(config: ml_collections.ConfigDict, workdir: str, *, mesh=None) -> dict[str, Any]:
  """Trains (or resumes) in `workdir`; returns the last epoch's record and the state.

  Raises the errors of `search_loop.run_search` (ConfigError, CheckpointError,
  NonFiniteLossError, Preempted, DeviceError) and DatasetNotPreparedError.
  """
  setup = build_train(config, mesh)
  steps = train_pipeline.steps_per_epoch(setup.spec, 'train')
  run = run_lib.Run(
    config,
    workdir,
    total_epochs=config.train.epochs,
    epochs_at=lambda step: step // steps if step % steps == 0 else None,
  )
  _check_genotype(workdir, setup.genotype)
  check_classes(workdir, setup.spec, write=True)
  with run.running():
    return _train(config, workdir, setup, run, steps)


def _train(config, workdir, setup: TrainSetup, run: run_lib.Run, steps: int) -> dict[str, Any]:
  timer = run.timer
  d = setup.spec
  with timer('check data', f'{d.dataset}{" (fake)" if d.fake_data else ""}, batch {d.batch_size}'):
    train_pipeline.check_prepared(setup.spec)  # missing data fails before anything is written
  run.write_config()
  if outputs.is_writer():
    genotypes.save_genotype(files.join(workdir, 'genotype.json'), setup.genotype)

  abstract = {
    'state': abstract_state(setup),
    'sums': parallel.abstract_replicated(epoch_sums, setup.mesh),
  }
  state_future = run.start_state(
    lambda: {'state': init_state(setup), 'sums': parallel.replicate(epoch_sums(), setup.mesh)},
    abstract,
    eval_network.count_params(abstract['state'].params),
  )
  latest = run.manager.latest_step()  # where the run most likely resumes (before it restores)
  start_epoch, done = (0, 0) if latest is None else divmod(latest, steps)
  epochs = config.train.epochs
  train_fn, eval_fn = make_steps(setup)
  compiling, first_batch = {}, None
  if start_epoch < epochs:
    batches = train_batches(setup, start_epoch, done)
    with timer('first batch'):
      first_batch = next(batches)
    scalars = (jnp.float32(0), jnp.float32(0))
    example = (abstract['state'], abstract['sums'], first_batch, *scalars)
    compiling = startup.compile_steps(timer, {'train step': (train_fn, example)})
  items, checkpoint_record = startup.wait_state(state_future)
  state = items['state']
  resumed_at = run.resume_point(checkpoint_record)
  if resumed_at != (start_epoch, done):  # an unusable newest checkpoint was moved aside
    start_epoch, done = resumed_at
    batches = train_batches(setup, start_epoch, done) if start_epoch < epochs else iter(())
    first_batch = next(batches, None)
  run.announce_resume(checkpoint_record)
  print(f'training {setup.genotype_source} on {setup.spec.dataset}', flush=True)
  metrics_log = outputs.MetricsLog(workdir)
  metrics_log.truncate(start_epoch + 1)

  record: dict[str, Any] = {}
  first_eval = True
  train_step = startup.wait_compiled(compiling, 'train step') if start_epoch < epochs else None
  for epoch in range(start_epoch, epochs):
    lr = jnp.asarray(setup.lr(epoch), jnp.float32)
    drop_prob = jnp.asarray(setup.drop_prob(epoch), jnp.float32)
    done_before = done if epoch == start_epoch else 0  # steps run before a resume
    if epoch == start_epoch:
      batches = itertools.chain([first_batch], batches)
    else:
      batches = train_batches(setup, epoch)
    state, sums, wall_s = run.steps(
      epoch=epoch,
      phase='train',
      done=done_before,
      steps=steps,
      epoch_start=epoch * steps,
      step=lambda state, sums, i, b=batches, lr=lr, p=drop_prob: train_step(
        state, sums, next(b), lr, p
      ),
      state=state,
      sums=items['sums'] if done_before else parallel.replicate(epoch_sums(), setup.mesh),
      check=_check_finite(epoch),
      record=lambda i, epoch=epoch: {'epoch': epoch, 'step_in_epoch': i},
    )
    count = float(sums['count'])
    steps_run = steps - done_before
    record = {
      'epoch': epoch + 1,
      'step': int(jax.device_get(state.step)),
      'lr': float(lr),
      'drop_path': float(drop_prob),
      'train_loss': float(sums['loss']) / count,
      'train_acc': float(sums['correct']) / count,
      'wall_s': round(wall_s, 3),
      'images_per_s': round(steps_run * setup.spec.batch_size / wall_s, 2) if wall_s > 0 else None,
    }
    every = config.train.eval_every_epochs
    if every and ((epoch + 1) % every == 0 or epoch + 1 == epochs):
      # The eval step compiles on its first batch; that evaluation is a phase of its own.
      with timer('first evaluation (compiles the eval step)') if first_eval else nullcontext():
        result = evaluate(setup, state, eval_fn)
      first_eval = False
      record.update({f'eval_{k}': v for k, v in result.items()})
    run.save(
      (epoch + 1) * steps,
      {'state': state, 'sums': parallel.replicate(epoch_sums(), setup.mesh)},
      {'epoch': epoch + 1, 'step_in_epoch': 0},
    )
    record['checkpoint_s'] = round(run.checkpoint_seconds, 3)
    run.log_epoch(workdir, metrics_log, record, train_epoch_scalars(record))
    summary = ' '.join(
      f'{k}={v:.4f}' if isinstance(v, float) else f'{k}={v}'
      for k, v in record.items()
      if k in ('lr', 'train_loss', 'train_acc', 'eval_top1', 'eval_top5', 'eval_mean_auc', 'wall_s')
    )
    run.progress.end_epoch(f'epoch {epoch + 1}/{epochs} {summary}')
    run.stop_if_requested(epoch, (epoch + 1) * steps)
  return {'workdir': workdir, 'record': record, 'state': state, 'epochs': epochs}


def run_eval(workdir: str, *, mesh=None) -> dict[str, Any]:
  """Restores the newest checkpoint of a training workdir and evaluates it on the eval split."""
  config_path = files.join(workdir, 'config.json')
  if not files.exists(config_path):
    raise ConfigError(f'{workdir!r} holds no training run (no config.json)')
  saved = files.read_json(config_path)
  if 'search' in saved and 'train' not in saved:
    raise ConfigError(
      f'{workdir!r} is a search workdir; eval takes a training workdir: retrain its cell first '
      f'(unreal-nas train --config=configs/train.py:cifar10 --config.genotype={workdir} '
      '--workdir=DIR)'
    )
  config = ml_collections.ConfigDict(saved)
  genotype_path = files.join(workdir, 'genotype.json')
  if files.exists(genotype_path):
    config.genotype = genotype_path  # the cell the checkpoint was trained with
  setup = build_train(config, mesh)
  check_classes(workdir, setup.spec, write=False)
  manager = checkpointing.make_manager(run_lib.checkpoint_dir(config, workdir))
  timer = timing.Phases()
  try:
    with timer('restore checkpoint'):
      found = checkpointing.restore_newest(manager, {'state': abstract_state(setup)})
    if found is None:
      raise ConfigError(f'{workdir!r} holds no training checkpoint; run unreal-nas train first')
    items, record, _ = found
    with timer('evaluate', f'{setup.spec.dataset} {DATASETS[setup.spec.dataset].eval_split}'):
      result = evaluate(setup, items['state'])
  finally:
    timer.close()
    manager.close()
  if not all(math.isfinite(v) for v in (result['loss'], result.get('top1', 0.0))):
    raise run_lib.NonFiniteLossError(f'evaluation of {workdir} gave a non-finite loss')
  epoch = int(record['epoch']) + (1 if record.get('step_in_epoch') else 0)
  return {**result, 'epoch': epoch, 'step_in_epoch': int(record.get('step_in_epoch', 0)),
          'dataset': setup.spec.dataset}  # fmt: skip
