"""A search built from its config, before any state exists: `build_search(config)`.

`SearchSetup` holds the model, the data (on device), the optimizers and the mesh, and answers the
schedule questions of a run (learning rate, phase, SGAS batch growth, the global step of an epoch);
the functions below make what a run steps: the initial state (N seeds stacked), the epoch
accumulators, the jitted step of a phase and an epoch's inputs, or their shapes only.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from unreal_nas_jax import config_utils, files, optim, parallel
from unreal_nas_jax.data import search_data
from unreal_nas_jax.models.layers import params_key
from unreal_nas_jax.models.supernet import SearchNetwork, resolve_edge_form
from unreal_nas_jax.ops.depthwise import resolve_depthwise_impl
from unreal_nas_jax.search import arch, darts, derivation, sgas
from unreal_nas_jax.search.seeds import over_seeds, seeds_program
from unreal_nas_jax.search.state import SearchState
from unreal_nas_jax.space import genotypes


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
    """How the N seeds run on this mesh's platform (`seeds_program`); 'vmap' when they are split
    over groups of devices."""
    if parallel.seed_shards(self.mesh) > 1:
      return 'vmap'
    return seeds_program(self.config.search.seeds_program, parallel.mesh_platform(self.mesh))

  @property
  def per_seed(self) -> jax.sharding.NamedSharding:
    """Where the stacked per-seed trees (states, sums, orders, own data) live."""
    return parallel.per_seed(self.mesh)

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
  mesh = search_mesh(config, mesh)
  m, o = config.model, config.optim
  platform = parallel.mesh_platform(mesh)
  model = SearchNetwork(
    num_classes=config.data.num_classes,
    channels=m.channels,
    layers=m.layers,
    steps=m.steps,
    multiplier=m.multiplier,
    stem_multiplier=m.stem_multiplier,
    depthwise_impl=resolve_depthwise_impl(
      m.depthwise_impl, platform=platform, num_devices=mesh.devices.size
    ),
    edge_form=resolve_edge_form(m.edge_form, platform),
    bn_moments='shifted',
    compute_dtype=m.compute_dtype,
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
    data=_place_data(arrays, mesh, abstract, n > 1 and not shared),
    batch_fn=data.batch_fn,
    artifacts=artifacts,
    weight_sgd=weight_sgd,
    arch_tx=arch_tx,
    total_epochs=config.search.warmup_epochs + config.search.epochs,
    data_axis=None if n == 1 or shared else 0,
  )


def _place_data(arrays, mesh, abstract: bool, per_seed: bool):
  """The search data on the mesh (or its shapes): one dataset per seed goes with its seed."""
  sharding = parallel.per_seed(mesh) if per_seed else parallel.replicated(mesh)
  if abstract:
    return parallel.abstract(arrays, mesh, sharding.spec)
  return parallel.place(arrays, sharding)


def seed_dir(workdir: str, k: int, num_seeds: int) -> str:
  """Where seed k's own files go: the workdir itself for a single seed, else workdir/seed_<k>."""
  return workdir if num_seeds == 1 else files.join(workdir, f'seed_{k}')


def search_mesh(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh | None = None):
  """The data mesh of a search (the seeds split over `config.parallel.seed_shards` groups of its
  devices), checked against every batch the search will step (SGAS grows it)."""
  s = config.search
  mesh = mesh if mesh is not None else parallel.make_mesh(config.parallel.num_devices)
  mesh = parallel.with_seed_axis(mesh, config.parallel.seed_shards)
  parallel.check_batch_divides(s.batch_size, mesh, 'config.search.batch_size')
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

  init = jax.jit(init, out_shardings=parallel.replicated(setup.mesh))
  states = []
  for k in range(setup.num_seeds):
    _, k_alphas, k_rng = jax.random.split(jax.random.PRNGKey(setup.seed(k)), 3)
    states.append(init(k_alphas, k_rng, params_key(setup.seed(k))))
  if setup.num_seeds == 1:
    return states[0]
  stack = jax.jit(
    lambda *s: jax.tree.map(lambda *x: jnp.stack(x), *s), out_shardings=setup.per_seed
  )
  return stack(*states)


