"""The probe loop: fixed architectures trained from scratch, `run_probe(config, workdir)`.

UnrealNAS (Section 3.1, Fig. 1) trains architectures sampled from the DARTS space on a dataset
and reads two things off their training curves: the epoch at which a curve converges (the
dataset's difficulty) and the architectures' ranking at a probe epoch (its distinguishability).

An architecture is an input of one program, not a program of its own: each one is the search
supernet (`models.supernet.SearchNetwork`) whose mixing weights are exactly one-hot on the
genotype's 2 chosen edges per node and exactly zero on every other edge, which is what the search
state's SGAS decisions express (`search.arch.arch_weights`: a decided edge runs only its op, a
pruned edge nothing). So the K architectures are K search states that differ only in their
decisions, stacked on a leading axis and stepped by the warm-up step of the N-seed search
(`search.setup.make_step_fn`: weights only, one compile for all K), and the loop shape
(`train.loop.run_epochs`) checkpoints, resumes and stops them like a search. A step costs what
a supernet step costs, every op being computed on every edge, however few the architecture uses.

The workdir is the probe format of `train.probe_format` (config.json, architectures.json and
probe.jsonl, one line per architecture per epoch), plus checkpoints/.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from unreal_nas_jax import files, parallel
from unreal_nas_jax.config_utils import (
  ConfigError,
  require,
  require_choice,
  require_range,
  to_dict,
)
from unreal_nas_jax.data import search_data
from unreal_nas_jax.files import write_json_atomic, write_text_atomic
from unreal_nas_jax.search import darts, seeds, sgas
from unreal_nas_jax.search import setup as search_setup
from unreal_nas_jax.search.arch import CELLS
from unreal_nas_jax.search.validate import require_batch_fits_data, validate_search_config
from unreal_nas_jax.space import genotypes, sampling
from unreal_nas_jax.space.primitives import PRIMITIVES, edge_list, num_edges
from unreal_nas_jax.train import genotype_source, loop, outputs, probe_format, records, tensorboard
from unreal_nas_jax.train import run as run_lib

PHASE = 'probe'
# The search fields the supernet's warm-up step reads; the probe's own block sets the rest.
_ARCH_OPTIM = {
  'arch_lr': 0.0,
  'arch_b1': 0.5,
  'arch_b2': 0.999,
  'arch_eps': 1e-8,
  'arch_weight_decay': 0.0,
}


def random_name(arch_seed: int, k: int) -> str:
  """The name of the k-th random architecture of `arch_seed` (equal names, equal cells)."""
  return f'random_{arch_seed}_{k}'


def search_view(config: ml_collections.ConfigDict, num_architectures: int):
  """The probe config as the search config whose warm-up phase it runs: `probe.epochs` warm-up
  epochs of SGAS with every edge decided (the decisions make the mixing weights one-hot) and one
  'seed' per architecture."""
  view = ml_collections.ConfigDict(to_dict(config))
  p = view.probe
  del view['probe']
  view.optim.update({k: v for k, v in _ARCH_OPTIM.items() if k not in view.optim})
  view.search = ml_collections.ConfigDict(
    {
      'method': 'sgas',  # applies state.decisions to the mixing weights
      'sgas_criterion': 1,
      'sgas_decision_start': 0,
      'sgas_decision_every': 1,
      'sgas_batch_increase': 0,
      'partial_channels': 1,
      'order': 1,
      'hypergradient': 'finite_difference',
      'fd_radius': darts.FD_RADIUS,
      'warmup_epochs': p.epochs,
      'epochs': 0,
      'batch_size': p.batch_size,
      'alpha_init': 'zeros',
      'alpha_init_scale': 0.0,
      'num_seeds': num_architectures,
      'seeds_share_data': True,
      'seeds_program': p.program,
    }
  )
  return view


def validate_probe_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first field whose value is not allowed."""
  if 'probe' not in config:
    raise ConfigError('the config has no probe block; use configs/probe.py:<dataset>')
  require_range(config, 'probe.num_architectures', 1, integer=True)
  require_range(config, 'probe.arch_seed', 0, integer=True)
  require(
    isinstance(config.probe.architectures, str),
    'probe.architectures',
    config.probe.architectures,
    'a comma-separated list of published names, genotype.json files or search workdirs',
  )
  require_range(config, 'probe.epochs', 1, integer=True)
  require_range(config, 'data.num_examples', 1, integer=True)
  require_batch_fits_data(config, 'probe.batch_size')
  require_choice(config, 'probe.program', seeds.SEEDS_PROGRAMS)
  require(
    config.parallel.seed_shards == 1,
    'parallel.seed_shards',
    config.parallel.seed_shards,
    '1 (a probe steps its architectures on every device)',
  )
  validate_search_config(search_view(config, 1))


