"""Reading run directories for the analyses: search, training and probe runs.

A search or training run (docs/search.md, "What a search writes") is `DIR/config.json` and
`DIR/metrics.jsonl`, one JSON object per epoch; an N-seed search keeps its per-seed
`metrics.jsonl` in `DIR/seed_<k>/`. A probe run (fixed architectures trained from scratch, the
paper's difficulty and ranking measurements) is `DIR/config.json`, `DIR/architectures.json` and
`DIR/probe.jsonl` (the format in `train/probe_format.py`, which its writer shares).

Nothing here loads a checkpoint. A directory that is not a run is a `NotARunError`, one line
naming the directory and what it lacks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.train.probe_format import ARCHITECTURES_FILE, PROBE_FILE, PROBE_METRICS

CONFIG_FILE = 'config.json'
METRICS_FILE = 'metrics.jsonl'
_SEED_DIR = re.compile(r'^seed_(\d+)$')


class NotARunError(ConfigError):
  """A directory that is not a readable run (the message is one line)."""


def _read_json(path: str, run_dir: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise NotARunError(f'{run_dir!r}: {os.path.basename(path)} is not valid JSON ({e})') from None
  except OSError as e:
    raise NotARunError(f'{run_dir!r}: cannot read {os.path.basename(path)}: {e.strerror}') from None


def _read_jsonl(path: str, run_dir: str) -> list[dict[str, Any]]:
  """The objects of a JSON-lines file; a last line without its newline (a run writing it at this
  moment, or killed while writing) is left out."""
  try:
    with open(path) as f:
      text = f.read()
  except OSError as e:
    raise NotARunError(f'{run_dir!r}: cannot read {os.path.basename(path)}: {e.strerror}') from None
  lines = text.split('\n')
  records = []
  for number, line in enumerate(lines[:-1], start=1):  # lines[-1] is '' or an unfinished line
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      raise NotARunError(
        f'{run_dir!r}: line {number} of {os.path.basename(path)} is not JSON'
      ) from None
    if not isinstance(record, dict):
      raise NotARunError(f'{run_dir!r}: line {number} of {os.path.basename(path)} is not an object')
    records.append(record)
  return records


def _config_of(run_dir: str) -> tuple[dict[str, Any], str | None]:
  """(config, seed dir name or None). A `seed_<k>` directory takes its parent's config."""
  if not os.path.isdir(run_dir):
    raise NotARunError(f'{run_dir!r} is not a run: no such directory')
  path = os.path.join(run_dir, CONFIG_FILE)
  seed_dir = None
  if not os.path.isfile(path):
    name = os.path.basename(os.path.normpath(run_dir))
    parent = os.path.join(os.path.dirname(os.path.normpath(run_dir)), CONFIG_FILE)
    if _SEED_DIR.match(name) and os.path.isfile(parent):
      path, seed_dir = parent, name
    else:
      raise NotARunError(f'{run_dir!r} is not a run: it has no {CONFIG_FILE}')
  config = _read_json(path, run_dir)
  if not isinstance(config, dict):
    raise NotARunError(f'{run_dir!r}: {CONFIG_FILE} is not a JSON object')
  return config, seed_dir


def dataset_name(config: Mapping[str, Any]) -> str:
  data = config.get('data')
  return str(data.get('name', '?')) if isinstance(data, Mapping) else '?'


