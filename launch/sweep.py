r"""Prints (or runs) the commands of a sweep, e.g. the paper's random-class ablation (Fig. 6).

  python launch/sweep.py --classes=10,100,1000,5000,7500,10000 --seeds=0,1 --root=runs/classes
  python launch/sweep.py ... --run      # run them one after another on this machine

Each run gets its own workdir, so a sweep can be stopped and restarted: finished runs are skipped
by the resume logic and unfinished ones continue from their last checkpoint.
"""

import argparse
import shlex
import subprocess
import sys


def sweep_commands(preset, classes, seeds, root, extra):
  for num_classes in classes:
    for seed in seeds:
      workdir = f'{root}/{preset.replace(",", "_")}_c{num_classes}_s{seed}'
      yield [
        'unreal-nas', 'search', f'--config=configs/search.py:{preset}', f'--workdir={workdir}',
        f'--config.data.num_classes={num_classes}', f'--config.seed={seed}', *extra,
      ]  # fmt: skip


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--preset', default='rlrn')
  parser.add_argument('--classes', default='10,100,1000,5000,7500,10000')
  parser.add_argument('--seeds', default='0')
  parser.add_argument('--root', default='runs/sweep')
  parser.add_argument('--run', action='store_true', help='run the commands instead of printing')
  args, extra = parser.parse_known_args(argv)
  classes = [int(c) for c in args.classes.split(',')]
  seeds = [int(s) for s in args.seeds.split(',')]
  for command in sweep_commands(args.preset, classes, seeds, args.root, extra):
    print(shlex.join(command), flush=True)
    if args.run:
      subprocess.run(command, check=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