def genotype_decisions(
  genotype: genotypes.Genotype, *, steps: int, multiplier: int
) -> dict[str, dict[str, jax.Array]]:
  """SGAS-style decisions (`search.sgas.init_decisions`) that fix the supernet to `genotype`:
  each gene's edge decided to its op, every other edge pruned.

  Raises:
    ValueError: the supernet cannot hold the genotype: another number of nodes, a concat other
      than the last `multiplier` nodes, an op outside the search space, or a node that takes the
      same input twice (the supernet has one edge per input).
  """
  concat = tuple(range(2 + steps - multiplier, 2 + steps))
  index = {edge: e for e, edge in enumerate(edge_list(steps))}
  fresh = sgas.init_decisions(steps)
  decisions = {}
  for cell in CELLS:
    genes = getattr(genotype, cell)
    if len(genes) != 2 * steps:
      raise ValueError(
        f'its {cell} cell has {len(genes) // 2} nodes; the supernet has model.steps={steps}'
      )
    if tuple(getattr(genotype, f'{cell}_concat')) != concat:
      raise ValueError(
        f'its {cell} cell concatenates nodes {list(getattr(genotype, f"{cell}_concat"))}; the '
        f'supernet concatenates the last model.multiplier={multiplier}: {list(concat)}'
      )
    op = np.full(num_edges(steps), -1, np.int32)
    for k, (name, source) in enumerate(genes):
      if name not in sampling.SEARCHED_OPS:
        raise ValueError(
          f'its {cell} cell uses {name!r}, which the DARTS search space lacks; allowed: '
          f'{", ".join(sampling.SEARCHED_OPS)}'
        )
      edge = index[(source, k // 2)]
      if op[edge] >= 0:
        raise ValueError(f'node {k // 2 + 2} of its {cell} cell takes input {source} twice')
      op[edge] = PRIMITIVES.index(name)
    decisions[cell] = {**fresh[cell], 'op': jnp.asarray(op), 'pruned': jnp.asarray(op < 0)}
  return decisions


def resolve_architectures(
  config: ml_collections.ConfigDict,
) -> tuple[list[str], list[genotypes.Genotype]]:
  """(names, genotypes) of the architectures the probe trains, each checked to fit the supernet.

  Raises:
    ConfigError: an unknown name or file, a repeated entry, or a cell the supernet cannot hold.
  """
  p, m = config.probe, config.model
  spec = p.architectures.strip()
  if not spec:
    try:
      found = sampling.random_genotypes(p.arch_seed, p.num_architectures, m.steps, m.multiplier)
    except ValueError as e:
      raise ConfigError(f'config.probe.num_architectures: {e}') from None
    names = [random_name(p.arch_seed, k) for k in range(p.num_architectures)]
  else:
    names = [entry.strip() for entry in spec.split(',')]
    if not all(names):
      raise ConfigError(
        f'config.probe.architectures={p.architectures!r} has an empty entry; allowed: '
        'comma-separated published names, genotype.json files or search workdirs'
      )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
      raise ConfigError(f'config.probe.architectures names {repeated[0]!r} more than once')
    found = [genotype_source.resolve_genotype(name)[0] for name in names]
  for name, genotype in zip(names, found, strict=True):
    try:
      genotype_decisions(genotype, steps=m.steps, multiplier=m.multiplier)
    except ValueError as e:
      raise ConfigError(f'architecture {name!r} does not fit the probe supernet: {e}') from None
  return names, found


@dataclasses.dataclass
class ProbeSetup:
  """The search setup of K architectures and what is the probe's own."""

  search: search_setup.SearchSetup  # config.search.num_seeds = K
  names: list[str]
  genotypes: list[genotypes.Genotype]

  @property
  def num_architectures(self) -> int:
    return len(self.names)

  @property
  def steps_per_epoch(self) -> int:
    c = self.search.config
    return c.data.num_examples // c.search.batch_size

  def lr(self, epoch: int) -> float:
    return self.search.lr(epoch)


def build_probe(config, mesh=None, *, workdir: str | None = None, architectures=None) -> ProbeSetup:
  """Model, data and optimizer of a validated probe config (nothing written); `architectures`:
  (names, genotypes) from `resolve_architectures`, resolved here when None."""
  names, found = architectures if architectures is not None else resolve_architectures(config)
  view = search_view(config, len(names))
  return ProbeSetup(search_setup.build_search(view, mesh, workdir=workdir), names, found)


def init_states(setup: ProbeSetup):
  """K copies of the search state of `config.seed` (the same weights for every architecture),
  each with its architecture's decisions; stacked on a leading axis when K > 1."""
  s = setup.search
  m = s.config.model
  one_seed = dataclasses.replace(s, config=ml_collections.ConfigDict(to_dict(s.config)))
  one_seed.config.search.num_seeds = 1
  state = search_setup.init_state(one_seed)
  decisions = [
    genotype_decisions(g, steps=m.steps, multiplier=m.multiplier) for g in setup.genotypes
  ]
  k = setup.num_architectures

  def with_decisions(state, decisions):
    if k == 1:
      return state.replace(decisions=decisions[0])
    stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (k, *x.shape)), state)
    return stacked.replace(decisions=jax.tree.map(lambda *d: jnp.stack(d), *decisions))

  return jax.jit(with_decisions, out_shardings=parallel.replicated(s.mesh))(state, decisions)


