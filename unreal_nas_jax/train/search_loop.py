"""The search loop: `run_search(config, workdir)`, resumable, data parallel, one compile per phase.

Order of resumption (big_vision's): the newest checkpoint in the workdir that restores (after
checking that the saved config matches), else a fresh state from the seed. Every epoch ends with
a metrics line, an Orbax checkpoint and genotype.json, and `train.run.Run` checkpoints inside
epochs too (every N steps or M minutes, and on SIGTERM/SIGINT); a run killed at any point resumes
from its last complete checkpoint, mid-epoch included, to the same bits as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from unreal_nas_jax import files, optim, parallel
from unreal_nas_jax.data import search_data
from unreal_nas_jax.files import write_json_atomic
from unreal_nas_jax.models.layers import params_key
from unreal_nas_jax.models.supernet import SearchNetwork, resolve_edge_form
from unreal_nas_jax.ops.depthwise import resolve_depthwise_impl
from unreal_nas_jax.search import arch, darts, derivation, sgas
from unreal_nas_jax.search.state import SearchState
from unreal_nas_jax.search.validate import validate_search_config
from unreal_nas_jax.space import genotypes
from unreal_nas_jax.space.primitives import PRIMITIVES
from unreal_nas_jax.train import outputs, startup
from unreal_nas_jax.train import run as run_lib
from unreal_nas_jax.train.tensorboard import search_epoch_scalars


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
  total_epochs: int
  data_axis: int | None = None  # 0: one dataset per seed, stacked; None: one shared dataset

  @property
  def num_seeds(self) -> int:
    return self.config.search.num_seeds

  @property
  def seeds_program(self) -> str:
    """How the N seeds run on this mesh's platform (`seeds_program`)."""
    return seeds_program(self.config.search.seeds_program, parallel.mesh_platform(self.mesh))

  def seed(self, k: int) -> int:
    """The seed (weights, alphas, epoch order) of the k-th of `num_seeds` searches."""
    return self.config.seed + k

  def lr(self, epoch: int) -> float:
    """Weight learning rate of 0-based `epoch` (cosine over warm-up + search epochs)."""
    o = self.config.optim
    return optim.cosine_lr(epoch, self.total_epochs, o.lr, o.lr_min)

  def phase(self, epoch: int) -> str:
    return 'warmup' if epoch < self.config.search.warmup_epochs else 'search'

  def _sgas_schedule(self) -> dict[str, int]:
    s = self.config.search
    return {
      'start': s.sgas_decision_start,
      'every': s.sgas_decision_every,
      'steps': self.config.model.steps,
    }

  def decisions_before(self, epoch: int) -> int:
    """SGAS decisions made before 0-based `epoch` starts (0 for the other methods)."""
    s = self.config.search
    if s.method != 'sgas':
      return 0
    return sgas.decision_count(epoch - s.warmup_epochs - 1, **self._sgas_schedule())

  def is_decision_epoch(self, epoch: int) -> bool:
    """Whether SGAS decides an edge per cell type at the end of 0-based `epoch`."""
    s = self.config.search
    return (
      s.method == 'sgas'
      and self.phase(epoch) == 'search'
      and sgas.is_decision_epoch(epoch - s.warmup_epochs, **self._sgas_schedule())
    )

  def batch_size(self, epoch: int) -> int:
    """The global batch of `epoch`: SGAS grows it after each decision."""
    s = self.config.search
    return s.batch_size + s.sgas_batch_increase * self.decisions_before(epoch)

  def steps_per_epoch(self, epoch: int) -> int:
    return self.config.data.num_examples // self.batch_size(epoch)

  def epoch_start(self, epoch: int) -> int:
    """The global step at which 0-based `epoch` starts."""
    return sum(self.steps_per_epoch(e) for e in range(epoch))

  def epoch_of_step(self, global_step: int) -> int:
    """The 0-based epoch that global step `global_step` (0-based) belongs to (the run's length
    for a step at or past its end)."""
    epoch = 0
    while epoch < self.total_epochs and self.epoch_start(epoch + 1) <= global_step:
      epoch += 1
    return epoch

  def step_name(self, epoch: int) -> str:
    """The compiled program `epoch` runs: one per phase, and one per grown SGAS batch."""
    name = f'{self.phase(epoch)} step'
    grown = self.batch_size(epoch) != self.config.search.batch_size
    return f'{name}, batch {self.batch_size(epoch)}' if grown else name


