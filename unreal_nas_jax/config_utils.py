"""Config checks shared by the CLI and the loops: one-line errors that name the bad value."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections

PROGRESS_MODES = ('auto', 'bar', 'lines', 'none')

# Keys a resumed run may change: run length, logging, checkpoint retention and device placement.
# Everything else changes the search itself, and a workdir holding such a run is refused.
RESUMABLE_CHANGES = (
  'preset',
  'search.epochs',
  'log.',
  'checkpoint.',
  'parallel.',
  'model.depthwise_impl',
  'model.edge_form',
  'model.remat',
  'search.seeds_program',
  'probe.program',  # how the probe's architectures share a program, not what they compute
  # Where the data is read from and how it is rendered in chunks, not what it is.
  'data.tfds_data_dir',
  'data.download',
  'data.render_batch_size',
  'data.manual_dir',
  'train.epochs',
  'train.eval_every_epochs',
)


class ConfigError(ValueError):
  """A config value that is not allowed (the message is one line and names the key)."""


def to_dict(config: ml_collections.ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
  """A JSON-compatible plain dict (tuples become lists) of a ConfigDict."""
  raw = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
  return json.loads(json.dumps(raw))


def flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def incompatible_keys(saved: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
  """Keys whose values differ between two configs, ignoring `RESUMABLE_CHANGES`."""
  a, b = flatten(to_dict(saved)), flatten(to_dict(new))
  differing = sorted(k for k in set(a) | set(b) if a.get(k, '<missing>') != b.get(k, '<missing>'))
  return [k for k in differing if not _resumable(k)]


def _resumable(key: str) -> bool:
  return any(key == p or (p.endswith('.') and key.startswith(p)) for p in RESUMABLE_CHANGES)


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
  if not ok:
    raise ConfigError(f'config.{key}={value!r} is not allowed; allowed: {allowed}')


def require_choice(config: ml_collections.ConfigDict, key: str, choices: Iterable[Any]) -> None:
  choices = tuple(choices)
  value = get(config, key)
  require(value in choices, key, value, ', '.join(map(str, choices)))


def require_range(
  config: ml_collections.ConfigDict,
  key: str,
  low: float | None = None,
  high: float | None = None,
  *,
  integer: bool = False,
  low_open: bool = False,
  high_open: bool = False,
) -> None:
  value = get(config, key)
  is_number = isinstance(value, int | float) and not isinstance(value, bool)
  ok = is_number and math.isfinite(value) and (not integer or float(value).is_integer())
  if ok and low is not None:
    ok = value > low if low_open else value >= low
  if ok and high is not None:
    ok = value < high if high_open else value <= high
  kind = 'an integer' if integer else 'a number'
  bounds = []
  if low is not None:
    bounds.append(f'{">" if low_open else ">="} {low}')
  if high is not None:
    bounds.append(f'{"<" if high_open else "<="} {high}')
  require(ok, key, value, kind + (' ' + ' and '.join(bounds) if bounds else ''))


def validate_run_fields(config: ml_collections.ConfigDict) -> None:
  """The fields every run has: its seed, checkpoint retention, logging and devices."""
  from unreal_nas_jax.parallel import XLA_OPTIMIZATION_LEVELS  # here: loading a config needs no JAX

  require_range(config, 'seed', 0, integer=True)
  require_range(config, 'checkpoint.max_to_keep', 0, integer=True)
  require_range(config, 'checkpoint.keep_period', 0, integer=True)
  require_range(config, 'checkpoint.every_steps', 0, integer=True)
  require_range(config, 'checkpoint.every_minutes', 0)
  require(isinstance(config.checkpoint.dir, str), 'checkpoint.dir', config.checkpoint.dir,
          'a directory path or URI; empty for WORKDIR/checkpoints')  # fmt: skip
  require_choice(config, 'log.progress', PROGRESS_MODES)
  require_range(config, 'log.every_steps', 1, integer=True)
  require_range(config, 'log.sync_every_steps', 0, integer=True)
  require_range(config, 'parallel.num_devices', 0, integer=True)
  require_choice(config, 'parallel.xla_optimization_level', tuple(XLA_OPTIMIZATION_LEVELS))


def validate_weight_sgd_fields(config: ml_collections.ConfigDict) -> None:
  """The weights' SGD (`optim.weight_sgd`) and its learning rate, as search and retraining set it."""
  require_range(config, 'optim.lr', 0)
  require_range(config, 'optim.lr_min', 0, config.optim.lr)
  require_range(config, 'optim.momentum', 0, 1, high_open=True)
  require_range(config, 'optim.weight_decay', 0)
  require_range(config, 'optim.grad_clip', 0)


def parse_preset(
  arg: str | None, *, kind: str, presets: Sequence[str], modifiers: Sequence[str]
) -> tuple[str, tuple[str, ...]]:
  """Splits a config argument 'preset[,modifier...]' (`presets[0]` when empty) and checks it."""
  preset, *given = (arg or presets[0]).split(',')
  if preset not in presets:
    raise ConfigError(f'unknown {kind} preset {preset!r}; allowed: {", ".join(presets)}')
  for modifier in given:
    if modifier not in modifiers:
      raise ConfigError(
        f'unknown config modifier {modifier!r} of {kind} presets; allowed: {", ".join(modifiers)}'
      )
  return preset, tuple(given)


REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG_FILES = ('search.py', 'train.py', 'probe.py', 'reproduce.py')


def packaged_config(name: str) -> pathlib.Path:
  """The config file `name` (one of `CONFIG_FILES`) shipped with the package.

  An installed package holds them as `unreal_nas_jax/configs/` (setup.py maps the repository's
  `configs/` there); a source checkout reads `configs/` beside the package.
  """
  installed = pathlib.Path(__file__).resolve().parent / 'configs' / name
  return installed if installed.exists() else REPO_ROOT / 'configs' / name


def resolve_config_spec(spec: str, default_file: str = 'search.py') -> str:
  """'file.py[:arg]' with `file.py` made a path that exists, for any working directory.

  An existing path is kept; 'configs/search.py' or 'search.py' that does not exist here is the
  packaged file; a bare preset ('rlrn,quick') is a preset of `default_file`.
  """
  path, sep, arg = spec.partition(':')
  if not path.endswith('.py') and not sep:
    path, sep, arg = default_file, ':', spec  # a bare preset
  if pathlib.Path(path).expanduser().exists():
    return f'{pathlib.Path(path).expanduser()}{sep}{arg}'
  name = pathlib.PurePath(path).name
  if name in CONFIG_FILES and pathlib.PurePath(path).parent.name in ('', 'configs'):
    return f'{packaged_config(name)}{sep}{arg}'
  raise ConfigError(
    f'config file {path!r} does not exist; use a file path, configs/search.py:<preset>, '
    'configs/train.py:<preset>, configs/probe.py:<preset>, configs/reproduce.py:<scale> or a '
    'bare preset such as rlrn,quick'
  )


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Loads 'path/to/file.py[:arg]' like --config does (see `resolve_config_spec`)."""
  path, _, arg = resolve_config_spec(spec).partition(':')
  file = pathlib.Path(path)
  module_spec = importlib.util.spec_from_file_location(f'_config_{file.stem}', file)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def get(config: ml_collections.ConfigDict, dotted: str) -> Any:
  node = config
  for part in dotted.split('.'):
    node = node[part]
  return node
