"""The reproduction's table (`ROOT/table.json`, `ROOT/table.md`), read back from the runs' own
outputs, beside the paper's published figures (`paper_table.TABLE_2`).

A row is in the table once all of its phases have finished; until then it is listed as not
finished. For each row: the searched cells (each seed's genotype.json), the parameters of the
retrained network (of the first retraining set, as configured: at the paper scale the paper's
C=36, 20-cell CIFAR network; auxiliary head excluded, as the paper counts), the search time
measured (the sum of the epochs' `wall_s` in metrics.jsonl: the N-seed search's steps, without
compilation; a resumed epoch counts only the steps after the resume), and for each retraining
set the test error of every seed's cell, 100 * (1 - top1) of its eval.json, with the best and
the mean ± sample standard deviation over the seeds.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
from typing import Any

import jax
import jax.numpy as jnp

from unreal_nas_jax import files
from unreal_nas_jax.data.datasets import DATASETS
from unreal_nas_jax.models import eval_network
from unreal_nas_jax.reproduce import paper_table
from unreal_nas_jax.reproduce import plan as plan_lib
from unreal_nas_jax.reproduce.estimate import format_duration
from unreal_nas_jax.search import setup as search_setup
from unreal_nas_jax.space import genotypes
from unreal_nas_jax.train import outputs

TABLE_JSON, TABLE_MD = 'table.json', 'table.md'
SCALE_NOTES = {
  'quick': 'quick scale: CPU-sized runs that show the pipeline working end to end; their '
  "numbers say nothing about the paper's.",
  'paper': "paper scale: the paper's search and retraining settings.",
}
SET_TITLES = {'cifar10': 'CIFAR-10', 'cifar100': 'CIFAR-100'}


@functools.cache
def network_params(
  genotype: genotypes.Genotype, num_classes: int, channels: int, layers: int, image_size: int
) -> int:
  """Parameters of the CIFAR network of `genotype` (auxiliary head excluded)."""
  model = eval_network.NetworkCIFAR(
    genotype, num_classes=num_classes, channels=channels, layers=layers, auxiliary=False
  )
  rngs = {'params': jax.random.PRNGKey(0), 'drop_path': jax.random.PRNGKey(0)}
  images = jnp.zeros((2, image_size, image_size, 3), jnp.float32)
  shapes = jax.eval_shape(lambda: model.init(rngs, images, 0.0, train=True))
  return eval_network.count_params(shapes['params'])


def summarize(errors: list[float]) -> dict[str, Any]:
  """Best, mean and sample standard deviation (None for one value) of test errors."""
  return {
    'n': len(errors),
    'best': min(errors),
    'mean': statistics.fmean(errors),
    'std': statistics.stdev(errors) if len(errors) > 1 else None,
  }


def _row_record(plan: plan_lib.Plan, row: plan_lib.Row) -> dict[str, Any]:
  search = plan.search_phase(row)
  config = search.config()
  n = config.search.num_seeds
  seed_dirs = [search_setup.seed_dir(search.workdir, k, n) for k in range(n)]
  evals = {(p.retrain_set, p.seed_index): p for p in plan.row_phases(row) if p.kind == 'eval'}
  first_set = plan.retrain_sets[0]
  seeds = []
  for k, directory in enumerate(seed_dirs):
    genotype_file = files.join(directory, 'genotype.json')
    genotype = genotypes.load_genotype(genotype_file)
    train = evals[(first_set, k)].config()
    entry = {
      'seed': config.seed + k,
      'genotype_file': genotype_file,
      'genotype': genotypes.genotype_to_json(genotype),
      'params': network_params(
        genotype,
        DATASETS[first_set].num_classes,
        train.model.channels,
        train.model.layers,
        train.data.image_size,
      ),
      'test_error': {},
      'eval': {},
    }
    for retrain_set in plan.retrain_sets:
      phase = evals[(retrain_set, k)]
      result = plan_lib.read_eval(phase)
      entry['eval'][retrain_set] = {
        'file': files.join(phase.workdir, plan_lib.EVAL_FILE),
        **{key: result[key] for key in ('top1', 'top5', 'loss', 'examples', 'epoch')},
      }
      entry['test_error'][retrain_set] = 100 * (1 - result['top1'])
    seeds.append(entry)
  epochs = outputs.MetricsLog(seed_dirs[0]).read()
  published = paper_table.TABLE_2.get(row.name)
  return {
    'row': row.name,
    'method': row.method,
    'dataset': row.dataset,
    'search_workdir': search.workdir,
    'seeds': seeds,
    'params_mean': statistics.fmean(s['params'] for s in seeds),
    'params_network': f'{first_set} network as retrained',
    'search_seconds': sum(r['wall_s'] for r in epochs),
    'search_seconds_per_seed': sum(r['wall_s'] for r in epochs) / n,
    'test_error': {
      retrain_set: summarize([s['test_error'][retrain_set] for s in seeds])
      for retrain_set in plan.retrain_sets
    },
    'published': None if published is None else _published_record(published),
  }


def _published_record(row: paper_table.PublishedRow) -> dict[str, Any]:
  return {
    'paper_row': row.paper_row,
    'test_error': {name: vars(figure) for name, figure in row.test_error.items()},
    'params_m': row.params_m,
    'search_gpu_days': row.search_gpu_days,
    'search_data': row.search_data,
    'search_label': row.search_label,
    'note': row.note,
  }


def build_table(plan: plan_lib.Plan) -> dict[str, Any]:
  """The table of every finished row, and the names of the rows not finished."""
  finished, pending = [], []
  for row in plan.rows:
    if all(plan_lib.phase_status(p) == plan_lib.DONE for p in plan.row_phases(row)):
      finished.append(_row_record(plan, row))
    else:
      pending.append(row.name)
  return {
    'scale': plan.config.scale,
    'note': SCALE_NOTES[plan.config.scale],
    'retrain_sets': list(plan.retrain_sets),
    'seeds': plan.config.seeds,
    'published_source': paper_table.SOURCE,
    'rows': finished,
    'not_finished': pending,
  }


def _error_text(summary: dict[str, Any]) -> str:
  if summary['std'] is None:
    return f'{summary["best"]:.2f}'
  return f'{summary["best"]:.2f} ({summary["mean"]:.2f} ± {summary["std"]:.2f})'


def render_markdown(table: dict[str, Any], root: str) -> str:
  """table.md: the rows beside the paper's figures, the cells' files, the notes."""
  sets = table['retrain_sets']
  header = ['row', 'seeds']
  for name in sets:
    header += [f'{SET_TITLES[name]} test err. (%)', 'paper']
  header += ['params (M)', 'paper', 'search time per seed', 'paper (GPU-days)']
  lines = [
    f'# UnrealNAS Table 2, reproduced ({table["scale"]} scale)',
    '',
    table['note'],
    '',
    "Test error: best (mean ± std) over the seeds, each seed's searched cell retrained once; "
    f'"paper": {table["published_source"]}.',
    '',
    '| ' + ' | '.join(header) + ' |',
    '|' + '---|' * len(header),
  ]
  for row in table['rows']:
    published = row['published'] or {}
    cells = [row['row'], str(len(row['seeds']))]
    for name in sets:
      paper = published.get('test_error', {}).get(name)
      cells += [_error_text(row['test_error'][name]), paper['text'] if paper else '-']
    cells += [
      f'{row["params_mean"] / 1e6:.3f}',
      _or_dash(published.get('params_m')),
      format_duration(row['search_seconds_per_seed']),
      _or_dash(published.get('search_gpu_days')),
    ]
    lines.append('| ' + ' | '.join(cells) + ' |')
  if not table['rows']:
    lines.append('| (no row has finished yet) |' + ' |' * (len(header) - 1))
  lines.append('')
  if table['not_finished']:
    lines += [f'Not finished yet: {", ".join(table["not_finished"])}.', '']
  if table['rows']:
    lines.append("Searched cells (genotype files, relative to the reproduction's workdir):")
    for row in table['rows']:
      paths = [_relative(s['genotype_file'], root) for s in row['seeds']]
      lines.append(f'- {row["row"]}: {", ".join(paths)}')
    lines.append('')
  notes = [
    f'- {row["row"]} ({row["published"]["paper_row"]} in the paper): {row["published"]["note"]}'
    for row in table['rows']
    if row['published'] and row['published']['note']
  ]
  params = 'params: the retrained network of the first retraining set (auxiliary head excluded)'
  search = 'search time: the epochs of the N-seed search (metrics.jsonl wall_s) divided by N'
  lines += ['Notes:', f'- {params}; {search}.', *notes, '']
  return '\n'.join(lines)


def _or_dash(value) -> str:
  return '-' if value is None else str(value)


def _relative(path: str, root: str) -> str:
  if files.is_remote(path):
    return path
  return os.path.relpath(path, root)


def write_table(plan: plan_lib.Plan) -> tuple[dict[str, Any], str]:
  """Builds the table and writes table.json and table.md in the root (process 0)."""
  table = build_table(plan)
  text = render_markdown(table, plan.root)
  if outputs.is_writer():
    files.write_json_atomic(files.join(plan.root, TABLE_JSON), table, indent=1)
    files.write_text_atomic(files.join(plan.root, TABLE_MD), text)
  return table, text


def read_table(root: str) -> dict[str, Any]:
  return json.loads(files.read_text(files.join(root, TABLE_JSON)))
