"""`unreal-nas reproduce`: the paper's Table 2 in one command (configs/reproduce.py).

  unreal-nas reproduce --config=configs/reproduce.py:paper --workdir=DIR --plan [--target=tpu:v5e]
  unreal-nas reproduce --config=configs/reproduce.py:quick --workdir=DIR
  unreal-nas reproduce --workdir=DIR --table-only

`--plan` prints every command in order with its workdir and device-time estimate, and runs
nothing. Without it the phases run in order in this process, each resumable (a rerun skips what
finished and continues what did not), then ROOT/table.md and table.json are written (also after
every phase, so a partial run already shows its finished rows). `--table-only` rebuilds the table
from whatever has finished. The root workdir keeps the reproduction config (config.json) and
refuses another, as every workdir does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import ml_collections
from absl import flags

from unreal_nas_jax.cli.flags import (
  DEFAULT_COMPILE_CACHE,
  UsageError,
  define_common,
  enable_compile_cache,
  parse_flags,
)
from unreal_nas_jax.config_utils import ConfigError, packaged_config

# LLVM's cheap optimisation level: XLA:CPU compiled the quick programs 2-2.4x faster and ran
# their steps about 2x slower (measured on the 2-core development CPU).
FAST_COMPILE_FLAGS = (
  '--xla_backend_optimization_level=0',
  '--xla_llvm_disable_expensive_passes=true',
)


def _define_flags() -> flags.FlagValues:
  fv = flags.FlagValues()
  default = f'{packaged_config("reproduce.py")}:paper'
  define_common(
    fv, config_required=False, default_config=default, compile_cache=DEFAULT_COMPILE_CACHE
  )
  flags.DEFINE_string(
    'workdir',
    None,
    'Root workdir: every phase gets a workdir under it; config.json, logs/, table.md, table.json.',
    flag_values=fv,
    required=True,
  )
  flags.DEFINE_bool(
    'plan',
    False,
    'Print the phases in order (command, workdir, device-time estimate, status); run nothing.',
    flag_values=fv,
  )
  flags.DEFINE_bool(
    'table-only',
    False,
    'Rebuild table.md and table.json from the phases that have finished; run nothing.',
    flag_values=fv,
  )
  flags.DEFINE_string(
    'target',
    '',
    '--plan for a device this machine does not have (e.g. tpu:v5e, gpu:h100): the deviceless '
    'roofline lower bound of each step (`unreal-nas bench --target`) instead of a measurement.',
    flag_values=fv,
  )
  flags.DEFINE_integer(
    'bench_steps', 3, '--plan: timed steps per program (after compilation).', flag_values=fv
  )
  flags.DEFINE_bool(
    'estimate',
    True,
    '--plan: time the programs for the device-time estimate (--noestimate: commands only).',
    flag_values=fv,
  )
  return fv


def reproduce_command(argv: Sequence[str]) -> int:
  fv = _define_flags()
  parse_flags(fv, argv)
  if fv.plan and fv['table-only'].value:
    raise UsageError('--plan and --table-only are not allowed together; pick one')
  if fv.target and not fv.plan:
    raise UsageError(f'--target={fv.target} is for --plan; a reproduction runs on this machine')
  if fv.bench_steps < 1:
    raise UsageError(f'--bench_steps={fv.bench_steps} is not allowed; allowed: an integer >= 1')
  from unreal_nas_jax.reproduce import estimate

  # Before anything starts a JAX backend: a target sets up its deviceless compiler.
  target = estimate.load_target(fv.target) if fv.target else None
  if fv.config.xla_fast_compile and target is None:
    add_xla_flags(FAST_COMPILE_FLAGS)
  root = os.path.expanduser(fv.workdir)
  if fv['table-only'].value:
    return _table_only(fv, root)
  enable_compile_cache(fv.compile_cache)
  from unreal_nas_jax import parallel

  parallel.maybe_initialize_distributed()
  from unreal_nas_jax.reproduce import plan as plan_lib
  from unreal_nas_jax.train import outputs

  plan = plan_lib.make_plan(fv.config, root)
  outputs.check_config(root, plan_lib.plan_record(plan), has_checkpoint=False)
  statuses = [plan_lib.phase_status(p) for p in plan.phases]
  if fv.plan:
    estimator = estimate.Estimator(fv.bench_steps, target) if fv.estimate else None
    _print_plan(plan, statuses, estimator, _spec(fv))
    return 0
  return _run(plan, statuses, _spec(fv))


def add_xla_flags(wanted) -> None:
  """Adds `wanted` to XLA_FLAGS where not set there (read when a JAX backend starts)."""
  present = os.environ.get('XLA_FLAGS', '')
  missing = [f for f in wanted if f.split('=')[0] not in present]
  if missing:
    os.environ['XLA_FLAGS'] = ' '.join([present, *missing]).strip()


def _spec(fv: flags.FlagValues) -> str:
  """The config as the user named it (for the plan's header)."""
  path, _, arg = str(fv['config'].config_filename).partition(':')
  shown = 'configs/reproduce.py' if os.path.basename(path) == 'reproduce.py' else path
  return f'{shown}:{fv.config.preset}' if not arg else f'{shown}:{arg}'


def _run(plan, statuses, spec: str) -> int:
  import jax

  from unreal_nas_jax.reproduce import plan as plan_lib
  from unreal_nas_jax.reproduce import runner, table
  from unreal_nas_jax.train import outputs

  plan_lib.check_phases(plan)  # a bad value, device count or missing data: before any writes
  outputs.prepare_workdir(plan.root)
  outputs.write_config(plan.root, plan_lib.plan_record(plan))
  finished = statuses.count(plan_lib.DONE)
  print(
    f'reproducing {spec} in {plan.root}: {len(plan.phases)} phases, {finished} finished before',
    flush=True,
  )
  if plan.config.scale == 'paper' and jax.default_backend() == 'cpu':
    print(
      'note: the paper scale on a CPU takes years; `unreal-nas reproduce --plan` estimates it',
      file=sys.stderr,
      flush=True,
    )
  try:
    runner.run_phases(plan, statuses, after_phase=lambda: table.write_table(plan))
  except runner.PhaseFailed as e:
    table.write_table(plan)
    print(f'unreal-nas reproduce: error: {e}', file=sys.stderr)
    return e.exit_code
  _, text = table.write_table(plan)
  print(text, flush=True)
  print(f'written to {os.path.join(plan.root, table.TABLE_MD)} and {table.TABLE_JSON}')
  return 0


def _table_only(fv: flags.FlagValues, root: str) -> int:
  from unreal_nas_jax import files
  from unreal_nas_jax.reproduce import plan as plan_lib
  from unreal_nas_jax.reproduce import table
  from unreal_nas_jax.train import outputs

  saved_path = files.join(root, 'config.json')
  if not files.exists(saved_path):
    raise ConfigError(f'{root!r} holds no reproduction (no config.json); run one there first')
  saved = ml_collections.ConfigDict(files.read_json(saved_path))
  if 'rows' not in saved:
    raise ConfigError(f'{root!r} holds a run of another command, not a reproduction')
  if fv['config'].present:  # a config given explicitly must be the one that ran there
    outputs.check_config(root, plan_lib.plan_record(plan_lib.make_plan(fv.config, root)), False)
  plan = plan_lib.make_plan(saved, root)
  _, text = table.write_table(plan)
  print(text, flush=True)
  return 0


def _count(n: int, noun: str) -> str:
  return f'{n} {noun}{"" if n == 1 else "s"}'


def _print_plan(plan, statuses, estimator, spec: str) -> None:
  from unreal_nas_jax.reproduce import estimate

  c = plan.config
  print(
    f'plan of {spec} ({c.scale} scale) in {plan.root}: {_count(len(plan.rows), "row")} x '
    f'{_count(c.seeds, "seed")}, retrained on {", ".join(plan.retrain_sets)}; '
    f'{_count(len(plan.phases), "phase")}',
    flush=True,
  )
  width = max(len(p.name) for p in plan.phases) + 2
  print(f'{"#":>3}  {"phase":<{width}}{"device time":>14}  status', flush=True)
  total = remaining = 0.0
  by_kind = {'search': 0.0, 'train': 0.0, 'eval': 0.0}
  unbounded = 0  # phases whose program the target gives no bound for
  for index, (phase, status) in enumerate(zip(plan.phases, statuses, strict=True), 1):
    seconds = estimator.phase_seconds(phase) if estimator else None
    unbounded += estimator is not None and seconds is None
    if seconds is not None:
      total += seconds
      by_kind[phase.kind] += seconds
      remaining += 0.0 if status == 'done' else seconds
    shown = estimate.format_duration(seconds) if seconds is not None else '-'
    print(f'{index:>3}  {phase.name:<{width}}{shown:>14}  {status}', flush=True)
    print(f'     {phase.command()}', flush=True)
  if estimator is None:
    print('(no estimate: --noestimate)')
    return
  programs = list(estimator.programs.values())
  kinds = {p.step.kind for p in programs}
  devices = sorted({p.step.device for p in programs})
  if kinds == {estimate.MEASURED}:
    what = f"measured here on {', '.join(devices)} by `unreal-nas bench`'s step timer"
  else:
    what = (
      f'roofline lower bounds for {", ".join(devices)} (`unreal-nas bench --target`, deviceless): '
      'not measurements; a real run takes longer'
    )
  kinds_text = ', '.join(
    f'{name} {estimate.format_duration(by_kind[kind])}'
    for kind, name in (('search', 'searches'), ('train', 'retraining'), ('eval', 'evaluations'))
  )
  missing = f'; without the {_count(unbounded, "phase")} that have no bound' if unbounded else ''
  print(
    f'total device time: {estimate.format_duration(total)} ({kinds_text}; still to run: '
    f'{estimate.format_duration(remaining)}{missing}); step times {what}'
  )
  print('step times (each distinct program timed once):')
  for program in programs:
    step = program.step
    loop = (
      f', x{program.seeds_in_loop} seeds one after another' if program.seeds_in_loop > 1 else ''
    )
    memory = ''
    if step.fits is not None:
      peak = f', peak {step.peak_memory_gb:.1f} GB' if step.peak_memory_gb is not None else ''
      memory = f', {"fits" if step.fits else "does NOT fit"} in memory{peak}'
    per_step = f'{step.step_ms:,.1f} ms per step' if step.step_ms is not None else 'no bound'
    print(
      f'  {program.description}: {per_step} ({step.kind}), compile '
      f'{step.compile_s:.0f} s{loop}{memory}; {_count(len(program.phases), "phase")}'
    )
  print(
    '  (steps, compilation, lowering and initialisation; warm-up epochs costed at the search '
    'step, SGAS batches in proportion to their size, evaluation batches at '
    f'{estimate.EVAL_BATCH_SHARE:.2f} of a training step; retraining with the '
    f'{estimate.STAND_IN_GENOTYPE} network of the same size, the searched cells not known yet; '
    'not counted: building data, reading CIFAR, checkpoints)'
  )
