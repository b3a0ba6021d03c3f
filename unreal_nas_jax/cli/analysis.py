"""`unreal-nas analyze` and `unreal-nas plot`: the paper's analyses from run directories.

  unreal-nas analyze difficulty DIR... [--out=FILE.png|svg] [--metric=train_acc] [--json=FILE]
      [--smoothing=5] [--plateau_epochs=10] [--tolerance=0.05] [--absolute] [--patience=0]
  unreal-nas analyze rank DIR_A DIR_B|FILE.csv [--out=FILE.png|svg] [--epoch=N]
      [--metric=train_acc] [--json=FILE]
  unreal-nas plot WORKDIR... --out=FILE.png|svg [--kind=all|skip|alphas|loss|sweep] [--metric=val_acc]

Each prints one JSON line on stdout (and writes it to --json when given), its result; `analyze`
also draws its figure where --out is given ("plot" in the line: the file or null), `plot` always.
Nothing here trains or loads a checkpoint: the inputs are config.json, metrics.jsonl and
probe.jsonl (`unreal_nas_jax.analysis.runs`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from absl import flags

from unreal_nas_jax.cli.flags import HelpRequested, UsageError, parse_flags

ANALYSES = ('difficulty', 'rank')
PLOT_KINDS = ('all', 'skip', 'alphas', 'loss', 'sweep')


def _write_json(document: dict, path: str | None) -> None:
  line = json.dumps(document)
  if path:
    from unreal_nas_jax.files import write_text_atomic

    try:
      write_text_atomic(os.path.expanduser(path), line + '\n')
    except OSError as e:
      raise UsageError(f'--json={path!r} is not writable: {e.strerror or e}') from None
  print(line, flush=True)


def _check_json(path: str | None) -> None:
  """Refuses a --json file in a missing directory before anything is computed or drawn."""
  if path:
    directory = os.path.dirname(os.path.abspath(os.path.expanduser(path)))
    if not os.path.isdir(directory):
      raise UsageError(f'--json={path!r}: directory {directory!r} does not exist')


def _define_out(fv: flags.FlagValues, required: bool) -> None:
  help_text = (
    'Figure to write (.png or .svg).' if required else 'Also draw the figure (.png, .svg).'
  )
  flags.DEFINE_string('out', None, help_text, flag_values=fv)
  if required:
    flags.mark_flag_as_required('out', flag_values=fv)


def _check_out(path: str | None) -> None:
  """Refuses a figure path that cannot be written before anything is computed."""
  if path:
    from unreal_nas_jax.analysis import plots

    plots.check_out(os.path.expanduser(path))


def _difficulty(argv: Sequence[str]) -> int:
  from unreal_nas_jax.analysis import convergence

  defaults = convergence.ConvergenceRule()
  fv = flags.FlagValues()
  _define_out(fv, required=False)
  flags.DEFINE_string('json', None, 'Also write the JSON line to this file.', flag_values=fv)
  flags.DEFINE_enum(
    'metric', 'train_acc', list(convergence.DIFFICULTY_METRICS), 'The curve.', flag_values=fv
  )
  flags.DEFINE_integer(
    'smoothing', defaults.smoothing, 'Centred moving-average window (odd).', flag_values=fv
  )
  flags.DEFINE_integer(
    'plateau_epochs',
    defaults.plateau_epochs,
    'The final plateau is the mean of this many last smoothed epochs.',
    flag_values=fv,
  )
  flags.DEFINE_float(
    'tolerance',
    defaults.tolerance,
    "Band around the plateau: a fraction of the curve's total change (or, with --absolute, in "
    "the metric's units).",
    flag_values=fv,
  )
  flags.DEFINE_bool('absolute', not defaults.relative, 'Tolerance in the metric\'s units.',
                    flag_values=fv)  # fmt: skip
  flags.DEFINE_integer(
    'patience',
    0,
    'Epochs the smoothed curve must stay in the band; 0: through the last epoch.',
    flag_values=fv,
  )
  positional = parse_flags(fv, argv)
  dirs = positional[1:]
  if not dirs:
    raise UsageError('analyze difficulty needs at least one run directory (a probe run, search or '
                     'training run)')  # fmt: skip
  from unreal_nas_jax.analysis import plots

  _check_out(fv.out)
  _check_json(fv.json)
  rule = convergence.ConvergenceRule(
    smoothing=fv.smoothing,
    plateau_epochs=fv.plateau_epochs,
    tolerance=fv.tolerance,
    relative=not fv.absolute,
    patience=fv.patience or None,
  )
  results = [d for run_dir in dirs for d in convergence.run_difficulty(run_dir, fv.metric, rule)]
  labels = plots.unique_labels([d.label for d in results], [d.path for d in results])
  labelled = list(zip(labels, results, strict=True))
  if fv.out:
    curves = [(label, d.epochs, d.values, d.convergence) for label, d in labelled]
    plots.plot_difficulty(curves, os.path.expanduser(fv.out), fv.metric, rule)
  document = {
    'metric': fv.metric,
    'rule': rule.describe(),
    'datasets': [{**d.to_json(), 'label': label} for label, d in labelled],
    'plot': fv.out,
  }
  _write_json(document, fv.json)
  return 0


def _rank(argv: Sequence[str]) -> int:
  from unreal_nas_jax.analysis import ranking, runs

  fv = flags.FlagValues()
  _define_out(fv, required=False)
  flags.DEFINE_string('json', None, 'Also write the JSON line to this file.', flag_values=fv)
  flags.DEFINE_integer(
    'epoch', None, 'Probe epoch (1-based); default: the last one every architecture reached.',
    lower_bound=1, flag_values=fv,
  )  # fmt: skip
  flags.DEFINE_enum('metric', 'train_acc', list(runs.PROBE_METRICS), 'Rank by.', flag_values=fv)
  positional = parse_flags(fv, argv)
  if len(positional) != 3:
    raise UsageError(
      f'analyze rank takes two inputs (a probe run and a probe run or CSV), got {len(positional) - 1}'
    )
  _check_out(fv.out)
  _check_json(fv.json)
  result = ranking.rank(positional[1], positional[2], epoch=fv.epoch, metric=fv.metric)
  if fv.out:
    from unreal_nas_jax.analysis import plots

    plots.plot_rank(result, os.path.expanduser(fv.out))
  _write_json({**result.to_json(), 'plot': fv.out}, fv.json)
  return 0


def analyze_command(argv: Sequence[str]) -> int:
  """`unreal-nas analyze difficulty|rank ...` (module docstring)."""
  if len(argv) >= 2 and argv[1] in ('-h', '--help', 'help'):
    print(__doc__.split('\n\n')[1])
    raise HelpRequested
  if len(argv) < 2 or argv[1] not in ANALYSES:
    given = repr(argv[1]) if len(argv) >= 2 else 'nothing'
    raise UsageError(f'unreal-nas analyze needs an analysis, got {given}; allowed: '
                     f'{", ".join(ANALYSES)}')  # fmt: skip
  action = {'difficulty': _difficulty, 'rank': _rank}[argv[1]]
  return action([f'{argv[0]} {argv[1]}', *argv[2:]])


def plot_command(argv: Sequence[str]) -> int:
  """`unreal-nas plot WORKDIR... --out=FILE [--kind=...] [--metric=...]` (module docstring)."""
  fv = flags.FlagValues()
  _define_out(fv, required=True)
  flags.DEFINE_enum(
    'kind',
    'all',
    list(PLOT_KINDS),
    'Search runs: skip connections per epoch, alphas per edge and op, loss and accuracy, or all; '
    'sweep: --metric against the number of random classes.',
    flag_values=fv,
  )
  flags.DEFINE_string(
    'metric',
    'val_acc',
    "For --kind=sweep: the metric of each run's last epoch that has it (e.g. val_acc of "
    'searches, eval_top1 of training runs).',
    flag_values=fv,
  )
  positional = parse_flags(fv, argv)
  workdirs = positional[1:]
  from unreal_nas_jax.analysis import plots, runs

  out = os.path.expanduser(fv.out)
  plots.check_out(out)
  if not workdirs:
    if fv.kind == 'sweep':
      raise UsageError('empty sweep: no workdirs given')
    raise UsageError('unreal-nas plot needs at least one workdir')
  all_runs = [run for workdir in workdirs for run in runs.read_runs(workdir)]
  if fv.kind == 'sweep':
    points = plots.sweep_points(all_runs, fv.metric)
    plots.plot_sweep(points, out, fv.metric)
    document = {
      'metric': fv.metric,
      'points': [{'num_classes': c, 'value': v, 'label': label} for c, v, label in points],
    }
  else:
    plots.plot_search_runs(all_runs, out, fv.kind)
    document = {'kind': fv.kind, 'runs': [{'label': r.label, 'dir': r.path} for r in all_runs]}
  _write_json({**document, 'plot': fv.out}, None)
  return 0
