"""`unreal-nas`: the command line.

  unreal-nas search --config=configs/search.py:rlrn[,quick] --workdir=DIR [--config.a.b=value ...]
  unreal-nas bench [--config=configs/search.py:rlrn,quick] [--steps=N] [--cases=...]
  unreal-nas data preview --config=configs/search.py:<preset> --out=FILE.png
  unreal-nas genotype NAME|GENOTYPE.json|SEARCH_WORKDIR [--json] [--plot=FILE.svg]
  unreal-nas train --config=configs/train.py:cifar10[,quick,fake_data] --config.genotype=... --workdir=DIR
  unreal-nas eval --workdir=DIR
  unreal-nas probe --config=configs/probe.py:rlrn[,quick] --workdir=DIR
  unreal-nas reproduce --config=configs/reproduce.py:paper|quick --workdir=DIR [--plan|--table-only]

Flags are parsed with absl and ml_collections (`lock_config`: an unknown `--config.x` is an
error). Every user error ends in one line on stderr, `unreal-nas <command>: error: ...`, and exit
status 2 (1 for a run that failed, e.g. a NaN loss); nothing already in the workdir is touched.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence

from absl import flags

from unreal_nas_jax.cli import analysis, reproduce
from unreal_nas_jax.cli.flags import (
  DEFAULT_COMPILE_CACHE,
  HelpRequested,
  UsageError,
  define_common,
  enable_compile_cache,
  one_line,
  parse_flags,
)

USAGE = """usage: unreal-nas <command> [flags]

commands:
  search   run (or resume) an architecture search: --config=configs/search.py:<preset> --workdir=DIR
  bench    time the search step (first and second order) and print one JSON line per case
  data     `data preview --config=... --out=FILE.png`: a grid of a search dataset's examples
  train    retrain a cell (--config.genotype=NAME|FILE|SEARCH_WORKDIR) on CIFAR-10/100 or ImageNet
  eval     evaluate a training workdir's latest checkpoint on the test split (one JSON line)
  genotype show a cell (published name, genotype.json or search workdir): both cells, the
           parameters and mult-adds of its CIFAR-10/100 and ImageNet networks, a diagram
  analyze  `analyze difficulty DIR... --out=F.png` (epochs to convergence) or `analyze rank A B ...`
  probe    train fixed architectures (random, published or files) from scratch on a search
           dataset, recording their curves: --config=configs/probe.py:<dataset> --workdir=DIR
  plot     figures of search runs (skip connections, alphas, loss) or of a class-count sweep
  reproduce  the paper's Table 2: every search, retraining and evaluation in order, resumable;
           --plan prints the commands and their device time, --table-only the table so far