@dataclasses.dataclass(frozen=True)
class Run:
  """One search or training run (one seed of an N-seed search): its config and epoch records."""

  path: str
  kind: str  # 'search' or 'train'
  config: dict[str, Any]
  records: tuple[dict[str, Any], ...]
  seed: int | None = None  # the seed index of an N-seed search, else None

  @property
  def label(self) -> str:
    """The dataset name (the search method unless DARTS, the seed of an N-seed search)."""
    name = dataset_name(self.config)
    search = self.config.get('search')
    method = search.get('method') if isinstance(search, Mapping) else None
    if method and method != 'darts':
      name = f'{name} {method}'
    return name if self.seed is None else f'{name} seed {self.seed}'

  def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of the records whose `key` is a number (null values are left out)."""
    points = [
      (r['epoch'], float(r[key]))
      for r in self.records
      if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
    ]
    if not points:
      return np.zeros(0, np.int64), np.zeros(0)
    epochs, values = zip(*points, strict=True)
    return np.array(epochs, np.int64), np.array(values, np.float64)

  def final(self, key: str) -> float | None:
    """The value of `key` in the last epoch that has one, or None."""
    _, values = self.series(key)
    return float(values[-1]) if values.size else None


def _run_kind(config: Mapping[str, Any]) -> str:
  if 'search' in config:
    return 'search'
  if 'train' in config:
    return 'train'
  return 'unknown'


def read_runs(run_dir: str) -> list[Run]:
  """The search or training run(s) in `run_dir`: one per seed for an N-seed search directory.

  Raises:
    NotARunError: `run_dir` has no config.json (nor is a seed_<k> directory of a run), or no
      metrics.jsonl (in it or in its seed_<k> directories), or one of them is unreadable.
  """
  config, seed_dir = _config_of(run_dir)
  kind = _run_kind(config)
  if seed_dir is not None:
    seeds = [(int(_SEED_DIR.match(seed_dir).group(1)), run_dir)]
  elif os.path.isfile(os.path.join(run_dir, METRICS_FILE)):
    seeds = [(None, run_dir)]
  else:
    found = sorted(
      (int(m.group(1)), os.path.join(run_dir, name))
      for name in os.listdir(run_dir)
      if (m := _SEED_DIR.match(name)) and os.path.isfile(os.path.join(run_dir, name, METRICS_FILE))
    )
    if not found:
      if _is_probe(run_dir):
        raise NotARunError(
          f'{run_dir!r} is a probe run, not a search or training run (`unreal-nas analyze` reads it)'
        )
      raise NotARunError(
        f'{run_dir!r} is not a run: it has no {METRICS_FILE} (nor seed_<k>/{METRICS_FILE})'
      )
    seeds = found
  runs = []
  for seed, path in seeds:
    records = _read_jsonl(os.path.join(path, METRICS_FILE), run_dir)
    for number, record in enumerate(records, start=1):
      if not isinstance(record.get('epoch'), int):
        raise NotARunError(f'{path!r}: {METRICS_FILE} record {number} has no integer epoch')
    runs.append(Run(path=path, kind=kind, config=config, records=tuple(records), seed=seed))
  return runs


def _is_probe(run_dir: str) -> bool:
  return os.path.isfile(os.path.join(run_dir, PROBE_FILE))


@dataclasses.dataclass(frozen=True)
class ProbeRun:
  """A probe run: fixed architectures trained from scratch, their per-epoch training curves."""

  path: str
  config: dict[str, Any]
  architectures: dict[str, dict[str, Any]]  # name -> genotype JSON, in architectures.json order
  records: tuple[dict[str, Any], ...]

  @property
  def label(self) -> str:
    return dataset_name(self.config)

  def curve(self, name: str, metric: str = 'train_acc') -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of architecture `name`, sorted by epoch (a rerun epoch: its last line)."""
    by_epoch = {r['epoch']: float(r[metric]) for r in self.records if r['architecture'] == name}
    epochs = np.array(sorted(by_epoch), np.int64)
    return epochs, np.array([by_epoch[e] for e in epochs], np.float64)

  def epochs_reached(self) -> dict[str, int]:
    """The last epoch with a record, per architecture (0 for one without records)."""
    reached = dict.fromkeys(self.architectures, 0)
    for r in self.records:
      reached[r['architecture']] = max(reached[r['architecture']], r['epoch'])
    return reached

  def last_common_epoch(self) -> int:
    """The last epoch every architecture reached."""
    epoch = min(self.epochs_reached().values(), default=0)
    if epoch < 1:
      raise NotARunError(f'{self.path!r}: an architecture of this probe run has no epoch yet')
    return epoch

  def values_at(self, epoch: int, metric: str = 'train_acc') -> dict[str, float]:
    """{architecture name: `metric` at `epoch`} for every architecture of the run.

    Raises:
      NotARunError: `metric` is not a probe metric, or an architecture has no record at `epoch`.
    """
    if metric not in PROBE_METRICS:
      raise ConfigError(f'metric {metric!r} is not allowed; allowed: {", ".join(PROBE_METRICS)}')
    values = {r['architecture']: float(r[metric]) for r in self.records if r['epoch'] == epoch}
    lacking = [name for name in self.architectures if name not in values]
    if lacking:
      shown = ', '.join(lacking[:5]) + (f' and {len(lacking) - 5} more' if len(lacking) > 5 else '')
      raise NotARunError(
        f'{self.path!r}: no epoch {epoch} for {shown}; every architecture reached epoch '
        f'{min(self.epochs_reached().values())}'
      )
    return {name: values[name] for name in self.architectures}