def build_search(
  config: ml_collections.ConfigDict,
  mesh: jax.sharding.Mesh | None = None,
  *,
  workdir: str | None = None,
  abstract: bool = False,
):
  """Builds the model, data, optimizers and mesh of a search from a validated `config`.

  `workdir` (optional) lets the data reuse what an earlier start of the run kept there (the
  fractal systems of rlgd); nothing is written. `abstract`: the data as shapes only (nothing
  built, read or placed), for compiling the steps for a mesh of another machine's devices.
  """
  mesh = _search_mesh(config, mesh)
  m, o = config.model, config.optim
  platform = parallel.mesh_platform(mesh)
  model = SearchNetwork(
    num_classes=config.data.num_classes,
    channels=m.channels,
    layers=m.layers,
    steps=m.steps,
    multiplier=m.multiplier,
    stem_multiplier=m.stem_multiplier,
    depthwise_impl=resolve_depthwise_impl(m.depthwise_impl, platform=platform),
    edge_form=resolve_edge_form(m.edge_form, platform),
    partial_channels=config.search.partial_channels if config.search.method == 'pc_darts' else 1,
  )
  n, shared = config.search.num_seeds, config.search.seeds_share_data
  if abstract:
    data = search_data.make_search_data(config.data, config.data_seed, abstract=True)
    arrays, artifacts = data.arrays, {}
    if not (n == 1 or shared):
      arrays = jax.tree.map(lambda a: jax.ShapeDtypeStruct((n, *a.shape), a.dtype), arrays)
  elif n == 1 or shared:
    data = search_data.make_search_data(config.data, config.data_seed, workdir=workdir)
    arrays, artifacts = data.arrays, data.artifacts
  else:
    # One dataset per seed (data seeds data_seed + k), stacked; each keeps its files in seed_k/.
    built = [
      search_data.make_search_data(
        config.data, config.data_seed + k, workdir=workdir and seed_dir(workdir, k, n)
      )
      for k in range(n)
    ]
    data = built[0]
    arrays = jax.tree.map(lambda *a: jnp.stack(a), *(b.arrays for b in built))
    artifacts = {
      os.path.join(f'seed_{k}', name): content
      for k, b in enumerate(built)
      for name, content in b.artifacts.items()
    }
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
    data=parallel.abstract(arrays, mesh) if abstract else parallel.replicate(arrays, mesh),
    batch_fn=data.batch_fn,
    artifacts=artifacts,
    weight_sgd=weight_sgd,
    arch_tx=arch_tx,
    total_epochs=config.search.warmup_epochs + config.search.epochs,
    data_axis=None if n == 1 or shared else 0,
  )


def seed_dir(workdir: str, k: int, num_seeds: int) -> str:
  """Where seed k's own files go: the workdir itself for a single seed, else workdir/seed_<k>."""
  return workdir if num_seeds == 1 else files.join(workdir, f'seed_{k}')


def _search_mesh(config, mesh):
  s = config.search
  mesh = parallel.data_mesh(
    config.parallel.num_devices, s.batch_size, 'config.search.batch_size', mesh
  )
  if s.method == 'sgas' and s.sgas_batch_increase:
    for made in range(1, 2 * config.model.steps + 1):  # the batches SGAS grows to
      grown = s.batch_size + made * s.sgas_batch_increase
      parallel.check_batch_divides(
        grown, mesh, f'the batch after {made} SGAS decisions (batch_size + {made} x increase)'
      )
  return mesh


