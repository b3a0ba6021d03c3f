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
(`train.search_loop`: weights only, one compile for all K), and the run core (`train.run.Run`)
checkpoints, resumes and stops them like a search. A step costs what a supernet step costs, every
op being computed on every edge, however few the architecture uses.

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
from unreal_nas_jax.search import darts, sgas
from unreal_nas_jax.search.arch import CELLS
from unreal_nas_jax.search.validate import require_batch_fits_data, validate_search_config
from unreal_nas_jax.space import genotypes, sampling
from unreal_nas_jax.space.primitives import PRIMITIVES, edge_list, num_edges
from unreal_nas_jax.train import (
  genotype_source,
  outputs,
  probe_format,
  search_loop,
  startup,
  tensorboard,
)
from unreal_nas_jax.train import run as run_lib

PROGRAMS = ('auto', 'vmap', 'map', 'loop')
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
  require_choice(config, 'probe.program', PROGRAMS)
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

  search: search_loop.SearchSetup  # config.search.num_seeds = K
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
  return ProbeSetup(search_loop.build_search(view, mesh, workdir=workdir), names, found)


def init_states(setup: ProbeSetup):
  """K copies of the search state of `config.seed` (the same weights for every architecture),
  each with its architecture's decisions; stacked on a leading axis when K > 1."""
  s = setup.search
  m = s.config.model
  one_seed = dataclasses.replace(s, config=ml_collections.ConfigDict(to_dict(s.config)))
  one_seed.config.search.num_seeds = 1
  state = search_loop.init_state(one_seed)
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


def _check_finite(setup: ProbeSetup, epoch: int, steps: int, workdir: str):
  def check(sums):
    bad = np.atleast_1d(sums['first_bad_step'])
    if (bad != int(darts.NO_BAD_STEP)).any():
      k = int(np.argmin(bad))
      raise run_lib.NonFiniteLossError(
        f'the loss of architecture {setup.names[k]!r} became NaN or Inf in epoch {epoch + 1} at '
        f'step {int(bad[k]) - epoch * steps + 1}/{steps}; stopped without saving it; the last '
        f'good checkpoint is in {files.join(workdir, "checkpoints")}'
      )

  return check


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
  writer = tensorboard.SummaryWriter(workdir) if config.log.get('tensorboard', True) else None
  with run.running():
    try:
      return _probe(config, workdir, mesh, run, writer, architectures)
    finally:
      if writer is not None:
        writer.close()


def probe_scalars(records: list[dict[str, Any]]) -> dict[str, float]:
  """TensorBoard scalars of one epoch's probe records: `loss/<architecture>`,
  `accuracy/<architecture>` (training), `lr` and `speed/epoch_s`."""
  scalars = {'lr': records[0]['lr'], 'speed/epoch_s': records[0]['wall_s']}
  for r in records:
    scalars[f'loss/{r["architecture"]}'] = r['train_loss']
    scalars[f'accuracy/{r["architecture"]}'] = r['train_acc']
  return scalars


