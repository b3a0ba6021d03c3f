"""The search loop: `run_search(config, workdir)`, resumable, data parallel, one compile per phase.

Order of resumption (big_vision's): the latest checkpoint in the workdir if there is one (after
checking that the saved config matches), else a fresh state from the seed. Every epoch ends with
a metrics line, an Orbax checkpoint and genotype.json; a run killed at any point resumes from its
last complete checkpoint to the same bits as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from unreal_nas_jax import checkpointing, optim, parallel, timing
from unreal_nas_jax.config_utils import to_dict
from unreal_nas_jax.data import search_data
from unreal_nas_jax.files import write_json_atomic
from unreal_nas_jax.models.layers import params_key
from unreal_nas_jax.models.supernet import SearchNetwork
from unreal_nas_jax.search import arch, darts
from unreal_nas_jax.search.state import SearchState
from unreal_nas_jax.search.validate import validate_search_config
from unreal_nas_jax.space import derive, genotypes
from unreal_nas_jax.train import outputs, startup


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or Inf; the run stopped without saving the bad state."""


@dataclasses.dataclass
class SearchSetup:
  """Everything built from a config, before any state exists."""

  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  model: SearchNetwork
  data: Any
  batch_fn: Any
  artifacts: dict[str, Any]
  weight_sgd: optim.WeightSGD
  arch_tx: Any
  steps_per_epoch: int
  total_epochs: int

  def lr(self, epoch: int) -> float:
    """Weight learning rate of 0-based `epoch` (cosine over warm-up + search epochs)."""
    o = self.config.optim
    return optim.cosine_lr(epoch, self.total_epochs, o.lr, o.lr_min)

  def phase(self, epoch: int) -> str:
    return 'warmup' if epoch < self.config.search.warmup_epochs else 'search'


def build_search(
  config: ml_collections.ConfigDict,
  mesh: jax.sharding.Mesh | None = None,
  *,
  workdir: str | None = None,
):
  """Builds the model, data, optimizers and mesh of a search from a validated `config`.

  `workdir` (optional) lets the data reuse what an earlier start of the run kept there (the
  fractal systems of rlgd); nothing is written.
  """
  mesh = _search_mesh(config, mesh)
  m, o = config.model, config.optim
  model = SearchNetwork(
    num_classes=config.data.num_classes,
    channels=m.channels,
    layers=m.layers,
    steps=m.steps,
    multiplier=m.multiplier,
    stem_multiplier=m.stem_multiplier,
    depthwise_impl=m.depthwise_impl,
  )
  data = search_data.make_search_data(config.data, config.data_seed, workdir=workdir)
  weight_sgd = optim.weight_sgd(
    weight_decay=o.weight_decay, momentum=o.momentum, grad_clip=o.grad_clip
  )
  arch_tx = optim.arch_adam(
    lr=o.arch_lr, b1=o.arch_b1, b2=o.arch_b2, eps=o.arch_eps, weight_decay=o.arch_weight_decay
  )
  return SearchSetup(
    config=config,
    mesh=mesh,
    model=model,
    data=parallel.replicate(data.arrays, mesh),
    batch_fn=data.batch_fn,
    artifacts=data.artifacts,
    weight_sgd=weight_sgd,
    arch_tx=arch_tx,
    steps_per_epoch=config.data.num_examples // config.search.batch_size,
    total_epochs=config.search.warmup_epochs + config.search.epochs,
  )


def _search_mesh(config, mesh):
  return parallel.data_mesh(
    config.parallel.num_devices, config.search.batch_size, 'config.search.batch_size', mesh
  )


def init_state(setup: SearchSetup) -> SearchState:
  """A fresh, replicated state from `config.seed` (weights, zero or normal alphas, optimizers)."""
  config = setup.config

  def init():
    _, k_alphas, k_rng = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    k_params = params_key(config.seed)
    alphas = arch.init_alphas(
      k_alphas,
      steps=config.model.steps,
      init=config.search.alpha_init,
      scale=config.search.alpha_init_scale,
    )
    size = config.data.image_size
    images = jnp.zeros((2, size, size, config.data.channels), jnp.float32)
    variables = setup.model.init(k_params, images, arch.arch_weights(alphas), train=True)
    return SearchState(
      step=jnp.zeros((), jnp.int32),
      params=variables['params'],
      batch_stats=variables['batch_stats'],
      alphas=alphas,
      weight_opt_state=setup.weight_sgd.tx.init(variables['params']),
      arch_opt_state=setup.arch_tx.init(alphas),
      rng=k_rng,
    )

  return jax.jit(init, out_shardings=parallel.replicated(setup.mesh))()


