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
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from unreal_nas_jax import files, parallel
from unreal_nas_jax.files import write_json_atomic
from unreal_nas_jax.search import darts, sgas
from unreal_nas_jax.search.seeds import host_loop, one_seed_shapes, seed_slice
from unreal_nas_jax.search.setup import (
  SearchSetup,
  abstract_state,
  abstract_step_args,
  build_search,
  count_params,
  derive_genotype,
  epoch_inputs,
  init_state,
  make_step_fn,
  new_sums,
  search_mesh,
  seed_dir,
)
from unreal_nas_jax.search.state import SearchState
from unreal_nas_jax.search.validate import validate_search_config
from unreal_nas_jax.space import genotypes
from unreal_nas_jax.train import loop, outputs, records
from unreal_nas_jax.train import run as run_lib
from unreal_nas_jax.train.tensorboard import search_epoch_scalars


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
  mesh = search_mesh(config, mesh)
  run = run_lib.Run(
    config, workdir, total_epochs=config.search.warmup_epochs + config.search.epochs
  )
  with run.running():
    return _search(config, workdir, mesh, run)


def _search(config, workdir, mesh, run: run_lib.Run) -> dict[str, Any]:
  d = config.data
  with run.timer('build data', f'{d.name}, {d.num_examples:,} examples, {d.num_classes:,} classes'):
    setup = build_search(config, mesh, workdir=workdir)
    jax.block_until_ready(setup.data)
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

  search = SearchLoop(setup, run, workdir, seed_dirs)
  state = loop.run_epochs(run, search)

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
    'compiled_phases': sorted({phase for phase, _ in search.programs.values()}),
    'compiled_steps': list(search.programs),
    'phase_seconds': run.timer.seconds,
    'state': state,
  }