def epoch_inputs(setup: ProbeSetup, epoch: int):
  """The epoch's example orders (config.seed's, the same for every architecture), learning rate
  and first global step, replicated."""
  c = setup.search.config
  perms = search_data.epoch_permutations(c.seed, epoch, c.data.num_examples)
  k = setup.num_architectures
  if k > 1:
    perms = tuple(jnp.broadcast_to(p, (k, *p.shape)) for p in perms)
  lr = jnp.asarray(setup.lr(epoch), jnp.float32)
  start = jnp.asarray(epoch * setup.steps_per_epoch, jnp.int32)
  return parallel.replicate((*perms, lr, start), setup.search.mesh)


class ProbeLog(outputs.MetricsLog):
  """probe.jsonl: K lines per finished epoch, rewritten whole (atomically) at each epoch end."""

  def __init__(self, workdir: str):
    super().__init__(workdir)
    self.path = files.join(workdir, probe_format.PROBE_FILE)

  def extend(self, records: list[dict[str, Any]]) -> None:
    if self._lines is None:
      self.truncate(records[0]['epoch'])
    self._lines.extend(json.dumps(r) + '\n' for r in records)
    if outputs.is_writer():
      write_text_atomic(self.path, ''.join(self._lines))


def run_probe(
  config: ml_collections.ConfigDict, workdir: str, *, mesh: jax.sharding.Mesh | None = None
) -> dict[str, Any]:
  """Runs (or resumes) a probe in `workdir`; returns a summary with each architecture's last
  epoch.

  Raises:
    ConfigError: a bad config value or architecture, an incompatible workdir (nothing written).
    DeviceError, CheckpointError, NonFiniteLossError, Preempted: as `search_loop.run_search`.
  """
  validate_probe_config(config)
  architectures = resolve_architectures(config)  # before the workdir is touched
  mesh = parallel.data_mesh(
    config.parallel.num_devices, config.probe.batch_size, 'config.probe.batch_size', mesh
  )
  run = run_lib.Run(config, workdir, total_epochs=config.probe.epochs)
  with run.running():
    return _probe(config, workdir, mesh, run, architectures)


def probe_scalars(records: list[dict[str, Any]]) -> dict[str, float]:
  """TensorBoard scalars of one epoch's probe records: `loss/<architecture>`,
  `accuracy/<architecture>` (training), `lr` and `speed/epoch_s`."""
  scalars = {'lr': records[0]['lr'], 'speed/epoch_s': records[0]['wall_s']}
  for r in records:
    scalars[f'loss/{r["architecture"]}'] = r['train_loss']
    scalars[f'accuracy/{r["architecture"]}'] = r['train_acc']
  return scalars


def _probe(config, workdir, mesh, run: run_lib.Run, architectures) -> dict[str, Any]:
  d = config.data
  with run.timer('build data', f'{d.name}, {d.num_examples:,} examples, {d.num_classes:,} classes'):
    setup = build_probe(config, mesh, workdir=workdir, architectures=architectures)
    jax.block_until_ready(setup.search.data)
  run.write_config()
  writer = tensorboard.SummaryWriter(workdir) if config.log.get('tensorboard', True) else None
  probe = ProbeLoop(setup, run, workdir, writer)
  if outputs.is_writer():
    for name, content in setup.search.artifacts.items():
      path = files.join(workdir, name)
      if not files.exists(path):
        write_json_atomic(path, content, indent=1)
    write_json_atomic(
      files.join(workdir, probe_format.ARCHITECTURES_FILE),
      probe_format.architectures_document(setup.names, probe.genotypes_json),
      indent=1,
    )
  try:
    state = loop.run_epochs(run, probe)
  finally:
    if writer is not None:
      writer.close()
  epochs = config.probe.epochs
  last = probe.last or [r for r in probe.log_file.read() if r['epoch'] == epochs]
  return {
    'workdir': workdir,
    'epochs': epochs,
    'architectures': setup.names,
    'final': {r['architecture']: {m: r[m] for m in probe_format.PROBE_METRICS} for r in last},
    'program': probe.seeds_program,
    'phase_seconds': run.timer.seconds,
    'state': state,
  }


