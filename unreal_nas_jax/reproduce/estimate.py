"""What a reproduction costs: the device time of each phase, from the step time of its program.

A step time comes from one place, `program_step_time`: measured on this machine by
`unreal-nas bench`'s step timer on the same program, or, for a target this machine does not
have (`--target=tpu:v5e`), bench's deviceless roofline bound for it (a lower bound, not a
measurement). Programs that differ only in what they compute on (the search dataset, its class
count, the retrained cell) are timed once: their data and classifier are a negligible part of a
step at these sizes, and the cells searched later are not known when the plan is made, so a
retraining is costed with the DARTS_V2 network of the same size.

A phase's device time: its steps times the step time (N seeds run one after another where the
N-seed program is the single-seed step in a loop, as on a CPU), plus one compilation per program
it compiles and the start-up measured with it (lowering, initialising the state); warm-up epochs
are costed at the search step's time (an upper bound: they skip the architecture step), SGAS's
grown batches in proportion to their size, and evaluation batches at a third of a training step
(a forward pass; not measured, its compilation not counted). Building the datasets, reading
CIFAR and saving checkpoints are not counted: negligible at the paper's scale, most of a small
run such as the quick scale.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import ml_collections

from unreal_nas_jax import targets
from unreal_nas_jax.config_utils import flatten, to_dict
from unreal_nas_jax.data import pipeline
from unreal_nas_jax.data.datasets import DATASETS
from unreal_nas_jax.reproduce.plan import Phase, search_epochs
from unreal_nas_jax.search import seeds
from unreal_nas_jax.search import setup as search_setup
from unreal_nas_jax.train.retrain_config import pipeline_spec

MEASURED, BOUND = 'measured', 'roofline bound'
EVAL_BATCH_SHARE = 1 / 3  # an evaluation batch against a training step (forward only)
STAND_IN_GENOTYPE = 'DARTS_V2'
# The fields that make a program what it is for its step time (module docstring).
SEARCH_PROGRAM_FIELDS = ('model.', 'data.image_size', 'data.channels', 'search.method',
                         'search.order', 'search.hypergradient', 'search.batch_size',
                         'search.partial_channels', 'search.num_seeds', 'search.seeds_program',
                         'parallel.')  # fmt: skip
TRAIN_PROGRAM_FIELDS = ('model.', 'data.image_size', 'data.channels', 'train.batch_size',
                        'parallel.')  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Target:
  """A device asked for by name (`--target`) and `targets.parse_target`'s reading of it."""

  spec: str
  parsed: targets.Target


@dataclasses.dataclass(frozen=True)
class StepTime:
  """One step of a program: `step_ms`, its compilation, and what the figure is.

  Attributes:
    step_ms: None where a target gives no bound (the program does not fit its memory, or its
      compiler gave no cost analysis).
    kind: MEASURED (on `device`) or BOUND (the roofline lower bound for target `device`).
    startup_s: tracing, lowering and initialising the state before the compilation (measured;
      0 for a bound).
    fits, peak_memory_gb: for a bound, whether the program fits the target's memory and its peak.
  """

  step_ms: float | None
  compile_s: float
  kind: str
  device: str
  startup_s: float = 0.0
  fits: bool | None = None
  peak_memory_gb: float | None = None


def load_target(spec: str) -> Target:
  """Parses `--target` (TargetError: one line) and prepares the environment for compiling for
  it; call before any JAX backend starts."""
  parsed = targets.parse_target(spec)
  targets.prepare_environment()
  return Target(spec, parsed)


def program_step_time(
  program: str, config: ml_collections.ConfigDict, steps: int, target: Target | None
) -> StepTime:
  """The step time of `config`'s 'search' or 'train' program: bench's median over `steps` timed
  steps on this machine, or with a `target`, bench's deviceless roofline bound for it.

  The only function of a plan that runs anything; tests replace it.
  """
  from unreal_nas_jax import bench

  time_step = bench.time_search_step if program == 'search' else bench.time_train_step
  if target is None:
    record = time_step(config, steps)
    device = f'{record["device_count"]} x {record["device_kind"]} ({record["platform"]})'
    startup_s = record['lower_s'] + record['init_s']
    return StepTime(record['median_step_ms'], record['compile_s'], MEASURED, device, startup_s)
  record = time_step(config, steps, target.parsed)
  return StepTime(
    record.get('roofline_ms'),
    record['compile_s'],
    BOUND,
    target.spec,
    fits=record.get('fits'),
    peak_memory_gb=record.get('peak_memory_gb', record.get('needed_gb')),
  )


StepTimeFn = Callable[[str, ml_collections.ConfigDict, int, Target | None], StepTime]


@dataclasses.dataclass
class Program:
  """A program a plan times once: its step time and the phases that run it."""

  kind: str  # 'search' or 'train'
  description: str
  step: StepTime
  seeds_in_loop: int  # N when the N seeds run the single-seed step one after another, else 1
  phases: list[str] = dataclasses.field(default_factory=list)