@dataclasses.dataclass
class SearchLoop:
  """The search as a `train.loop.Loop`: N seeds' states, one step program per phase and grown
  SGAS batch, one metrics.jsonl line and genotype.json per seed and epoch."""

  setup: SearchSetup
  run: run_lib.Run
  workdir: str
  seed_dirs: list[str]
  # The programs still to run, in order of use: {name: (phase, batch)} (set by `ahead`).
  programs: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    s = self.setup
    self.total_epochs, self.mesh, self.num_seeds = s.total_epochs, s.mesh, s.num_seeds
    self.metrics_logs = [outputs.MetricsLog(directory) for directory in self.seed_dirs]
    self.looped = self.num_seeds > 1 and s.seeds_program == 'loop'
    self._example_args = None
    update = functools.partial(sgas.update, criterion=s.config.search.sgas_criterion)
    self._update_decisions = jax.jit(
      update if self.num_seeds == 1 else jax.vmap(update, in_axes=(0, 0, None)),
      out_shardings=s.per_seed,
    )

  def epoch_start(self, epoch: int) -> int:
    return self.setup.epoch_start(epoch)

  def phase(self, epoch: int) -> str:
    return self.setup.phase(epoch)

  def record_fields(self, epoch: int) -> dict[str, Any]:
    return {'phase': self.phase(epoch)}

  def init_state(self):
    return init_state(self.setup)

  def abstract_state(self):
    return abstract_state(self.setup)

  def new_sums(self):
    return new_sums(self.setup)

  def num_weights(self, abstract_state) -> int:
    return count_params(abstract_state.params)

  def program(self, epoch: int) -> str:
    return self.setup.step_name(epoch)

  def ahead(self, epoch: int) -> list[str]:
    """Every program from `epoch` on at the configured batch (the grown ones compile later)."""
    s = self.setup
    for e in range(epoch, s.total_epochs):
      self.programs.setdefault(s.step_name(e), (s.phase(e), s.batch_size(e)))
    base = s.config.search.batch_size
    return [name for name, (_, batch) in self.programs.items() if batch == base]

  def step_program(self, name: str, abstract, epoch: int, done: int):
    s = self.setup
    if self._example_args is None:  # the same shapes for every program (batches are indices)
      self._example_args = abstract_step_args(s)
      if self.looped:  # the single-seed program, compiled from one seed's shapes
        self._example_args = one_seed_shapes(self._example_args, s.data_axis)
    phase, batch_size = self.programs.setdefault(name, (s.phase(epoch), s.batch_size(epoch)))
    if batch_size == s.config.search.batch_size:  # make_step_fn's default batch
      return make_step_fn(s, phase), self._example_args
    return make_step_fn(s, phase, batch_size), self._example_args

  def epoch_step(self, epoch: int, done: int, compiled) -> loop.Step:
    s = self.setup
    if self.looped:
      compiled = host_loop(compiled, s.num_seeds, s.data_axis)
    inputs = epoch_inputs(s, epoch)
    return lambda state, sums, i: compiled(state, sums, s.data, *inputs)

  def check_finite(self, epoch: int, sums) -> None:
    """The NaN/Inf check of `epoch`'s host sums (before any save: a bad state is never saved)."""
    s = self.setup
    bad_steps = np.atleast_1d(sums['first_bad_step'])
    if (bad_steps != int(darts.NO_BAD_STEP)).any():
      k = int(np.argmin(bad_steps))
      step_in_epoch = int(bad_steps[k]) - s.epoch_start(epoch) + 1
      which = f' of seed {s.seed(k)}' if s.num_seeds > 1 else ''
      raise run_lib.NonFiniteLossError(
        f'loss{which} became NaN or Inf in epoch {epoch + 1} at step {step_in_epoch}/'
        f'{s.steps_per_epoch(epoch)} (global step {int(bad_steps[k]) + 1}); stopped without '
        f'saving it; the last good checkpoint is in {files.join(self.workdir, "checkpoints")}'
      )

  def resumed(self, state, epoch: int) -> None:
    """Each seed's metrics.jsonl cut back to `epoch`, its genotype.json that of the state."""
    for k, metrics_log in enumerate(self.metrics_logs):
      metrics_log.truncate(epoch + 1)
      if epoch and outputs.is_writer():
        geno = derive_genotype(self.setup.config, seed_slice(_readable(state), k, self.num_seeds))
        write_json_atomic(
          files.join(self.seed_dirs[k], 'genotype.json'), genotypes.genotype_to_json(geno)
        )

  def end_epoch(self, epoch: int, state, sums, wall_s: float, done: int):
    """SGAS decides at the end of its decision epochs; one record per seed."""
    s, n = self.setup, self.num_seeds
    scores = None
    if s.config.search.method == 'sgas' and s.phase(epoch) == 'search':
      decide = jnp.asarray(s.is_decision_epoch(epoch))
      decisions, scores = self._update_decisions(state.alphas, state.decisions, decide)
      state = state.replace(decisions=decisions)
    view, scores = _readable(state), parallel.gather(scores)
    epoch_records = [
      records.search_record(
        s,
        epoch,
        seed_slice(sums, k, n),
        seed_slice(view, k, n),
        wall_s,
        None if scores is None else seed_slice(scores, k, n),
        seed=s.seed(k) if n > 1 else None,
        examples_timed=(s.steps_per_epoch(epoch) - done) * s.batch_size(epoch),
      )
      for k in range(n)
    ]
    return state, epoch_records

  def log(self, epoch_records) -> str:
    lines = []
    for k, metrics_log in enumerate(self.metrics_logs):
      record = epoch_records[k]
      record['checkpoint_s'] = round(self.run.checkpoint_seconds, 3)
      self.run.log_epoch(self.seed_dirs[k], metrics_log, record, search_epoch_scalars(record))
      lines.append(records.search_summary(record, self.total_epochs))
      if outputs.is_writer():
        write_json_atomic(files.join(self.seed_dirs[k], 'genotype.json'), record['genotype'])
    return '\n'.join(lines)


def _readable(state: SearchState) -> SearchState:
  """What the host reads of a state (step, alphas, SGAS decisions; the rest None), readable by
  this process even where the seeds are split over other processes' devices."""
  return parallel.gather(
    state.replace(params=None, batch_stats=None, weight_opt_state=None, arch_opt_state=None,
                  rng=None)
  )  # fmt: skip
