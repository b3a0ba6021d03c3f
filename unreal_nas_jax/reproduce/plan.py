"""A reproduction as data: its phases (search, retraining, evaluation), their configs, commands
and workdirs, in the order they run, and where each one stands.

A row `<method>_<dataset>` is one N-seed search (`ROOT/search/<row>`); the cell of each of its
seeds is retrained on each retraining set (`ROOT/retrain/<row>/<set>/seed_<k>`) and then
evaluated (`eval.json` in the retraining workdir). Every phase is the command `unreal-nas search`,
`train` or `eval` would run, with its own workdir, so each resumes as those commands do; a phase
has finished when its own outputs say so (the last epoch in metrics.jsonl, eval.json of the last
checkpoint), so nothing else keeps the state of a reproduction.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence
from typing import Any

import ml_collections

from unreal_nas_jax import files, parallel
from unreal_nas_jax.config_utils import (
  ConfigError,
  load_config,
  require_choice,
  require_range,
  to_dict,
)
from unreal_nas_jax.data import pipeline
from unreal_nas_jax.data.datasets import CIFAR_DATASETS
from unreal_nas_jax.data.pipeline_spec import PipelineSpec
from unreal_nas_jax.data.search_data import SEARCH_DATASETS
from unreal_nas_jax.search import setup as search_setup
from unreal_nas_jax.search.derivation import SEARCH_METHODS
from unreal_nas_jax.search.validate import validate_search_config
from unreal_nas_jax.train import outputs
from unreal_nas_jax.train.retrain_config import validate_train_config

RETRAIN_SETS = CIFAR_DATASETS
EVAL_FILE = 'eval.json'
# The tfds dataset each search dataset reads (the unreal ones but rlrd read nothing).
SEARCH_TFDS = {'rlrd': 'cifar10', **{name: name for name in CIFAR_DATASETS}}
# Fields the plan sets itself in every phase (from config.seed, config.seeds and the cells).
PLAN_FIELDS = ('seed', 'search.num_seeds', 'genotype')


@dataclasses.dataclass(frozen=True)
class Row:
  """One row of the table: a search method on a search dataset."""

  method: str
  dataset: str

  @property
  def name(self) -> str:
    return f'{self.method}_{self.dataset}'

  @property
  def preset(self) -> str:
    """The search preset without the scale, e.g. 'rlgd,sgas'."""
    return self.dataset + ('' if self.method == 'darts' else f',{self.method}')


@dataclasses.dataclass(frozen=True)
class Phase:
  """One command of the reproduction.

  Attributes:
    kind: 'search', 'train' or 'eval'.
    row: the table row it belongs to.
    workdir: the command's workdir (a retraining's for 'eval').
    spec: the config file and preset ('configs/search.py:rlrd,quick'; for 'eval', the
      retraining's it evaluates).
    overrides: (dotted field, value) set on the preset, in order.
    retrain_set: the retraining set of 'train' and 'eval'.
    seed_index: k of the row's seed (train, eval).
  """

  kind: str
  row: Row
  workdir: str
  spec: str = ''
  overrides: tuple[tuple[str, Any], ...] = ()
  retrain_set: str | None = None
  seed_index: int | None = None

  @property
  def name(self) -> str:
    if self.kind == 'search':
      return f'search {self.row.name}'
    return f'{self.kind} {self.row.name} seed {self.seed_index} on {self.retrain_set}'

  @property
  def slug(self) -> str:
    """The phase's name as a file name (its log)."""
    return self.name.replace(' on ', ' ').replace(' ', '_')

  def config(self) -> ml_collections.ConfigDict:
    """The phase's config: the preset with the overrides set (an eval's: its retraining's)."""
    config = load_config(self.spec)
    apply_overrides(config, self.overrides, f'the {self.kind} config {self.spec}')
    return config

  def command(self) -> str:
    """The shell command that runs this phase alone."""
    if self.kind == 'eval':
      out = files.join(self.workdir, EVAL_FILE)
      return (
        f'{shlex.join(["unreal-nas", "eval", f"--workdir={self.workdir}"])} > {shlex.quote(out)}'
      )
    flags = [f'--config.{key}={value}' for key, value in self.overrides]
    args = ['unreal-nas', self.kind, f'--config={self.spec}', *flags, f'--workdir={self.workdir}']
    return shlex.join(args)


def _names(text: str) -> list[str]:
  return [part.strip() for part in str(text).split(',') if part.strip()]


def parse_rows(text: str) -> list[Row]:
  """'darts_rlrd,sgas_rlgd' -> Rows; ConfigError names an unknown one and what is allowed."""
  rows = []
  for name in _names(text):
    method, _, dataset = name.partition('_')
    if method not in SEARCH_METHODS or dataset not in SEARCH_DATASETS:
      raise ConfigError(
        f'config.rows: unknown row {name!r}; allowed: <method>_<dataset> with method '
        f'{", ".join(SEARCH_METHODS)} and dataset {", ".join(SEARCH_DATASETS)} '
        '(e.g. darts_rlrn, sgas_rlgd)'
      )
    rows.append(Row(method, dataset))
  if not rows:
    raise ConfigError('config.rows is empty; allowed: comma-separated rows such as darts_rlrn')
  duplicated = sorted({r.name for r in rows if rows.count(r) > 1})
  if duplicated:
    raise ConfigError(f'config.rows names {", ".join(duplicated)} twice; name each row once')
  return rows


def parse_retrain_sets(text: str) -> list[str]:
  sets = _names(text)
  for name in sets:
    if name not in RETRAIN_SETS:
      raise ConfigError(
        f'config.retrain: unknown retraining set {name!r}; allowed: {", ".join(RETRAIN_SETS)}'
      )
  if not sets or len(set(sets)) != len(sets):
    raise ConfigError(
      f'config.retrain={text!r} is not allowed; allowed: distinct sets among '
      f'{", ".join(RETRAIN_SETS)}, comma-separated'
    )
  return sets


def parse_overrides(text: str, field: str) -> list[tuple[str, str]]:
  """'a.b=1,c=x' -> [('a.b', '1'), ('c', 'x')] (values still text); ConfigError if malformed."""
  pairs = []
  for item in _names(text):
    key, sep, value = item.partition('=')
    if not sep or not key.strip():
      raise ConfigError(
        f'config.{field}: {item!r} is not allowed; allowed: comma-separated field=value, '
        'e.g. search.epochs=20'
      )
    key = key.strip()
    if key in PLAN_FIELDS:
      raise ConfigError(
        f'config.{field}: {key} is set by the reproduction for each phase; use config.seed '
        'and config.seeds'
      )
    pairs.append((key, value.strip()))
  return pairs


def apply_overrides(
  config: ml_collections.ConfigDict, overrides: Sequence[tuple[str, Any]], where: str
) -> None:
  """Sets each (dotted field, value) on `config`; a text value is read as the field's type."""
  for dotted, value in overrides:
    *parents, leaf = dotted.split('.')
    node = config
    for part in parents:
      node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise ConfigError(f'{dotted} is not a field of {where}')
    try:
      node[leaf] = _typed(value, node[leaf]) if isinstance(value, str) else value
    except (TypeError, ValueError):
      kind = type(node[leaf]).__name__
      raise ConfigError(
        f'{dotted}={value!r} is not allowed in {where}; allowed: a {kind}'
      ) from None


def _typed(text: str, current: Any) -> Any:
  """`text` as a value of `current`'s type (the command line's reading of --config.x=text)."""
  if isinstance(current, bool):
    if text.lower() not in ('true', 'false'):
      raise ValueError(text)
    return text.lower() == 'true'
  if isinstance(current, int):
    return int(text)
  if isinstance(current, float):
    return float(text)
  return text


@dataclasses.dataclass(frozen=True)
class Plan:
  """The phases of a reproduction config, in the order they run."""

  config: ml_collections.ConfigDict
  root: str
  rows: list[Row]
  retrain_sets: list[str]
  phases: list[Phase]

  def search_phase(self, row: Row) -> Phase:
    return next(p for p in self.phases if p.kind == 'search' and p.row == row)

  def row_phases(self, row: Row) -> list[Phase]:
    return [p for p in self.phases if p.row == row]


def validate_config(config: ml_collections.ConfigDict) -> None:
  require_choice(config, 'scale', ('paper', 'quick'))
  require_range(config, 'seeds', 1, integer=True)
  require_range(config, 'seed', 0, integer=True)
  require_choice(config, 'data.download', (False, True))


def make_plan(config: ml_collections.ConfigDict, root: str) -> Plan:
  """The phases of `config` under the root workdir `root` (ConfigError for a bad config)."""
  validate_config(config)
  rows = parse_rows(config.rows)
  retrain_sets = parse_retrain_sets(config.retrain)
  search_user = [
    *parse_overrides(config.search_scale, 'search_scale'),
    *parse_overrides(config.search_overrides, 'search_overrides'),
  ]
  train_user = [
    *parse_overrides(config.train_scale, 'train_scale'),
    *parse_overrides(config.train_overrides, 'train_overrides'),
  ]
  quick = ',quick' if config.scale == 'quick' else ''
  n = config.seeds
  phases = []
  for row in rows:
    search_dir = files.join(root, 'search', row.name)
    data = _data_fields(config) if row.dataset in SEARCH_TFDS else []
    phases.append(
      Phase(
        'search',
        row,
        search_dir,
        f'configs/search.py:{row.preset}{quick}',
        (('seed', config.seed), ('search.num_seeds', n), *data, *search_user),
      )
    )
    for retrain_set in retrain_sets:
      for k in range(n):
        genotype = files.join(search_setup.seed_dir(search_dir, k, n), 'genotype.json')
        workdir = files.join(root, 'retrain', row.name, retrain_set, f'seed_{k}')
        overrides = (
          ('genotype', genotype),
          ('seed', config.seed + k),
          *_data_fields(config),
          *train_user,
        )
        spec = f'configs/train.py:{retrain_set}{quick}'
        phases.append(Phase('train', row, workdir, spec, overrides, retrain_set, k))
        phases.append(Phase('eval', row, workdir, spec, overrides, retrain_set, k))
  plan = Plan(config, root, rows, retrain_sets, phases)
  for phase in phases:
    if phase.kind != 'eval':
      phase.config()  # an unknown field or a value of the wrong type fails here
  return plan


def _data_fields(config) -> list[tuple[str, Any]]:
  """Where CIFAR is, for the phases that read it (only what differs from the presets)."""
  fields = []
  if config.data.tfds_data_dir:
    fields.append(('data.tfds_data_dir', config.data.tfds_data_dir))
  if config.data.download:
    fields.append(('data.download', True))
  return fields


def check_phases(plan: Plan) -> None:
  """Everything that can refuse a phase before any runs: each config's values, the batches on
  this machine's devices, and the CIFAR data every phase will read (one-line errors)."""
  needed = set()
  for phase in plan.phases:
    if phase.kind == 'search':
      config = phase.config()
      validate_search_config(config)
      search_setup.search_mesh(config)  # the batch, and SGAS's grown batches, on the devices
      if config.data.name in SEARCH_TFDS:
        needed.add(SEARCH_TFDS[config.data.name])
    elif phase.kind == 'train':
      config = phase.config()
      validate_train_config(config)
      parallel.data_mesh(
        config.parallel.num_devices, config.train.batch_size, 'config.train.batch_size'
      )
      needed.add(config.data.name)
  if plan.config.data.download:
    return
  for name in sorted(needed):
    spec = PipelineSpec(
      dataset=name,
      image_size=32,
      batch_size=1,
      seed=0,
      tfds_data_dir=plan.config.data.tfds_data_dir,
    )
    pipeline.check_prepared(spec)


# ---------------------------------------------------------------------------------------------
# Where each phase stands, from its own outputs.

DONE, STARTED, TO_RUN = 'done', 'started', 'to run'


def _last_epoch(directory: str) -> int:
  records = outputs.MetricsLog(directory).read() if files.exists(directory) else []
  return int(records[-1]['epoch']) if records else 0


def search_epochs(config: ml_collections.ConfigDict) -> int:
  return config.search.warmup_epochs + config.search.epochs


def phase_status(phase: Phase) -> str:
  """DONE, STARTED (its workdir holds a run, or a partial eval) or TO_RUN."""
  if not files.exists(phase.workdir):
    return TO_RUN
  config = phase.config()
  if phase.kind == 'eval':
    result = read_eval(phase)
    return DONE if result is not None and result['epoch'] >= config.train.epochs else TO_RUN
  if phase.kind == 'search':
    n = config.search.num_seeds
    seeds = [search_setup.seed_dir(phase.workdir, k, n) for k in range(n)]
    done = all(_last_epoch(d) >= search_epochs(config) for d in seeds)
  else:
    done = _last_epoch(phase.workdir) >= config.train.epochs
  if done:
    return DONE
  return STARTED if files.exists(files.join(phase.workdir, 'config.json')) else TO_RUN


def read_eval(phase: Phase) -> dict[str, Any] | None:
  path = files.join(phase.workdir, EVAL_FILE)
  return files.read_json(path) if files.exists(path) else None


def plan_record(plan: Plan) -> dict[str, Any]:
  """What ROOT/config.json keeps: the reproduction config (a rerun with another is refused)."""
  return to_dict(plan.config)
