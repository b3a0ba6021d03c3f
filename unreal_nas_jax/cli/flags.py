"""Flag parsing and the command line's error types, shared by every `unreal-nas` command.

A command defines its flags on its own `absl.flags.FlagValues` (`define_common`: --config and
--compile_cache) and calls `parse_flags`; a bad command line raises `UsageError` (one line),
`--help` prints the flags and raises `HelpRequested`. `cli/main.py` turns both into an exit
status.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from absl import flags
from ml_collections import config_flags

DEFAULT_COMPILE_CACHE = (
  os.environ.get('UNREAL_NAS_COMPILE_CACHE')
  or os.environ.get('JAX_COMPILATION_CACHE_DIR')
  or os.path.join('~', '.cache', 'unreal_nas_jax', 'xla')
)


class UsageError(Exception):
  """A bad command line (one-line message)."""


class HelpRequested(Exception):
  """--help was given: the command's flags have been printed."""


def one_line(message: str) -> str:
  """The first line of a message; for a traceback inside it, the final exception's text."""
  lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
  if not lines:
    return str(message)
  if any(line.startswith('Traceback') for line in lines):
    # ml_collections wraps errors raised by get_config() in the whole traceback.
    return re.sub(r'^[A-Za-z_.]*(Error|Exception): ', '', lines[-1])
  return lines[0]


def _resolve_config_flag(argv: Sequence[str]) -> list[str]:
  """`--config=SPEC` with SPEC's file found for any working directory and installation: a path
  that exists, else the packaged configs/search.py or configs/train.py; a bare preset
  (`--config=rlrn,quick`) names a preset of the command's config file."""
  from unreal_nas_jax.config_utils import resolve_config_spec

  command = argv[0].split()[-1]  # 'unreal-nas train' -> 'train'
  default_file = {'train': 'train.py', 'probe': 'probe.py', 'reproduce': 'reproduce.py'}.get(
    command, 'search.py'
  )
  out, args = [], list(argv)
  i = 0
  while i < len(args):
    arg = args[i]
    if arg.startswith('--config='):
      out.append('--config=' + resolve_config_spec(arg.split('=', 1)[1], default_file))
    elif arg == '--config' and i + 1 < len(args):
      out.append('--config=' + resolve_config_spec(args[i + 1], default_file))
      i += 1
    else:
      out.append(arg)
    i += 1
  return out


def parse_flags(fv: flags.FlagValues, argv: Sequence[str]) -> list[str]:
  """Parses the flags of `argv`; returns the positional arguments (argv[0] first).

  Raises:
    HelpRequested: `argv` asks for help (the flags of `fv` have been printed).
    UsageError: an unknown or malformed flag, a missing required one, or a config file or
      override that does not load.
  """
  if any(a in ('-h', '--help', '--helpshort', '--helpfull') for a in argv[1:]):
    print(f'usage: {argv[0]} [flags]\n')
    print(fv.get_help())
    raise HelpRequested
  argv = _resolve_config_flag(argv)
  try:
    return fv(list(argv))
  except flags.Error as e:
    raise UsageError(one_line(str(e))) from None
  except (ValueError, KeyError, AttributeError, TypeError, FileNotFoundError) as e:
    raise UsageError(one_line(str(e).strip('\'"'))) from None


def define_common(
  fv: flags.FlagValues, config_required: bool, default_config: str | None, compile_cache: str
):
  """--config (a config file and preset, fields overridable) and --compile_cache on `fv`."""
  config_flags.DEFINE_config_file(
    'config',
    default=default_config,
    help_string='Config file and preset, e.g. configs/search.py:rlrn,quick; '
    'override any field with --config.<field>=<value>.',
    lock_config=True,
    flag_values=fv,
  )
  if config_required:
    flags.mark_flag_as_required('config', flag_values=fv)
  flags.DEFINE_string(
    'compile_cache',
    compile_cache,
    'Directory of the persistent XLA compilation cache (a rerun or resume of the same shapes '
    'skips compiling); empty disables it.',
    flag_values=fv,
  )


def enable_compile_cache(directory: str) -> None:
  if not directory:
    return
  import jax  # keep --help fast

  directory = os.path.expanduser(directory)
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise UsageError(f'--compile_cache {directory!r} is not writable: {e.strerror or e}') from None
  jax.config.update('jax_compilation_cache_dir', directory)
  # The supernet's steps take seconds to minutes to compile; smaller programs are not worth a file.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