def init_state(setup: SearchSetup) -> SearchState:
  """A fresh, replicated state from `config.seed` (weights, zero or normal alphas, optimizers).

  With N seeds, the N states of seeds seed, ..., seed + N - 1 stacked on a leading axis, each
  exactly the state a single run with that seed starts from (one compiled initialisation).
  """
  config = setup.config

  def init(k_alphas, k_rng, k_params):
    alphas = arch.init_alphas(
      k_alphas,
      steps=config.model.steps,
      init=config.search.alpha_init,
      scale=config.search.alpha_init_scale,
      edge_betas=config.search.method == 'pc_darts',
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
      decisions=sgas.init_decisions(config.model.steps),
    )

  replicated = parallel.replicated(setup.mesh)
  init = jax.jit(init, out_shardings=replicated)
  states = []
  for k in range(setup.num_seeds):
    _, k_alphas, k_rng = jax.random.split(jax.random.PRNGKey(setup.seed(k)), 3)
    states.append(init(k_alphas, k_rng, params_key(setup.seed(k))))
  if setup.num_seeds == 1:
    return states[0]
  return jax.jit(lambda *s: jax.tree.map(lambda *x: jnp.stack(x), *s), out_shardings=replicated)(
    *states
  )


def new_sums(setup: SearchSetup):
  """Fresh epoch accumulators, one set per seed (not yet placed on devices)."""
  sums = darts.init_metrics()
  if setup.num_seeds > 1:
    sums = jax.tree.map(lambda x: jnp.stack([x] * setup.num_seeds), sums)
  return sums


def init_sums(setup: SearchSetup):
  """Fresh epoch accumulators, one set per seed, replicated."""
  return parallel.replicate(new_sums(setup), setup.mesh)


def seed_slice(tree, k: int, num_seeds: int):
  """Seed k's part of a per-seed pytree (the tree itself for a single seed)."""
  return tree if num_seeds == 1 else jax.tree.map(lambda x: x[k], tree)


def count_params(params) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(params))


def abstract_state(setup: SearchSetup) -> SearchState:
  return parallel.abstract_replicated(lambda: init_state(setup), setup.mesh)


def make_step_fn(setup: SearchSetup, phase: str, batch_size: int | None = None):
  """The jitted step of a phase ('warmup': weights only; 'search': DARTS), state donated.

  `batch_size` defaults to `config.search.batch_size` (SGAS grows it after decisions).
  """
  config = setup.config
  step = functools.partial(
    darts.search_step,
    model=setup.model,
    batch_fn=setup.batch_fn,
    weight_sgd=setup.weight_sgd,
    arch_tx=setup.arch_tx if phase == 'search' else None,
    settings=darts.StepSettings(
      batch_size=batch_size or config.search.batch_size,
      order=config.search.order,
      hypergradient=config.search.hypergradient,
      fd_radius=config.search.fd_radius,
      sgas=config.search.method == 'sgas',
    ),
    mesh=setup.mesh,
  )
  program = setup.seeds_program
  if setup.num_seeds > 1 and program != 'loop':
    step = _over_seeds(step, setup.data_axis, program)
  replicated = parallel.replicated(setup.mesh)
  return jax.jit(step, out_shardings=(replicated, replicated), donate_argnums=(0, 1))


SEEDS_PROGRAMS = ('auto', 'vmap', 'map', 'loop')


def seeds_program(choice: str, platform: str | None = None) -> str:
  """How N seeds run. 'vmap': one vectorised step; 'map': one step that loops over the seeds
  inside the program; 'loop': the single-seed step called once per seed, so every seed is
  bit-identical to a single run. 'auto': 'vmap' on accelerators, where it fills idle parallel
  hardware; 'loop' on CPU, where there is none to fill (vmap and map were within 15% of it there,
  and their reordered float32 sums can flip near-tied alphas). `platform`: the mesh's (default
  JAX's default backend)."""
  if choice != 'auto':
    return choice
  return 'loop' if (platform or jax.default_backend()) == 'cpu' else 'vmap'