def count_params(params) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(params))


def abstract_state(setup: SearchSetup) -> SearchState:
  return parallel.abstract_replicated(lambda: init_state(setup), setup.mesh)


def make_step_fn(setup: SearchSetup, phase: str):
  """The jitted step of a phase ('warmup': weights only; 'search': DARTS), state donated."""
  config = setup.config
  step = functools.partial(
    darts.search_step,
    model=setup.model,
    batch_fn=setup.batch_fn,
    weight_sgd=setup.weight_sgd,
    arch_tx=setup.arch_tx if phase == 'search' else None,
    settings=darts.StepSettings(
      batch_size=config.search.batch_size,
      steps_per_epoch=setup.steps_per_epoch,
      order=config.search.order,
      hypergradient=config.search.hypergradient,
      fd_radius=config.search.fd_radius,
    ),
    mesh=setup.mesh,
  )
  replicated = parallel.replicated(setup.mesh)
  return jax.jit(step, out_shardings=(replicated, replicated), donate_argnums=(0, 1))


def epoch_inputs(setup: SearchSetup, epoch: int):
  """This epoch's example orders and learning rate, as replicated device arrays."""
  config = setup.config
  perms = search_data.epoch_permutations(config.seed, epoch, config.data.num_examples)
  lr = jnp.asarray(setup.lr(epoch), jnp.float32)
  return parallel.replicate((*perms, lr), setup.mesh)


def derive_genotype(config: ml_collections.ConfigDict, alphas) -> genotypes.Genotype:
  alphas = jax.device_get(alphas)
  return derive.derive_genotype(
    alphas['normal'],
    alphas['reduce'],
    steps=config.model.steps,
    multiplier=config.model.multiplier,
  )


def epoch_record(setup, epoch, sums, state, wall_s) -> dict[str, Any]:
  """The metrics.jsonl line of a finished epoch (1-based `epoch` in the file)."""
  steps, examples = float(sums['steps']), float(sums['examples'])
  searched = setup.phase(epoch) == 'search'
  geno = derive_genotype(setup.config, state.alphas)
  weights = jax.device_get(arch.arch_weights(state.alphas))
  return {
    'epoch': epoch + 1,
    'phase': setup.phase(epoch),
    'step': int(jax.device_get(state.step)),
    'lr': setup.lr(epoch),
    'train_loss': float(sums['train_loss']) / steps,
    'train_acc': float(sums['train_correct']) / examples,
    'val_loss': float(sums['val_loss']) / steps if searched else None,
    'val_acc': float(sums['val_correct']) / examples if searched else None,
    'skip_connects_normal': genotypes.count_op(geno, 'skip_connect', 'normal'),
    'genotype': genotypes.genotype_to_json(geno),
    'alphas': {k: np.asarray(v).round(6).tolist() for k, v in weights.items()},
    'wall_s': round(wall_s, 3),
    'images_per_s': round(examples / wall_s, 2) if wall_s > 0 else None,
  }


def _summary_line(record: dict[str, Any], total_epochs: int) -> str:
  parts = [f'epoch {record["epoch"]}/{total_epochs} {record["phase"]}', f'lr={record["lr"]:.5f}']
  parts.append(f'train_loss={record["train_loss"]:.4f} train_acc={record["train_acc"]:.4f}')
  if record['val_loss'] is not None:
    parts.append(f'val_loss={record["val_loss"]:.4f} val_acc={record["val_acc"]:.4f}')
  parts.append(f'skip_normal={record["skip_connects_normal"]}')
  parts.append(f'{record["wall_s"]:.1f}s')
  return ' '.join(parts)