class Estimator:
  """Device time of phases; each distinct program is timed once (`program_step_time`)."""

  def __init__(self, steps: int, target: Target | None = None, step_time: StepTimeFn = None):
    self.steps, self.target = steps, target
    self.step_time = step_time or program_step_time
    self.programs: dict[tuple, Program] = {}

  def _seeds_program(self, config) -> str:
    platform = self.target.parsed.platform if self.target is not None else None
    return seeds.seeds_program(config.search.seeds_program, platform)

  def _program(self, kind: str, config, phase_name: str, seeds_in_loop: int = 1) -> Program:
    fields = SEARCH_PROGRAM_FIELDS if kind == 'search' else TRAIN_PROGRAM_FIELDS
    flat = flatten(to_dict(config))
    key = (kind, *((k, repr(v)) for k, v in sorted(flat.items()) if _matches(k, fields)))
    if key not in self.programs:
      step = self.step_time(kind, config, self.steps, self.target)
      self.programs[key] = Program(kind, _describe(kind, config), step, seeds_in_loop)
    self.programs[key].phases.append(phase_name)
    return self.programs[key]

  def search_program(self, config, phase_name: str) -> Program:
    """The search step of `config` as it will run: the N-seed program, or on a CPU the
    single-seed step (run N times); timed on rlrn data (no dataset needed)."""
    stand_in = ml_collections.ConfigDict(to_dict(config))
    stand_in.data.name = 'rlrn'
    n, program = config.search.num_seeds, self._seeds_program(config)
    if n > 1 and program == 'loop':
      stand_in.search.num_seeds = 1
      stand_in.search.seeds_program = 'auto'
      return self._program('search', stand_in, phase_name, seeds_in_loop=n)
    stand_in.search.seeds_program = program
    return self._program('search', stand_in, phase_name)

  def train_program(self, config, phase_name: str) -> Program:
    stand_in = ml_collections.ConfigDict(to_dict(config))
    stand_in.genotype = STAND_IN_GENOTYPE
    stand_in.data.fake_data = True
    return self._program('train', stand_in, phase_name)

  def phase_seconds(self, phase: Phase) -> float | None:
    """The device time of `phase` on this machine, or the target's lower bound (None where the
    target gives no bound for its program)."""
    config = phase.config()
    if phase.kind == 'search':
      program = self.search_program(config, phase.name)
      return search_seconds(config, program)
    program = self.train_program(config, phase.name)
    return train_seconds(config, program.step, evaluate_only=phase.kind == 'eval')


def _matches(key: str, fields) -> bool:
  return any(key == f or (f.endswith('.') and key.startswith(f)) for f in fields)


def _describe(kind: str, config) -> str:
  m = config.model
  if kind == 'search':
    s = config.search
    order = f', order {s.order}' if s.method == 'darts' else ''
    seeds = f', {s.num_seeds} seeds ({s.seeds_program})' if s.num_seeds > 1 else ''
    return (
      f'search step: {s.method}{order}, C={m.channels}, {m.layers} cells of {m.steps} nodes, '
      f'{config.data.image_size}x{config.data.image_size}, batch {s.batch_size}{seeds}'
    )
  return (
    f'retraining step: {STAND_IN_GENOTYPE} network, C={m.channels}, {m.layers} cells, '
    f'{config.data.image_size}x{config.data.image_size}, batch {config.train.batch_size}'
  )


def search_schedule(config: ml_collections.ConfigDict) -> search_setup.SearchSetup:
  """The search's epochs, batches and steps (`SearchSetup`'s schedule, which needs only the
  config: nothing is built)."""
  return search_setup.SearchSetup(
    config=config,
    mesh=None,
    model=None,
    data=None,
    batch_fn=None,
    artifacts={},
    weight_sgd=None,
    arch_tx=None,
    total_epochs=search_epochs(config),
  )


def search_seconds(config: ml_collections.ConfigDict, program: Program) -> float | None:
  if program.step.step_ms is None:
    return None
  schedule = search_schedule(config)
  base = config.search.batch_size
  epochs = range(schedule.total_epochs)
  steps = sum(schedule.steps_per_epoch(e) * schedule.batch_size(e) / base for e in epochs)
  batches = {schedule.batch_size(e) for e in epochs}
  step = program.step
  return (
    steps * step.step_ms / 1000 * program.seeds_in_loop
    + step.compile_s * len(batches)
    + step.startup_s
  )


def train_seconds(
  config: ml_collections.ConfigDict, step: StepTime, *, evaluate_only: bool = False
) -> float | None:
  """A retraining's device time (its evaluations included), or one evaluation's."""
  if step.step_ms is None:
    return None
  stand_in = ml_collections.ConfigDict(to_dict(config))
  stand_in.data.fake_data = True  # split sizes from the datasets' facts; nothing is read
  spec = pipeline_spec(stand_in)
  eval_batches = pipeline.steps_per_epoch(spec, DATASETS[spec.dataset].eval_split)
  eval_s = eval_batches * EVAL_BATCH_SHARE * step.step_ms / 1000
  if evaluate_only:
    return eval_s
  epochs, every = config.train.epochs, config.train.eval_every_epochs
  evaluations = -(-epochs // every) if every else 0  # every N epochs and after the last
  steps = epochs * pipeline.steps_per_epoch(spec, 'train')
  return steps * step.step_ms / 1000 + evaluations * eval_s + step.compile_s + step.startup_s


def format_duration(seconds: float) -> str:
  """'42 s', '3.5 min', '7.2 h', '12.3 d' or '3.1 years'."""
  if seconds < 120:
    return f'{seconds:.0f} s'
  for unit, size, limit in (('min', 60, 120), ('h', 3600, 48), ('d', 86400, 730)):
    if seconds / size < limit:
      return f'{seconds / size:.1f} {unit}'
  return f'{seconds / (365 * 86400):.1f} years'