def _probe(config, workdir, mesh, run: run_lib.Run, writer, architectures) -> dict[str, Any]:
  timer = run.timer
  d = config.data
  with timer('build data', f'{d.name}, {d.num_examples:,} examples, {d.num_classes:,} classes'):
    setup = build_probe(config, mesh, workdir=workdir, architectures=architectures)
    jax.block_until_ready(setup.search.data)
  s, k, steps = setup.search, setup.num_architectures, setup.steps_per_epoch
  epochs = config.probe.epochs
  run.epochs_at = {e * steps: e for e in range(epochs + 1)}.get
  run.write_config()
  geno_json = [genotypes.genotype_to_json(g) for g in setup.genotypes]
  if outputs.is_writer():
    for name, content in s.artifacts.items():
      path = files.join(workdir, name)
      if not files.exists(path):
        write_json_atomic(path, content, indent=1)
    write_json_atomic(
      files.join(workdir, probe_format.ARCHITECTURES_FILE),
      probe_format.architectures_document(setup.names, geno_json),
      indent=1,
    )
  log = ProbeLog(workdir)
  abstract = {
    'state': parallel.abstract_replicated(lambda: init_states(setup), s.mesh),
    'sums': parallel.abstract_replicated(lambda: search_loop.new_sums(s), s.mesh),
  }
  state_future = run.start_state(
    lambda: {'state': init_states(setup), 'sums': search_loop.init_sums(s)},
    abstract,
    search_loop.count_params(abstract['state'].params) // k,
  )
  name = f'probe step, {k} architecture{"s" if k > 1 else ""}'
  example_args = (abstract['state'], search_loop.init_sums(s), s.data, *epoch_inputs(setup, 0))
  program = search_loop.seeds_program(config.probe.program)
  looped = k > 1 and program == 'loop'
  if looped:  # the one-architecture program, compiled from one architecture's shapes
    example_args = search_loop.one_seed_shapes(example_args, None)
  compiling = startup.compile_steps(
    timer, {name: (search_loop.make_step_fn(s, 'warmup'), example_args)}
  )
  items, record = startup.wait_state(state_future)
  state, restored_sums = items['state'], items['sums']
  start_epoch, done = run.resume_point(record)
  run.announce_resume(record)
  log.truncate(start_epoch + 1)
  step_fn = startup.wait_compiled(compiling, name)
  if looped:
    step_fn = search_loop.host_loop(step_fn, k, None)

  last: list[dict[str, Any]] = []
  for epoch in range(start_epoch, epochs):
    inputs = epoch_inputs(setup, epoch)
    done_before = done if epoch == start_epoch else 0  # steps run before a resume
    state, sums, wall_s = run.steps(
      epoch=epoch,
      phase=PHASE,
      done=done_before,
      steps=steps,
      epoch_start=epoch * steps,
      step=lambda state, sums, i, x=inputs: step_fn(state, sums, s.data, *x),
      state=state,
      sums=restored_sums if done_before else search_loop.init_sums(s),
      check=_check_finite(setup, epoch, steps, workdir),
      record=lambda i, epoch=epoch: {'epoch': epoch, 'step_in_epoch': i, 'phase': PHASE},
    )
    run.save(
      (epoch + 1) * steps,
      {'state': state, 'sums': search_loop.init_sums(s)},
      {'epoch': epoch + 1, 'step_in_epoch': 0, 'phase': PHASE},
    )
    last = []
    for j in range(k):
      one = search_loop.seed_slice(sums, j, k)
      last.append(
        probe_format.probe_record(
          setup.names[j],
          geno_json[j],
          epoch + 1,
          float(one['train_loss']) / float(one['steps']),
          float(one['train_correct']) / float(one['examples']),
          lr=setup.lr(epoch),
          wall_s=round(wall_s, 3),
        )
      )
    log.extend(last)
    if writer is not None:
      writer.scalars(epoch + 1, probe_scalars(last))
      writer.flush()
    run.progress.end_epoch(_summary(last, epochs, wall_s))
    run.stop_if_requested(epoch, (epoch + 1) * steps)
  timer.close()
  if not last:  # resumed after the last epoch: the records are in probe.jsonl
    last = [r for r in log.read() if r['epoch'] == epochs]
  return {
    'workdir': workdir,
    'epochs': epochs,
    'architectures': setup.names,
    'final': {r['architecture']: {m: r[m] for m in probe_format.PROBE_METRICS} for r in last},
    'program': program,
    'phase_seconds': timer.seconds,
    'state': state,
  }


def _summary(records: list[dict[str, Any]], epochs: int, wall_s: float) -> str:
  head = f'epoch {records[0]["epoch"]}/{epochs} probe lr={records[0]["lr"]:.5f} {wall_s:.1f}s'
  if len(records) == 1:
    r = records[0]
    return f'{head} train_loss={r["train_loss"]:.4f} train_acc={r["train_acc"]:.4f}'
  accs = np.array([r['train_acc'] for r in records])
  return (
    f'{head} {len(records)} architectures: train_acc min={accs.min():.4f} '
    f'mean={accs.mean():.4f} max={accs.max():.4f}'
  )