def read_probe_run(run_dir: str) -> ProbeRun:
  """The probe run in `run_dir` (format in the module docstring).

  Raises:
    NotARunError: `run_dir` lacks config.json, architectures.json or probe.jsonl, or they are
      malformed (a record of an architecture architectures.json does not list, a missing key).
  """
  config, _ = _config_of(run_dir)
  if not _is_probe(run_dir):
    if os.path.isfile(os.path.join(run_dir, METRICS_FILE)):
      raise NotARunError(
        f'{run_dir!r} is a search or training run, not a probe run (no {PROBE_FILE})'
      )
    raise NotARunError(f'{run_dir!r} is not a probe run: it has no {PROBE_FILE}')
  path = os.path.join(run_dir, ARCHITECTURES_FILE)
  if not os.path.isfile(path):
    raise NotARunError(f'{run_dir!r} is not a probe run: it has no {ARCHITECTURES_FILE}')
  document = _read_json(path, run_dir)
  entries = document.get('architectures') if isinstance(document, dict) else None
  if not isinstance(entries, list) or not all(
    isinstance(e, dict) and isinstance(e.get('name'), str) for e in entries
  ):
    raise NotARunError(
      f'{run_dir!r}: {ARCHITECTURES_FILE} is not {{"architectures": [{{"name", "genotype"}}, ...]}}'
    )
  architectures = {e['name']: e.get('genotype') for e in entries}
  records = _read_jsonl(os.path.join(run_dir, PROBE_FILE), run_dir)
  required = ('architecture', 'epoch', *PROBE_METRICS)
  for number, r in enumerate(records, start=1):
    missing = [k for k in required if k not in r]
    if missing:
      raise NotARunError(f'{run_dir!r}: {PROBE_FILE} line {number} lacks {", ".join(missing)}')
    numbers = [r['epoch'], *(r[k] for k in PROBE_METRICS)]
    if not isinstance(r['epoch'], int) or not all(
      isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers
    ):
      raise NotARunError(
        f'{run_dir!r}: {PROBE_FILE} line {number}: epoch, train_loss and train_acc must be numbers'
      )
    if r['architecture'] not in architectures:
      raise NotARunError(
        f'{run_dir!r}: {PROBE_FILE} line {number} names architecture {r["architecture"]!r}, '
        f'which {ARCHITECTURES_FILE} does not list'
      )
  return ProbeRun(path=run_dir, config=config, architectures=architectures, records=tuple(records))


def _num_classes(config: Mapping[str, Any]) -> int | None:
  data = config.get('data')
  value = data.get('num_classes') if isinstance(data, Mapping) else None
  return value if isinstance(value, int) and not isinstance(value, bool) else None


def random_classes(run: Run) -> int:
  """The number of random classes the run's cell was searched with: `data.num_classes` of a
  search run; for a training run, that of the search its `genotype` names (a search workdir, a
  seed_<k> directory or a genotype.json inside one; a relative path is tried from the current
  directory, then from the training workdir's parent).

  Raises:
    NotARunError: the count is not known (a published cell, or a search directory not found).
  """
  if run.kind == 'search':
    classes = _num_classes(run.config)
    if classes is None:
      raise NotARunError(f'{run.path!r}: its config.json has no data.num_classes')
    return classes
  spec = run.config.get('genotype')
  if not isinstance(spec, str) or not spec:
    raise NotARunError(f'{run.path!r} is not a search, and its config names no searched cell')
  candidates = [spec]
  if not os.path.isabs(spec):
    candidates.append(os.path.join(os.path.dirname(os.path.normpath(run.path)), spec))
  for candidate in candidates:
    search_dir = os.path.dirname(candidate) if os.path.isfile(candidate) else candidate
    if os.path.isdir(search_dir):
      try:
        config, _ = _config_of(search_dir)
      except NotARunError:
        continue
      classes = _num_classes(config) if 'search' in config else None
      if classes is not None:
        return classes
  raise NotARunError(
    f'{run.path!r}: its cell (genotype={spec!r}) is not a search directory found here, so its '
    'number of random classes is unknown'
  )