def run_search(
  config: ml_collections.ConfigDict, workdir: str, *, mesh: jax.sharding.Mesh | None = None
) -> dict[str, Any]:
  """Runs (or resumes) a search in `workdir`; returns a summary with the final genotype.

  Raises:
    ConfigError: a bad config value, an unwritable or incompatible workdir (nothing written).
    DeviceError: a batch that does not divide by the device count.
    CheckpointMismatchError: a checkpoint that does not fit the state this config builds.
    NonFiniteLossError: a NaN/Inf loss (the last good checkpoint is kept).
  """
  # Everything that can refuse the run is checked before the data is built (rlgd searches and
  # renders its fractals, half a minute on a CPU) and before anything is written.
  validate_search_config(config)
  mesh = _search_mesh(config, mesh)
  manager, latest = outputs.open_run_workdir(workdir, config)
  timer = timing.Phases(enabled=config.log.progress != 'none' and outputs.is_writer())
  d = config.data
  with timer('build data', f'{d.name}, {d.num_examples:,} examples, {d.num_classes:,} classes'):
    setup = build_search(config, mesh, workdir=workdir)
    jax.block_until_ready(setup.data)
  outputs.write_config(workdir, to_dict(config))
  for name, content in setup.artifacts.items():
    path = os.path.join(workdir, name)
    if outputs.is_writer() and not os.path.exists(path):
      write_json_atomic(path, content, indent=1)

  metrics_log = outputs.MetricsLog(workdir)
  abstract = abstract_state(setup)
  state_future = startup.start_state(
    timer, lambda: init_state(setup), manager, latest, abstract, count_params(abstract.params)
  )
  upcoming = [setup.phase(e) for e in range(latest or 0, setup.total_epochs)]
  example_args = (abstract, parallel.replicate(darts.init_metrics(), setup.mesh), setup.data)
  example_args += tuple(epoch_inputs(setup, 0))
  compiling = startup.compile_steps(
    timer,
    {
      f'{phase} step': (make_step_fn(setup, phase), example_args)
      for phase in sorted(set(upcoming), key=upcoming.index)  # in order of use
    },
  )
  state, record = startup.wait_state(state_future)
  start_epoch = 0 if record is None else int(record['epoch'])
  if record is not None:
    print(f'resuming {workdir} after epoch {start_epoch}', flush=True)
  metrics_log.truncate(start_epoch + 1)
  if start_epoch and outputs.is_writer():
    geno = derive_genotype(config, state.alphas)
    write_json_atomic(os.path.join(workdir, 'genotype.json'), genotypes.genotype_to_json(geno))

  progress = outputs.Progress(config.log.progress, config.log.every_steps, setup.total_epochs)
  sync_every = config.log.sync_every_steps

  for epoch in range(start_epoch, setup.total_epochs):
    phase = setup.phase(epoch)
    step_fn = startup.wait_compiled(compiling, f'{phase} step')
    train_perm, val_perm, lr = epoch_inputs(setup, epoch)
    sums = parallel.replicate(darts.init_metrics(), setup.mesh)
    progress.start_epoch(epoch, phase, setup.steps_per_epoch)
    t0 = time.perf_counter()
    for i in range(1, setup.steps_per_epoch + 1):
      if epoch == start_epoch and i == 1:
        with timer('first step'):
          state, sums = jax.block_until_ready(
            step_fn(state, sums, setup.data, train_perm, val_perm, lr)
          )
      else:
        state, sums = step_fn(state, sums, setup.data, train_perm, val_perm, lr)
      if (sync_every and i % sync_every == 0) or progress.will_print(i):
        # Waits for the device without copying anything back, so progress shows real steps.
        jax.block_until_ready(sums['steps'])
      progress.update(i)
    sums = jax.device_get(sums)
    wall_s = time.perf_counter() - t0

    bad_step = int(sums['first_bad_step'])
    if bad_step != int(darts.NO_BAD_STEP):
      step_in_epoch = bad_step - epoch * setup.steps_per_epoch + 1
      raise NonFiniteLossError(
        f'loss became NaN or Inf in epoch {epoch + 1} at step {step_in_epoch}/'
        f'{setup.steps_per_epoch} (global step {bad_step + 1}); stopped without saving it; the '
        f'last good checkpoint is epoch {epoch} in {os.path.join(workdir, "checkpoints")}'
      )

    record = epoch_record(setup, epoch, sums, state, wall_s)
    metrics_log.append(record)
    checkpointing.save(manager, epoch + 1, state, {'epoch': epoch + 1, 'phase': phase})
    if outputs.is_writer():
      write_json_atomic(os.path.join(workdir, 'genotype.json'), record['genotype'])
    progress.end_epoch(_summary_line(record, setup.total_epochs))
  timer.close()

  final = derive_genotype(config, state.alphas)
  return {
    'workdir': workdir,
    'epochs': setup.total_epochs,
    'genotype': genotypes.genotype_to_json(final),
    'genotype_text': genotypes.format_genotype(final),
    'compiled_phases': sorted(set(upcoming)),
    'phase_seconds': timer.seconds,
    'state': state,
  }