def host_loop(step_fn, num_seeds: int, data_axis: int | None):
  """The 'loop' program: seed k's slice of the stacked trees through the single-seed step."""
  split = jax.jit(lambda tree: [seed_slice(tree, k, num_seeds) for k in range(num_seeds)])
  stack = jax.jit(lambda trees: jax.tree.map(lambda *x: jnp.stack(x), *trees))

  # The data and the epoch's orders are the same arrays step after step: split them once per
  # epoch, not every step (the cache holds the arrays it was made from, so it is exact).
  cache: dict[str, Any] = {'inputs': None, 'split': None}

  def split_inputs(inputs):
    cached = cache['inputs']
    same = cached is not None and all(
      a is b for a, b in zip(jax.tree.leaves(inputs), jax.tree.leaves(cached), strict=True)
    )
    if not same:
      per_seed = split(inputs)
      cache['inputs'], cache['split'] = inputs, [list(x) for x in zip(*per_seed, strict=True)]
    return cache['split']

  def run(state, sums, data, train_perm, val_perm, lr, epoch_start):
    states, seed_sums = split(state), split(sums)
    seed_data, train_perms, val_perms = split_inputs(
      (data if data_axis is not None else None, train_perm, val_perm)
    )
    if data_axis is None:
      seed_data = [data] * num_seeds
    for k in range(num_seeds):
      states[k], seed_sums[k] = step_fn(
        states[k], seed_sums[k], seed_data[k], train_perms[k], val_perms[k], lr, epoch_start
      )
    return stack(states), stack(seed_sums)

  return run


def _over_seeds(step, data_axis: int | None, program: str):
  """N independent searches as one program: state, sums and epoch orders (and the data when each
  seed has its own) carry a leading seed axis; the learning rate and first step are shared."""
  if program == 'vmap':
    return jax.vmap(step, in_axes=(0, 0, data_axis, 0, 0, None, None))

  def mapped(state, sums, data, train_perm, val_perm, lr, epoch_start):
    def one(xs):
      state, sums, train_perm, val_perm, seed_data = xs
      seed_data = data if data_axis is None else seed_data
      return step(state, sums, seed_data, train_perm, val_perm, lr, epoch_start)

    per_seed = data if data_axis is not None else jnp.zeros(train_perm.shape[0])
    return jax.lax.map(one, (state, sums, train_perm, val_perm, per_seed))

  return mapped


def epoch_inputs(setup: SearchSetup, epoch: int):
  """This epoch's example orders, learning rate and first global step, as replicated arrays."""
  return parallel.replicate(_epoch_values(setup, epoch), setup.mesh)


def _epoch_values(setup: SearchSetup, epoch: int):
  config = setup.config
  perms = [
    search_data.epoch_permutations(setup.seed(k), epoch, config.data.num_examples)
    for k in range(setup.num_seeds)
  ]
  perms = (
    perms[0] if setup.num_seeds == 1 else tuple(jnp.stack(p) for p in zip(*perms, strict=True))
  )
  lr = jnp.asarray(setup.lr(epoch), jnp.float32)
  start = jnp.asarray(setup.epoch_start(epoch), jnp.int32)
  return (*perms, lr, start)


def abstract_step_args(setup: SearchSetup):
  """The step's arguments (state, sums, data, train_perm, val_perm, lr, epoch_start) as shapes
  with the mesh's shardings: what its programs are lowered from, nothing computed or placed."""
  return (
    abstract_state(setup),
    parallel.abstract_replicated(lambda: new_sums(setup), setup.mesh),
    parallel.abstract(setup.data, setup.mesh),
    *parallel.abstract_replicated(lambda: _epoch_values(setup, 0), setup.mesh),
  )


def derive_genotype(config: ml_collections.ConfigDict, state) -> genotypes.Genotype:
  """The genotype of a search state (`search.derivation.search_genotype`)."""
  return derivation.search_genotype(
    jax.device_get(state.alphas),
    jax.device_get(state.decisions),
    method=config.search.method,
    steps=config.model.steps,
    multiplier=config.model.multiplier,
    sgas_criterion=config.search.sgas_criterion,
  )