@dataclasses.dataclass
class ProbeLoop:
  """The probe as a `train.loop.Loop`: K architectures' states stepped by the search's warm-up
  step (one program), K probe.jsonl lines per epoch."""

  setup: ProbeSetup
  run: run_lib.Run
  workdir: str
  writer: tensorboard.SummaryWriter | None = None
  last: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # the last epoch's records

  def __post_init__(self):
    s = self.setup
    view = s.search.config.search  # the search view of the probe block (`search_view`)
    self.total_epochs, self.mesh = view.warmup_epochs, s.search.mesh
    self.steps, self.k = s.steps_per_epoch, s.num_architectures
    self.genotypes_json = [genotypes.genotype_to_json(g) for g in s.genotypes]
    self.log_file = ProbeLog(self.workdir)
    self.seeds_program = seeds.seeds_program(view.seeds_program)
    self.looped = self.k > 1 and self.seeds_program == 'loop'
    self.name = f'probe step, {self.k} architecture{"s" if self.k > 1 else ""}'

  def epoch_start(self, epoch: int) -> int:
    return epoch * self.steps

  def phase(self, epoch: int) -> str:
    return PHASE

  def record_fields(self, epoch: int) -> dict[str, Any]:
    return {'phase': PHASE}

  def init_state(self):
    return init_states(self.setup)

  def abstract_state(self):
    return parallel.abstract_replicated(lambda: init_states(self.setup), self.mesh)

  def new_sums(self):
    return search_setup.new_sums(self.setup.search)

  def num_weights(self, abstract_state) -> int:
    return search_setup.count_params(abstract_state.params) // self.k

  def program(self, epoch: int) -> str:
    return self.name

  def ahead(self, epoch: int) -> list[str]:
    return [self.name] if epoch < self.total_epochs else []

  def step_program(self, name: str, abstract, epoch: int, done: int):
    s = self.setup.search
    example_args = (
      abstract['state'],
      search_setup.init_sums(s),
      s.data,
      *epoch_inputs(self.setup, 0),
    )
    if self.looped:  # the one-architecture program, compiled from one architecture's shapes
      example_args = seeds.one_seed_shapes(example_args, None)
    return search_setup.make_step_fn(s, 'warmup'), example_args

  def epoch_step(self, epoch: int, done: int, compiled) -> loop.Step:
    if self.looped:
      compiled = seeds.host_loop(compiled, self.k, None)
    inputs, data = epoch_inputs(self.setup, epoch), self.setup.search.data
    return lambda state, sums, i: compiled(state, sums, data, *inputs)

  def check_finite(self, epoch: int, sums) -> None:
    bad = np.atleast_1d(sums['first_bad_step'])
    if (bad != int(darts.NO_BAD_STEP)).any():
      k = int(np.argmin(bad))
      raise run_lib.NonFiniteLossError(
        f'the loss of architecture {self.setup.names[k]!r} became NaN or Inf in epoch '
        f'{epoch + 1} at step {int(bad[k]) - epoch * self.steps + 1}/{self.steps}; stopped '
        f'without saving it; the last good checkpoint is in '
        f'{files.join(self.workdir, "checkpoints")}'
      )

  def resumed(self, state, epoch: int) -> None:
    self.log_file.truncate(epoch + 1)

  def end_epoch(self, epoch: int, state, sums, wall_s: float, done: int):
    epoch_records = []
    for j in range(self.k):
      one = seeds.seed_slice(sums, j, self.k)
      epoch_records.append(
        probe_format.probe_record(
          self.setup.names[j],
          self.genotypes_json[j],
          epoch + 1,
          float(one['train_loss']) / float(one['steps']),
          float(one['train_correct']) / float(one['examples']),
          lr=self.setup.lr(epoch),
          wall_s=round(wall_s, 3),
        )
      )
    return state, (epoch_records, wall_s)

  def log(self, epoch_records) -> str:
    self.last, wall_s = epoch_records
    self.log_file.extend(self.last)
    if self.writer is not None:
      self.writer.scalars(self.last[0]['epoch'], probe_scalars(self.last))
      self.writer.flush()
    return records.probe_summary(self.last, self.total_epochs, wall_s)