`unreal-nas <command> --help` lists the flags of a command."""


def _workdir_command(argv: Sequence[str]):
  """Parses --config, --workdir and --compile_cache of `search` and `train`; joins a multi-host
  run. Returns (config, workdir)."""
  fv = flags.FlagValues()
  define_common(fv, config_required=True, default_config=None, compile_cache=DEFAULT_COMPILE_CACHE)
  flags.DEFINE_string(
    'workdir',
    None,
    'Directory for checkpoints, metrics and genotype.json.',
    flag_values=fv,
    required=True,
  )
  parse_flags(fv, argv)
  config = _load_config(fv)
  enable_compile_cache(fv.compile_cache)
  from unreal_nas_jax import parallel  # keep --help fast

  parallel.maybe_initialize_distributed()
  return config, os.path.expanduser(fv.workdir)


def search_command(argv: Sequence[str]) -> int:
  config, workdir = _workdir_command(argv)
  from unreal_nas_jax.train.search_loop import run_search

  summary = run_search(config, workdir)
  for seed in summary['seeds']:
    which = f' of seed {seed["seed"]}' if summary['num_seeds'] > 1 else ''
    print(f'search finished after {summary["epochs"]} epochs; genotype{which}:')
    print(seed['genotype_text'])
    print(f'written to {os.path.join(seed["dir"], "genotype.json")}')
  return 0


def probe_command(argv: Sequence[str]) -> int:
  config, workdir = _workdir_command(argv)
  from unreal_nas_jax.train.probe import run_probe

  summary = run_probe(config, workdir)
  for name, last in summary['final'].items():
    print(
      f'{name}: epoch {summary["epochs"]} train_loss={last["train_loss"]:.4f} '
      f'train_acc={last["train_acc"]:.4f}'
    )
  print(
    f'curves of {len(summary["final"])} architectures in {os.path.join(workdir, "probe.jsonl")}'
  )
  return 0


def bench_command(argv: Sequence[str]) -> int:
  fv = flags.FlagValues()
  # No cache by default: bench reports compile seconds, which a cache hit would hide.
  define_common(fv, config_required=False, default_config=None, compile_cache='')
  flags.DEFINE_integer('steps', 5, 'Timed steps per case (after compilation).', flag_values=fv)
  flags.DEFINE_list('orders', ['1', '2'], 'Architecture-gradient orders to time.', flag_values=fv)
  flags.DEFINE_list(
    'cases',
    [],
    'What to time. Without --config: paper, small (search steps of those sizes), sgas, pc_darts '
    '(the paper-size first-order step of those methods), data (build '
    'and per-step cost of every dataset; rlrd/cifar10 need prepared tfds data), train_cifar, '
    'train_imagenet (the retraining step of DARTS_V2 in the CIFAR-10 and ImageNet networks), '
    "torch_reference (the DARTS reference's first-order step in PyTorch at the paper size, "
    'when torch is installed), checkpoint (seconds per save and restore of the paper-size search '
    'state and the CIFAR retraining state). '
    "With a search --config: steps, data (that config's), seeds (N seeds in one program "
    'against N single-seed steps; N = search.num_seeds, or 4); with a train config '
    '(configs/train.py): its retraining step. Default: all of them (with --target: paper and '
    "train_cifar, or the config's step).",
    flag_values=fv,
  )
  flags.DEFINE_string(
    'target',
    None,
    'Compile the step cases for an accelerator this machine does not have, without running '
    'them: tpu:<chip>[:<topology>] (v5e, v6e, v5p; e.g. tpu:v5e:2x4 for a v5e-8) or '
    'gpu:<name>[:<count>] (h100, h200). Prints compile seconds, device memory and whether it '
    "fits, flops, bytes and the roofline bound per step, and on a TPU the sum of its compiler's "
    'estimated cycles per step. Needs the toolchain: pip install '
    "'unreal_nas_jax[tpu-aot]' or '[gpu-aot]'.",
    flag_values=fv,
  )
  parse_flags(fv, argv)
  if fv.target:
    from unreal_nas_jax import targets  # before JAX starts a backend

    targets.parse_target(fv.target)
    targets.prepare_environment()
  enable_compile_cache(fv.compile_cache)
  from unreal_nas_jax import bench

  config = _load_config(fv) if fv['config'].present or fv.config is not None else None
  orders = [int(o) for o in fv.orders]
  cases = fv.cases or None  # none given: all of them
  records = bench.run_bench(config, cases=cases, orders=orders, steps=fv.steps, target=fv.target)
  for record in records:
    print(json.dumps(record), flush=True)
  return 0


def data_command(argv: Sequence[str]) -> int:
  actions = ('preview',)
  if len(argv) < 2 or argv[1] not in actions:
    given = repr(argv[1]) if len(argv) >= 2 else 'nothing'
    raise UsageError(f'unreal-nas data needs an action, got {given}; allowed: {", ".join(actions)}')
  fv = flags.FlagValues()
  define_common(fv, config_required=True, default_config=None, compile_cache='')
  flags.DEFINE_string(
    'out', None, 'Image file to write (.png, .svg, .pdf or .jpg).', flag_values=fv
  )
  flags.mark_flag_as_required('out', flag_values=fv)
  flags.DEFINE_integer('rows', 4, 'Rows of the grid.', flag_values=fv)
  flags.DEFINE_integer('cols', 8, 'Columns of the grid.', flag_values=fv)
  flags.DEFINE_enum(
    'split',
    'train',
    ['train', 'val'],
    'Which half: weights (train) or architecture (val).',
    flag_values=fv,
  )
  parse_flags(fv, [f'{argv[0]} preview', *argv[2:]])
  config = _load_config(fv)
  from unreal_nas_jax.cli import preview

  path = preview.write_preview(
    config, os.path.expanduser(fv.out), rows=fv.rows, cols=fv.cols, split=fv.split
  )
  print(f'wrote {path}')
  return 0


def train_command(argv: Sequence[str]) -> int:
  config, workdir = _workdir_command(argv)
  from unreal_nas_jax.train.retrain import run_train

  summary = run_train(config, workdir)
  print(f'training finished after {summary["epochs"]} epochs: {json.dumps(summary["record"])}')
  return 0


def eval_command(argv: Sequence[str]) -> int:
  fv = flags.FlagValues()
  flags.DEFINE_string('workdir', None, 'A training workdir.', flag_values=fv, required=True)
  flags.DEFINE_string(
    'compile_cache', DEFAULT_COMPILE_CACHE, 'Persistent XLA cache directory.', flag_values=fv
  )
  parse_flags(fv, argv)
  enable_compile_cache(fv.compile_cache)
  from unreal_nas_jax.train.retrain import run_eval

  print(json.dumps(run_eval(os.path.expanduser(fv.workdir))), flush=True)
  return 0


def genotype_command(argv: Sequence[str]) -> int:
  fv = flags.FlagValues()
  flags.DEFINE_bool('json', False, 'Print one JSON line instead of text.', flag_values=fv)
  flags.DEFINE_string(
    'plot', None, 'Also draw both cells into this file (.svg, .png or .pdf).', flag_values=fv
  )
  positional = parse_flags(fv, argv)
  if len(positional) != 2:
    names = 'a published name (e.g. DARTS_V2), a genotype.json or a search workdir'
    raise UsageError(f'unreal-nas genotype takes one cell, got {len(positional) - 1}: {names}')
  spec = positional[1]
  from unreal_nas_jax.models import eval_network  # keep --help fast
  from unreal_nas_jax.space import cell_plot, genotypes
  from unreal_nas_jax.train.genotype_source import resolve_genotype

  genotype, source = resolve_genotype(spec)
  if fv.plot:
    try:
      cell_plot.plot_genotype(genotype, os.path.expanduser(fv.plot), os.path.basename(spec))
    except ValueError as e:
      raise UsageError(str(e)) from None
  from unreal_nas_jax import timing

  timer = timing.Phases()
  with timer('count parameters and mult-adds', 'CIFAR-10/100 and ImageNet networks'):
    costs = eval_network.network_costs(genotype)
  timer.close()
  if fv.json:
    print(json.dumps({'genotype': genotypes.genotype_to_json(genotype), 'source': source, **costs}))
    return 0
  print(f'{spec} ({source})')
  print(genotypes.format_genotype(genotype))
  print(f'{"network":<10}{"params":>12}{"mult-adds":>14}')
  for dataset in costs['params']:
    params, madds = costs['params'][dataset], costs['madds'][dataset]
    print(f'{dataset:<10}{params:>12,}{madds / 1e6:>13.1f}M')
  print('(reference sizes: CIFAR C=36, 20 cells; ImageNet C=48, 14 cells, 224x224; auxiliary head '
        'excluded)')  # fmt: skip
  if fv.plot:
    print(f'cells drawn to {fv.plot}')
  return 0


def _load_config(fv: flags.FlagValues):
  config = fv.config
  if config is None:
    raise UsageError('--config is required, e.g. --config=configs/search.py:rlrn,quick')
  return config


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
  'search': search_command,
  'bench': bench_command,
  'data': data_command,
  'genotype': genotype_command,
  'train': train_command,
  'eval': eval_command,
  'probe': probe_command,
  'analyze': analysis.analyze_command,
  'plot': analysis.plot_command,
  'reproduce': reproduce.reproduce_command,
}


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ('-h', '--help', 'help'):
    print(USAGE)
    return 0 if len(argv) >= 2 else 2
  command = argv[1]
  if command not in COMMANDS:
    print(
      f'unreal-nas: error: unknown command {command!r}; allowed: {", ".join(COMMANDS)}',
      file=sys.stderr,
    )
    return 2
  from unreal_nas_jax.checkpointing import CheckpointError
  from unreal_nas_jax.config_utils import ConfigError
  from unreal_nas_jax.parallel import DeviceError
  from unreal_nas_jax.targets import TargetError
  from unreal_nas_jax.train.run import NonFiniteLossError, Preempted

  def error(message: str, status: int) -> int:
    print(f'unreal-nas {command}: error: {one_line(message)}', file=sys.stderr)
    return status

  try:
    return COMMANDS[command]([f'unreal-nas {command}', *argv[2:]])
  except HelpRequested:
    return 0
  except (UsageError, ConfigError, DeviceError, CheckpointError, TargetError) as e:
    return error(str(e), 2)
  except NonFiniteLossError as e:
    return error(str(e), 1)
  except Preempted as e:
    print(f'unreal-nas {command}: {e}', file=sys.stderr)
    return e.exit_code
  except KeyboardInterrupt:
    print(f'unreal-nas {command}: interrupted; rerun the same command to resume', file=sys.stderr)
    return 130


def entry_point() -> None:
  """The `unreal-nas` console script. Output piped into a reader that stops early
  (`unreal-nas genotype --help | head -1`) ends the command quietly with exit status 1 instead of
  a BrokenPipeError traceback (the Python docs' note on SIGPIPE, `signal` module)."""
  try:
    status = main()
    sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's flush at exit
  except BrokenPipeError:
    # Python flushes stdout again at exit: point it at devnull so that flush cannot fail too.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    status = 1
  sys.exit(status)


if __name__ == '__main__':
  entry_point()