def one_seed_shapes(args, data_axis):
  """One seed's shapes of the N-seed step arguments (state, sums, data, perms, lr, start)."""

  def drop_seed_axis(tree):
    return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype, sharding=getattr(x, 'sharding', None)),
      tree,
    )

  state, sums, data, train_perm, val_perm, lr, start = args
  data = data if data_axis is None else drop_seed_axis(data)
  return (drop_seed_axis(state), drop_seed_axis(sums), data, *drop_seed_axis((train_perm, val_perm)),
          lr, start)  # fmt: skip


def _step_fn_for(setup: SearchSetup, phase: str, batch_size: int):
  if batch_size == setup.config.search.batch_size:
    return make_step_fn(setup, phase)
  return make_step_fn(setup, phase, batch_size)


def _sgas_record(decisions, scores) -> dict[str, Any]:
  """What SGAS decided so far and this epoch's scores, per cell type, for metrics.jsonl."""
  decisions, scores = jax.device_get((decisions, scores))
  return {
    cell: {
      'decided_ops': [
        PRIMITIVES[int(o)] if o >= 0 else None for o in np.asarray(decisions[cell]['op'])
      ],
      'pruned': np.asarray(decisions[cell]['pruned']).tolist(),
      **{k: np.asarray(v).round(6).tolist() for k, v in scores[cell].items()},
    }
    for cell in arch.CELLS
  }


def epoch_record(
  setup, epoch, sums, state, wall_s, sgas_scores=None, seed=None, examples_timed=None
) -> dict[str, Any]:
  """The metrics.jsonl line of a finished epoch (1-based `epoch` in the file) of one seed.

  `examples_timed`: the examples that `wall_s` covers (fewer than the epoch's after a resume).
  """
  steps, examples = float(sums['steps']), float(sums['examples'])
  searched = setup.phase(epoch) == 'search'
  geno = derive_genotype(setup.config, state)
  weights = jax.device_get(arch.arch_weights(state.alphas))
  return {
    'epoch': epoch + 1,
    **({'seed': seed} if seed is not None else {}),
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
    'images_per_s': round((examples_timed or examples) / wall_s, 2) if wall_s > 0 else None,
    'batch_size': setup.batch_size(epoch),
    **({'sgas': _sgas_record(state.decisions, sgas_scores)} if sgas_scores is not None else {}),
  }


def _summary_line(record: dict[str, Any], total_epochs: int) -> str:
  parts = [f'epoch {record["epoch"]}/{total_epochs} {record["phase"]}']
  if 'seed' in record:
    parts.append(f'seed={record["seed"]}')
  parts.append(f'lr={record["lr"]:.5f}')
  parts.append(f'train_loss={record["train_loss"]:.4f} train_acc={record["train_acc"]:.4f}')
  if record['val_loss'] is not None:
    parts.append(f'val_loss={record["val_loss"]:.4f} val_acc={record["val_acc"]:.4f}')
  parts.append(f'skip_normal={record["skip_connects_normal"]}')
  if 'sgas' in record:
    decided = sum(op is not None for op in record['sgas']['normal']['decided_ops'])
    parts.append(f'sgas_decided={decided} batch={record["batch_size"]}')
  parts.append(f'{record["wall_s"]:.1f}s')
  return ' '.join(parts)


def _check_finite(setup: SearchSetup, epoch: int, steps: int, workdir: str):
  """The NaN/Inf check of `epoch`'s host sums (before any save: a bad state is never saved)."""

  def check(sums):
    bad_steps = np.atleast_1d(sums['first_bad_step'])
    if (bad_steps != int(darts.NO_BAD_STEP)).any():
      k = int(np.argmin(bad_steps))
      step_in_epoch = int(bad_steps[k]) - setup.epoch_start(epoch) + 1
      which = f' of seed {setup.seed(k)}' if setup.num_seeds > 1 else ''
      raise run_lib.NonFiniteLossError(
        f'loss{which} became NaN or Inf in epoch {epoch + 1} at step {step_in_epoch}/{steps} '
        f'(global step {int(bad_steps[k]) + 1}); stopped without saving it; the last good '
        f'checkpoint is in {files.join(workdir, "checkpoints")}'
      )

  return check


