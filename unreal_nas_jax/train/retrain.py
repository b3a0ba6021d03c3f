"""Retraining a found cell on CIFAR-10/100, ImageNet or your own images, and evaluating it.

Datasets (spec section 6, and `data.datasets`): the tfds ones, image class folders and
CheXpert-style multi-label CSVs; the last two keep their class (label) names in the workdir
(`classes.json`) and refuse a resume or eval on other ones. Multi-label data trains with masked
binary cross-entropy and evaluates per-label ROC AUC (`train.evaluation`).

The pure jitted steps (`train.retrain_step.train_step`, `train.evaluation.eval_step`) run over a
`TrainState`; the loop feeds them global batches from `unreal_nas_jax.data.pipeline`, keeps the
epoch's metrics on device, and writes an Orbax checkpoint and a metrics.jsonl line every epoch.
Rerunning the same command resumes after the latest checkpoint; the workdir keeps the genotype it
trains (`genotype.json`) and refuses a run whose genotype differs. The learning rate is constant
within an epoch (cosine or exponential per epoch) and drop path rises linearly,
p = drop_path * epoch / epochs.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from contextlib import nullcontext
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from unreal_nas_jax import checkpointing, files, optim, parallel, timing
from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.data import pipeline
from unreal_nas_jax.data.datasets import DATASETS
from unreal_nas_jax.data.pipeline_spec import PipelineSpec
from unreal_nas_jax.models import eval_network
from unreal_nas_jax.models.layers import params_key
from unreal_nas_jax.ops.depthwise import resolve_depthwise_impl
from unreal_nas_jax.space import genotypes
from unreal_nas_jax.train import evaluation, loop, outputs, records
from unreal_nas_jax.train import run as run_lib
from unreal_nas_jax.train.genotype_source import resolve_genotype
from unreal_nas_jax.train.retrain_config import auc_labels, pipeline_spec, validate_train_config
from unreal_nas_jax.train.retrain_step import StepSettings, TrainState, epoch_sums, train_step
from unreal_nas_jax.train.tensorboard import train_epoch_scalars


@dataclasses.dataclass
class TrainSetup:
  config: ml_collections.ConfigDict
  mesh: Any
  genotype: genotypes.Genotype
  genotype_source: str
  model: eval_network.EvalNetwork
  tx: optax.GradientTransformation
  spec: PipelineSpec
  source: pipeline.Source

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
  platform = parallel.mesh_platform(mesh)
  model = network(
    genotype,
    num_classes=spec.num_classes,
    channels=m.channels,
    layers=m.layers,
    auxiliary=m.auxiliary,
    depthwise_impl=resolve_depthwise_impl(
      m.depthwise_impl, platform=platform, num_devices=mesh.devices.size
    ),
    remat=m.remat == 'cells' or (m.remat == 'auto' and platform == 'tpu'),
  )
  tx = optim.weight_sgd(
    weight_decay=config.optim.weight_decay,
    momentum=config.optim.momentum,
    grad_clip=config.optim.grad_clip,
  ).tx
  return TrainSetup(config, mesh, genotype, source, model, tx, spec, pipeline.Source(spec, mesh))


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
  options = parallel.compiler_options(config.parallel.xla_optimization_level)
  train = jax.jit(
    functools.partial(train_step, model=setup.model, tx=setup.tx, settings=settings),
    out_shardings=(replicated, replicated),
    donate_argnums=(0, 1),
    compiler_options=options,
  )
  evaluate = jax.jit(
    functools.partial(evaluation.eval_step, model=setup.model, settings=settings),
    out_shardings=replicated,
    donate_argnums=(1,),
    compiler_options=options,
  )
  return train, evaluate


def check_classes(workdir: str, spec: PipelineSpec, *, write: bool) -> None:
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


def train_batches(setup: TrainSetup, epoch: int, done: int = 0):
  """The global training batches of 0-based `epoch` from step `done` + 1 on."""
  return setup.source.batches('train', epoch, done)


def run_train(config: ml_collections.ConfigDict, workdir: str, *, mesh=None) -> dict[str, Any]:
  """Trains (or resumes) in `workdir`; returns the last epoch's record and the state.

  Raises the errors of `search_loop.run_search` (ConfigError, CheckpointError,
  NonFiniteLossError, Preempted, DeviceError) and DatasetNotPreparedError.
  """
  setup = build_train(config, mesh)
  steps = pipeline.steps_per_epoch(setup.spec, 'train')
  run = run_lib.Run(config, workdir, total_epochs=config.train.epochs)
  _check_genotype(workdir, setup.genotype)
  check_classes(workdir, setup.spec, write=True)
  with run.running():
    return _train(config, workdir, setup, run, steps)


def _train(config, workdir, setup: TrainSetup, run: run_lib.Run, steps: int) -> dict[str, Any]:
  d = setup.spec
  with run.timer(
    'check data', f'{d.dataset}{" (fake)" if d.fake_data else ""}, batch {d.batch_size}'
  ):
    pipeline.check_prepared(setup.spec)  # missing data fails before anything is written
  run.write_config()
  if outputs.is_writer():
    genotypes.save_genotype(files.join(workdir, 'genotype.json'), setup.genotype)
  training = TrainLoop(setup, run, workdir, steps)
  state = loop.run_epochs(run, training)
  return {
    'workdir': workdir,
    'record': training.last,
    'state': state,
    'epochs': config.train.epochs,
  }


@dataclasses.dataclass
class TrainLoop:
  """The retraining as a `train.loop.Loop`: one train step program fed by the input pipeline,
  an evaluation every `train.eval_every_epochs` epochs, one metrics.jsonl line per epoch."""

  setup: TrainSetup
  run: run_lib.Run
  workdir: str
  steps: int  # per epoch
  last: dict[str, Any] = dataclasses.field(default_factory=dict)  # the last epoch's record

  def __post_init__(self):
    s = self.setup
    self.total_epochs, self.mesh = s.config.train.epochs, s.mesh
    self.train_fn, self.eval_fn = make_steps(s)
    self.metrics_log = outputs.MetricsLog(self.workdir)
    self._peeked = None  # ((epoch, done), first batch, the rest) of the batches lowered from
    self._first_eval = True

  def epoch_start(self, epoch: int) -> int:
    return epoch * self.steps

  def phase(self, epoch: int) -> str:
    return 'train'

  def record_fields(self, epoch: int) -> dict[str, Any]:
    return {}

  def init_state(self):
    return init_state(self.setup)

  def abstract_state(self):
    return abstract_state(self.setup)

  def new_sums(self):
    return epoch_sums()

  def num_weights(self, abstract_state) -> int:
    return eval_network.count_params(abstract_state.params)

  def program(self, epoch: int) -> str:
    return 'train step'

  def ahead(self, epoch: int) -> list[str]:
    return ['train step'] if epoch < self.total_epochs else []

  def step_program(self, name: str, abstract, epoch: int, done: int):
    """The train step, lowered from the first batch the run will most likely step."""
    batches = train_batches(self.setup, epoch, done)
    with self.run.timer('first batch'):
      first = next(batches)
    self._peeked = ((epoch, done), first, batches)
    scalars = (jnp.float32(0), jnp.float32(0))
    return self.train_fn, (abstract['state'], abstract['sums'], first, *scalars)

  def epoch_step(self, epoch: int, done: int, compiled) -> loop.Step:
    if self._peeked is not None and self._peeked[0] == (epoch, done):
      _, first, rest = self._peeked
      batches = itertools.chain([first], rest)
    else:
      batches = train_batches(self.setup, epoch, done)
    self._peeked = None
    lr = jnp.asarray(self.setup.lr(epoch), jnp.float32)
    drop_prob = jnp.asarray(self.setup.drop_prob(epoch), jnp.float32)
    return lambda state, sums, i: compiled(state, sums, next(batches), lr, drop_prob)

  def check_finite(self, epoch: int, sums) -> None:
    if not bool(sums['finite']):
      raise run_lib.NonFiniteLossError(
        f'loss became NaN or Inf in epoch {epoch + 1}; stopped without saving it; the last good '
        'checkpoint is kept'
      )

  def resumed(self, state, epoch: int) -> None:
    print(f'training {self.setup.genotype_source} on {self.setup.spec.dataset}', flush=True)
    self.metrics_log.truncate(epoch + 1)

  def end_epoch(self, epoch: int, state, sums, wall_s: float, done: int):
    """The epoch's record, with an evaluation every `train.eval_every_epochs` epochs."""
    s = self.setup
    record = records.train_record(
      epoch,
      state,
      sums,
      # The values the step ran with (float32), as the record always showed them.
      lr=float(jnp.asarray(s.lr(epoch), jnp.float32)),
      drop_path=float(jnp.asarray(s.drop_prob(epoch), jnp.float32)),
      wall_s=wall_s,
      images_timed=(self.steps - done) * s.spec.batch_size,
    )
    every = s.config.train.eval_every_epochs
    if every and ((epoch + 1) % every == 0 or epoch + 1 == self.total_epochs):
      # The eval step compiles on its first batch; that evaluation is a phase of its own.
      first = self._first_eval
      with self.run.timer('first evaluation (compiles the eval step)') if first else nullcontext():
        result = evaluation.evaluate(s.source, state, self.eval_fn, auc_labels(s.config))
      self._first_eval = False
      record.update({f'eval_{k}': v for k, v in result.items()})
    return state, record

  def log(self, record) -> str:
    record['checkpoint_s'] = round(self.run.checkpoint_seconds, 3)
    self.run.log_epoch(self.workdir, self.metrics_log, record, train_epoch_scalars(record))
    self.last = record
    return records.train_summary(record, self.total_epochs)


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
      eval_fn = make_steps(setup)[1]
      result = evaluation.evaluate(setup.source, items['state'], eval_fn, auc_labels(config))
  finally:
    timer.close()
    manager.close()
  if not all(math.isfinite(v) for v in (result['loss'], result.get('top1', 0.0))):
    raise run_lib.NonFiniteLossError(f'evaluation of {workdir} gave a non-finite loss')
  epoch = int(record['epoch']) + (1 if record.get('step_in_epoch') else 0)
  return {**result, 'epoch': epoch, 'step_in_epoch': int(record.get('step_in_epoch', 0)),
          'dataset': setup.spec.dataset}  # fmt: skip