def new_sums(setup: SearchSetup):
  """Fresh epoch accumulators, one set per seed (not yet placed on devices)."""
  sums = darts.init_metrics()
  if setup.num_seeds > 1:
    sums = jax.tree.map(lambda x: jnp.stack([x] * setup.num_seeds), sums)
  return sums


def init_sums(setup: SearchSetup):
  """Fresh epoch accumulators, one set per seed, on the mesh."""
  return parallel.place(new_sums(setup), setup.per_seed)


def count_params(params) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(params))


def abstract_state(setup: SearchSetup) -> SearchState:
  return parallel.abstract(jax.eval_shape(lambda: init_state(setup)), setup.mesh,
                           setup.per_seed.spec)  # fmt: skip


# The jitted programs of the latest searches built in this process, by (config, mesh, program).
_PROGRAMS: collections.OrderedDict = collections.OrderedDict()
_PROGRAMS_KEPT = 8


def _reused(setup: SearchSetup, name: str, make):
  """`make()`'s jitted function, or the one made for the same config, mesh and `name` before in
  this process: a run started again (resumed after an exception, a notebook, a test) skips
  tracing, lowering and compiling programs that only the config and mesh determine."""
  # Checkpoint and log settings stay on the host: a resumed run that checkpoints more often
  # steps the same programs.
  config = config_utils.to_dict(setup.config)
  traced = {k: v for k, v in config.items() if k not in ('checkpoint', 'log')}
  key = (json.dumps(traced, sort_keys=True), setup.mesh, name)
  if key in _PROGRAMS:
    _PROGRAMS.move_to_end(key)
  else:
    _PROGRAMS[key] = make()
    while len(_PROGRAMS) > _PROGRAMS_KEPT:
      _PROGRAMS.popitem(last=False)
  return _PROGRAMS[key]


def make_step_fn(setup: SearchSetup, phase: str, batch_size: int | None = None):
  """The jitted step of a phase ('warmup': weights only; 'search': DARTS), state donated (made
  once per traced config, mesh, phase and batch in a process: `_reused`).

  `batch_size` defaults to `config.search.batch_size` (SGAS grows it after decisions).
  """
  return _reused(
    setup, f'{phase} step, batch {batch_size}', lambda: _make_step_fn(setup, phase, batch_size)
  )


def _make_step_fn(setup: SearchSetup, phase: str, batch_size: int | None):
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
    seeds_axis = parallel.SEEDS_AXIS if parallel.seed_shards(setup.mesh) > 1 else None
    step = over_seeds(step, setup.data_axis, program, seeds_axis)
  return jax.jit(
    step,
    out_shardings=(setup.per_seed, setup.per_seed),
    donate_argnums=(0, 1),
    compiler_options=parallel.compiler_options(config.parallel.xla_optimization_level),
  )


def epoch_inputs(setup: SearchSetup, epoch: int):
  """This epoch's example orders (with their seeds), learning rate and first global step (on
  every device), as arrays on the mesh."""
  *perms, lr, start = _epoch_values(setup, epoch)
  return (
    *parallel.place(tuple(perms), setup.per_seed),
    *parallel.replicate((lr, start), setup.mesh),
  )


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
  *perms, lr, start = jax.eval_shape(lambda: _epoch_values(setup, 0))
  per_seed = setup.per_seed.spec
  return (
    abstract_state(setup),
    parallel.abstract(jax.eval_shape(lambda: new_sums(setup)), setup.mesh, per_seed),
    jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), setup.data),
    *parallel.abstract(tuple(perms), setup.mesh, per_seed),
    *parallel.abstract((lr, start), setup.mesh),
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