def epochs_at_fn(setup: SearchSetup):
  """Global step -> finished epochs if that step ends an epoch, else None."""
  ends = {setup.epoch_start(e): e for e in range(setup.total_epochs + 1)}
  return ends.get


def run_search(
  config: ml_collections.ConfigDict, workdir: str, *, mesh: jax.sharding.Mesh | None = None
) -> dict[str, Any]:
  """Runs (or resumes) a search in `workdir`; returns a summary with the final genotype.

  Raises:
    ConfigError: a bad config value, an unwritable or incompatible workdir (nothing written).
    DeviceError: a batch that does not divide by the device count.
    CheckpointError: no checkpoint of the workdir restores into the state this config builds.
    NonFiniteLossError: a NaN/Inf loss (the last good checkpoint is kept).
    Preempted: SIGTERM/SIGINT; the current step was checkpointed.
  """
  # Everything that can refuse the run is checked before the data is built (rlgd searches and
  # renders its fractals, half a minute on a CPU) and before anything is written.
  validate_search_config(config)
  mesh = _search_mesh(config, mesh)
  run = run_lib.Run(
    config, workdir, total_epochs=config.search.warmup_epochs + config.search.epochs
  )
  with run.running():
    return _search(config, workdir, mesh, run)


def _search(config, workdir, mesh, run: run_lib.Run) -> dict[str, Any]:
  timer = run.timer
  d = config.data
  with timer('build data', f'{d.name}, {d.num_examples:,} examples, {d.num_classes:,} classes'):
    setup = build_search(config, mesh, workdir=workdir)
    jax.block_until_ready(setup.data)
  run.epochs_at = epochs_at_fn(setup)
  run.write_config()
  n = setup.num_seeds
  seed_dirs = [seed_dir(workdir, k, n) for k in range(n)]
  if outputs.is_writer():
    for directory in seed_dirs:
      files.make_dirs(directory)
    for name, content in setup.artifacts.items():
      path = files.join(workdir, name)
      if not files.exists(path):
        write_json_atomic(path, content, indent=1)

  metrics_logs = [outputs.MetricsLog(directory) for directory in seed_dirs]
  abstract = {
    'state': abstract_state(setup),
    'sums': parallel.abstract_replicated(lambda: new_sums(setup), setup.mesh),
  }
  state_future = run.start_state(
    lambda: {'state': init_state(setup), 'sums': init_sums(setup)},
    abstract,
    count_params(abstract['state'].params),
  )
  # The programs still to run, in order of use: one per phase, and one per grown SGAS batch.
  latest = run.manager.latest_step()  # where the run most likely resumes (before it restores)
  first_epoch = 0 if latest is None else setup.epoch_of_step(latest)
  programs = {}
  for e in range(first_epoch, setup.total_epochs):
    programs.setdefault(setup.step_name(e), (setup.phase(e), setup.batch_size(e)))
  example_args = abstract_step_args(setup)
  looped = n > 1 and setup.seeds_program == 'loop'
  if looped:  # the single-seed program, compiled from one seed's shapes
    example_args = one_seed_shapes(example_args, setup.data_axis)

  def compile_ahead(names):
    """Starts compiling `names` (those at the configured batch at once, grown ones later)."""
    return startup.compile_steps(
      timer, {name: (_step_fn_for(setup, *programs[name]), example_args) for name in names}
    )

  base = config.search.batch_size
  compiling = compile_ahead([n for n, (_, batch) in programs.items() if batch == base])
  items, record = startup.wait_state(state_future)
  state, restored_sums = items['state'], items['sums']
  start_epoch, done = run.resume_point(record)
  run.announce_resume(record)
  for k, metrics_log in enumerate(metrics_logs):
    metrics_log.truncate(start_epoch + 1)
    if start_epoch and outputs.is_writer():
      geno = genotypes.genotype_to_json(derive_genotype(config, seed_slice(state, k, n)))
      write_json_atomic(files.join(seed_dirs[k], 'genotype.json'), geno)
  update = functools.partial(sgas.update, criterion=config.search.sgas_criterion)
  update_decisions = jax.jit(
    update if n == 1 else jax.vmap(update, in_axes=(0, 0, None)),
    out_shardings=parallel.replicated(setup.mesh),
  )

  for epoch in range(start_epoch, setup.total_epochs):
    phase, name, steps = setup.phase(epoch), setup.step_name(epoch), setup.steps_per_epoch(epoch)
    if name not in compiling:
      compiling.update(compile_ahead([name]))
    step_fn = startup.wait_compiled(compiling, name)
    if looped:
      step_fn = host_loop(step_fn, n, setup.data_axis)
    following = setup.step_name(epoch + 1) if epoch + 1 < setup.total_epochs else name
    if following not in compiling:
      compiling.update(compile_ahead([following]))  # behind this epoch
    inputs = epoch_inputs(setup, epoch)
    done_before = done if epoch == start_epoch else 0  # steps run before a resume
    state, sums, wall_s = run.steps(
      epoch=epoch,
      phase=phase,
      done=done_before,
      steps=steps,
      epoch_start=setup.epoch_start(epoch),
      step=lambda state, sums, i, fn=step_fn, x=inputs: fn(state, sums, setup.data, *x),
      state=state,
      sums=restored_sums if done_before else init_sums(setup),
      check=_check_finite(setup, epoch, steps, workdir),
      record=lambda i, epoch=epoch, phase=phase: {
        'epoch': epoch,
        'step_in_epoch': i,
        'phase': phase,
      },
    )

    scores = None
    if config.search.method == 'sgas' and phase == 'search':
      decide = jnp.asarray(setup.is_decision_epoch(epoch))
      decisions, scores = update_decisions(state.alphas, state.decisions, decide)
      state = state.replace(decisions=decisions)
    records = [
      epoch_record(
        setup,
        epoch,
        seed_slice(sums, k, n),
        seed_slice(state, k, n),
        wall_s,
        None if scores is None else seed_slice(scores, k, n),
        seed=setup.seed(k) if n > 1 else None,
        examples_timed=(steps - done_before) * setup.batch_size(epoch),
      )
      for k in range(n)
    ]
    run.save(
      setup.epoch_start(epoch + 1),
      {'state': state, 'sums': init_sums(setup)},
      {'epoch': epoch + 1, 'step_in_epoch': 0, 'phase': phase},
    )
    lines = []
    for k, metrics_log in enumerate(metrics_logs):
      records[k]['checkpoint_s'] = round(run.checkpoint_seconds, 3)
      run.log_epoch(seed_dirs[k], metrics_log, records[k], search_epoch_scalars(records[k]))
      lines.append(_summary_line(records[k], setup.total_epochs))
      if outputs.is_writer():
        write_json_atomic(files.join(seed_dirs[k], 'genotype.json'), records[k]['genotype'])
    run.progress.end_epoch('\n'.join(lines))
    run.stop_if_requested(epoch, setup.epoch_start(epoch + 1))
  timer.close()

  finals = [derive_genotype(config, seed_slice(state, k, n)) for k in range(n)]
  return {
    'workdir': workdir,
    'epochs': setup.total_epochs,
    'num_seeds': n,
    'seeds': [
      {
        'seed': setup.seed(k),
        'dir': seed_dirs[k],
        'genotype': genotypes.genotype_to_json(g),
        'genotype_text': genotypes.format_genotype(g),
      }
      for k, g in enumerate(finals)
    ],
    'genotype': genotypes.genotype_to_json(finals[0]),
    'genotype_text': genotypes.format_genotype(finals[0]),
    'compiled_phases': sorted({phase for phase, _ in programs.values()}),
    'compiled_steps': list(programs),
    'phase_seconds': timer.seconds,
    'state': state,
  }
