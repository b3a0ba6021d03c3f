"""`unreal-nas reproduce`: the plan, its estimate, a tiny reproduction end to end (interrupted and
resumed, its table read back from the runs' own outputs), and bad input."""

import json
import math
import os

import pytest
import tensorflow_datasets as tfds

from tests.testing import CACHE_DIR, run_cli
from unreal_nas_jax import targets
from unreal_nas_jax.cli.main import main
from unreal_nas_jax.config_utils import load_config
from unreal_nas_jax.reproduce import estimate, runner, table
from unreal_nas_jax.reproduce import plan as plan_lib
from unreal_nas_jax.train import records
from unreal_nas_jax.train.run import Preempted

PAPER_ROWS = ['darts_rlrd', 'darts_rlgd', 'darts_rlrn', 'darts_cifar10', 'sgas_rlgd']
# The quick scale made tiny: 2 seeds, one retraining set, networks that compile in seconds.
TINY = (
  '--config=configs/reproduce.py:quick',
  '--config.seeds=2',
  '--config.retrain=cifar10',
  '--config.search_overrides=data.num_examples=32,data.num_classes=10,model.steps=2,'
  'model.multiplier=2,search.batch_size=8,search.epochs=2,log.progress=none',
  '--config.train_overrides=train.batch_size=8,data.num_train_examples=16,'
  'data.num_eval_examples=8,log.progress=none',
  f'--compile_cache={CACHE_DIR}',
)


def _main(capsys, monkeypatch, *args):
  """`unreal-nas reproduce ARGS` in this process; returns (exit status, stdout, stderr lines)."""
  argv = ['unreal-nas', 'reproduce', *args]
  monkeypatch.setattr('sys.argv', argv)  # ml_collections reads --config.x overrides from it
  status = main(argv)
  out, err = capsys.readouterr()
  return status, out, [line for line in err.splitlines() if line.strip()]


def _paper_plan(root, **fields):
  config = load_config('configs/reproduce.py:paper')
  for key, value in fields.items():
    config[key] = value
  return plan_lib.make_plan(config, str(root))


def test_the_default_plan_lists_every_phase_and_command(tmp_path, capsys, monkeypatch):
  root = tmp_path / 'table2'
  plan = _paper_plan(root)
  assert [r.name for r in plan.rows] == PAPER_ROWS and plan.retrain_sets == ['cifar10', 'cifar100']
  # Per row: its 3-seed search, then each seed's cell retrained and evaluated on each set.
  assert len(plan.phases) == 5 * (1 + 2 * 3 * 2)
  first = plan.phases[:13]
  assert [p.kind for p in first] == ['search'] + ['train', 'eval'] * 6
  assert [(p.retrain_set, p.seed_index) for p in first[1::2]] == [
    ('cifar10', 0), ('cifar10', 1), ('cifar10', 2), ('cifar100', 0), ('cifar100', 1),
    ('cifar100', 2),
  ]  # fmt: skip
  assert first[0].command() == (
    'unreal-nas search --config=configs/search.py:rlrd --config.seed=0 '
    f'--config.search.num_seeds=3 --workdir={root}/search/darts_rlrd'
  )
  assert first[3].command() == (
    'unreal-nas train --config=configs/train.py:cifar10 '
    f'--config.genotype={root}/search/darts_rlrd/seed_1/genotype.json --config.seed=1 '
    f'--workdir={root}/retrain/darts_rlrd/cifar10/seed_1'
  )
  assert first[4].command() == (
    f'unreal-nas eval --workdir={root}/retrain/darts_rlrd/cifar10/seed_1 > '
    f'{root}/retrain/darts_rlrd/cifar10/seed_1/eval.json'
  )
  searches = [p for p in plan.phases if p.kind == 'search']
  assert [p.spec for p in searches] == [
    'configs/search.py:rlrd', 'configs/search.py:rlgd', 'configs/search.py:rlrn',
    'configs/search.py:cifar10', 'configs/search.py:rlgd,sgas',
  ]  # fmt: skip
  sgas = searches[-1].config()
  assert sgas.search.method == 'sgas' and sgas.search.num_seeds == 3 and sgas.data.name == 'rlgd'

  status, out, err = _main(capsys, monkeypatch, f'--workdir={root}', '--plan', '--noestimate')
  assert status == 0, err
  for phase in plan.phases:
    assert phase.command() in out
  assert out.count(' to run') == 65 and not root.exists()


def _stub_step_times(calls):
  """Step times as `program_step_time` gives them: measured here (search 1 s, retraining 0.3
  s, compile 10 s, start-up 5 s), or for a target (search bound 1 s; the retraining step does
  not fit, so no bound)."""

  def step_time(program, config, steps, target):
    calls.append((program, config))
    ms = {'search': 1000.0, 'train': 300.0}[program]
    if target is None:
      return estimate.StepTime(ms, 10.0, estimate.MEASURED, '1 x cpu (cpu)', startup_s=5.0)
    if program == 'train':
      return estimate.StepTime(None, 10.0, estimate.BOUND, target.spec, fits=False,
                               peak_memory_gb=99.0)  # fmt: skip
    return estimate.StepTime(ms, 10.0, estimate.BOUND, target.spec, fits=True, peak_memory_gb=1.5)

  return step_time


def test_the_estimate_times_each_program_once(tmp_path):
  calls = []
  estimator = estimate.Estimator(3, step_time=_stub_step_times(calls))
  plan = _paper_plan(tmp_path)
  seconds = [estimator.phase_seconds(p) for p in plan.phases]
  # DARTS on four datasets is one program, SGAS another, and every retraining one more.
  assert [program for program, _ in calls] == ['search', 'train', 'search']
  assert calls[0][1].search.num_seeds == 1  # on a CPU the 3 seeds run the single-seed step
  search, train, evaluation = seconds[:3]
  assert search == pytest.approx(55 * (25_000 // 64) * 1.0 * 3 + 10.0 + 5.0)
  evals_per_run = math.ceil(10_000 / 96) * 0.3 / 3  # batches at a third of a training step
  assert evaluation == pytest.approx(evals_per_run)
  assert train == pytest.approx(500 * (50_000 // 96) * 0.3 + 500 * evals_per_run + 10.0 + 5.0)
  # SGAS grows its batch 64 -> 128: each batch's steps cost in proportion, one compile each.
  sgas = plan.search_phase(plan_lib.Row('sgas', 'rlgd'))
  schedule = estimate.search_schedule(sgas.config())
  expected = sum(schedule.steps_per_epoch(e) * schedule.batch_size(e) / 64 for e in range(55))
  assert estimator.phase_seconds(sgas) == pytest.approx(expected * 3 + 10.0 * 9 + 5.0)


def test_the_plan_for_a_target_uses_its_bounds(tmp_path, capsys, monkeypatch):
  calls = []
  monkeypatch.setattr(estimate, 'program_step_time', _stub_step_times(calls))
  monkeypatch.setattr(
    estimate, 'load_target', lambda spec: estimate.Target(spec, targets.parse_target(spec))
  )
  root = tmp_path / 'r'
  status, out, err = _main(
    capsys, monkeypatch, f'--workdir={root}', '--plan', '--target=tpu:v5e',
    '--config.rows=darts_rlrn,darts_rlgd', '--config.retrain=cifar100',
  )  # fmt: skip
  assert status == 0, err
  # On an accelerator the N seeds are one vmapped program, timed as such.
  assert [c.search.num_seeds for p, c in calls if p == 'search'] == [3]
  assert calls[0][1].search.seeds_program == 'vmap'
  assert 'roofline lower bounds for tpu:v5e' in out
  lines = {line.split(maxsplit=1)[1].rsplit('  ', 2)[0].strip(): line for line in out.splitlines()
           if line[:3].strip().isdigit()}  # fmt: skip
  search_s = 55 * (25_000 // 64) * 1.0 + 10.0  # one program for the 3 seeds, no start-up
  assert lines['search darts_rlrn'].split()[-4:] == [
    *estimate.format_duration(search_s).split(),
    'to',
    'run',
  ]
  # The retraining program does not fit the target: no bound, said so, left out of the total.
  assert lines['train darts_rlgd seed 2 on cifar100'].split()[-3:] == ['-', 'to', 'run']
  assert 'no bound (roofline bound), compile 10 s, does NOT fit in memory, peak 99.0 GB' in out
  total = 2 * search_s
  assert f'total device time: {estimate.format_duration(total)} (searches' in out
  assert 'without the 12 phases that have no bound' in out
  assert not root.exists()


def _read_eval(path):
  return json.loads(open(path).read())


def _without_paths_and_times(row):
  """A table row without what differs between two identical runs: paths and timings."""
  row = {k: v for k, v in row.items() if not k.startswith('search_')}
  row['seeds'] = [
    {k: v for k, v in s.items() if k not in ('genotype_file', 'eval')} for s in row['seeds']
  ]
  return row


def test_a_quick_reproduction_interrupted_resumed_and_read_back(tmp_path, capsys, monkeypatch):
  split, whole = tmp_path / 'split', tmp_path / 'whole'
  rows = '--config.rows=darts_rlrn,darts_rlrd'
  original = records.search_record

  def interrupted(setup, epoch, *args, **kwargs):
    if setup.config.data.name == 'rlrd' and epoch == 1:
      raise KeyboardInterrupt  # in the second row's search, before its last checkpoint
    return original(setup, epoch, *args, **kwargs)

  with tfds.testing.mock_data(num_examples=32):
    monkeypatch.setattr(records, 'search_record', interrupted)
    status, _, err = _main(capsys, monkeypatch, *TINY, rows, f'--workdir={split}')
    assert status == 130 and 'rerun the same command to resume' in err[-1]
    monkeypatch.setattr(records, 'search_record', original)

    status, out, err = _main(capsys, monkeypatch, f'--workdir={split}', '--table-only')
    assert status == 0, err
    partial = table.read_table(str(split))
    assert [r['row'] for r in partial['rows']] == ['darts_rlrn']
    assert partial['not_finished'] == ['darts_rlrd'] and 'Not finished yet: darts_rlrd.' in out
    assert '| darts_rlrn | 2 |' in out and '| darts_rlrd |' not in out

    status, out, err = _main(capsys, monkeypatch, *TINY, rows, f'--workdir={split}')
    assert status == 0, err
    assert 'phase 1/10 (search darts_rlrn)] finished before; skipped' in out
    assert 'phase 6/10 (search darts_rlrd)] resuming' in out
    # The interrupted row against the same row run without interruption.
    status, _, err = _main(
      capsys, monkeypatch, *TINY, '--config.rows=darts_rlrd', f'--workdir={whole}'
    )
    assert status == 0, err

  finished = table.read_table(str(split))
  assert [r['row'] for r in finished['rows']] == ['darts_rlrn', 'darts_rlrd']
  assert finished['rows'][0] == partial['rows'][0]  # nothing finished was redone
  reference = table.read_table(str(whole))['rows'][0]
  assert _without_paths_and_times(finished['rows'][1]) == _without_paths_and_times(reference)

  # Every figure is the runs' own: eval.json's top-1 and metrics.jsonl's epoch times.
  for row in finished['rows']:
    errors = []
    for k, seed in enumerate(row['seeds']):
      workdir = split / 'retrain' / row['row'] / 'cifar10' / f'seed_{k}'
      result = _read_eval(workdir / 'eval.json')
      assert seed['eval']['cifar10']['top1'] == result['top1'] and result['epoch'] == 1
      assert seed['test_error']['cifar10'] == 100 * (1 - result['top1'])
      assert seed['genotype'] == json.loads((workdir / 'genotype.json').read_text())
      errors.append(100 * (1 - result['top1']))
    summary = row['test_error']['cifar10']
    assert summary['best'] == min(errors) and summary['mean'] == pytest.approx(sum(errors) / 2)
    metrics = split / 'search' / row['row'] / 'seed_0' / 'metrics.jsonl'
    wall = [json.loads(line)['wall_s'] for line in metrics.read_text().splitlines()]
    assert row['search_seconds'] == sum(wall) and len(wall) == 2
  assert (split / 'table.md').read_text().count('| darts_') == 2


def test_a_failed_phase_stops_with_one_line_naming_its_workdir_and_log(tmp_path):
  plan = _paper_plan(tmp_path, rows='darts_rlrn', retrain='cifar10', seeds=1)
  statuses = [plan_lib.phase_status(p) for p in plan.phases]
  ran = []

  def run(phase):
    ran.append(phase.name)
    if phase.kind == 'train':
      raise RuntimeError('the device fell over\nsecond line')

  with pytest.raises(runner.PhaseFailed) as failure:
    runner.run_phases(plan, statuses, run=run)
  log = runner.log_path(str(tmp_path), 2, plan.phases[1])
  assert str(failure.value) == (
    'phase 2/3 (train darts_rlrn seed 0 on cifar10) failed: the device fell over; workdir '
    f'{plan.phases[1].workdir}, log {log}'
  )
  assert failure.value.exit_code == 1 and ran == ['search darts_rlrn', plan.phases[1].name]
  assert 'RuntimeError: the device fell over' in open(log).read()

  def preempted(phase):
    raise Preempted('stopped by SIGTERM at step 3/9 of epoch 1; ...', 15)

  with pytest.raises(Preempted) as stop:
    runner.run_phases(plan, statuses, run=preempted)
  assert stop.value.exit_code == 143
  assert str(stop.value).startswith('phase 1/3 (search darts_rlrn): stopped by SIGTERM')


def _write_plan(root, **fields):
  config = load_config('configs/reproduce.py:paper')
  for key, value in fields.items():
    config[key] = value
  root.mkdir()
  (root / 'config.json').write_text(json.dumps(config.to_dict()))


@pytest.mark.parametrize(
  'flags,expected',
  [
    (('--config.rows=darts_rlrn,darts_nope',), "unknown row 'darts_nope'; allowed: <method>_<"),
    (('--config.retrain=cifar10,svhn',), "unknown retraining set 'svhn'; allowed: cifar10"),
    (('--config.seeds=0',), 'config.seeds=0 is not allowed; allowed: an integer >= 1'),
    (('--config.search_overrides=model.nope=1',), 'model.nope is not a field of the search'),
    (('--config.train_overrides=train.epochs=x',), "train.epochs='x' is not allowed"),
    (('--config.search_overrides=seed=3',), 'seed is set by the reproduction'),
    (
      ('--config.rows=darts_rlrn', '--config.search_overrides=parallel.num_devices=2'),
      'config.parallel.num_devices=2 is not allowed; this machine has 1 cpu',
    ),
    (
      ('--config.rows=darts_rlrn', '--config.retrain=cifar100', '--config.data.tfds_data_dir=EMPTY'),
      'cifar100 is not prepared in EMPTY (AssertionError); prepare it once with network '
      '(`tfds build cifar100 --data_dir=EMPTY`',
    ),
    (('--config.rows=darts_rlrn', '--config.retrain=cifar100', 'OTHER_PLAN'), 'holds a run with a '
     "different config: retrain (saved 'cifar10,cifar100', now 'cifar100')"),
    (('--table-only',), 'holds no reproduction (no config.json)'),
    (('--plan', '--target=tpu:v9'), "--target='tpu:v9': unknown tpu 'v9'; allowed: tpu:<chip>"),
    (('--target=tpu:v5e',), '--target=tpu:v5e is for --plan'),
  ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
  flags, expected, tmp_path, capsys, monkeypatch
):
  root = tmp_path / 'root'
  empty = tmp_path / 'empty_tfds'
  empty.mkdir()
  if 'OTHER_PLAN' in flags:
    _write_plan(root)
  before = sorted(os.listdir(root)) if root.exists() else None
  flags = [f.replace('EMPTY', str(empty)) for f in flags if f != 'OTHER_PLAN']
  status, _, err = _main(capsys, monkeypatch, *flags, f'--workdir={root}')
  assert status == 2 and len(err) == 1, err
  assert err[0].startswith('unreal-nas reproduce: error: ')
  assert expected.replace('EMPTY', str(empty)) in err[0]
  assert (sorted(os.listdir(root)) if root.exists() else None) == before


def test_the_command_line_refuses_an_unknown_row(tmp_path):
  done = run_cli('reproduce', '--config=quick', '--config.rows=darts_rlrn,magic_rlrn',
                 f'--workdir={tmp_path / "r"}', '--plan')  # fmt: skip
  assert done.returncode == 2 and done.stdout == ''
  assert done.stderr.strip() == (
    "unreal-nas reproduce: error: config.rows: unknown row 'magic_rlrn'; allowed: "
    '<method>_<dataset> with method darts, sgas, pc_darts and dataset rlrn, rlgd, rlrd, cifar10, '
    'cifar100 (e.g. darts_rlrn, sgas_rlgd)'
  )
  assert not (tmp_path / 'r').exists()


def test_fast_compile_adds_only_the_missing_xla_flags(monkeypatch):
  from unreal_nas_jax.cli import reproduce

  monkeypatch.setenv('XLA_FLAGS', '--xla_backend_optimization_level=2 --xla_foo=1')
  reproduce.add_xla_flags(reproduce.FAST_COMPILE_FLAGS)
  # A level the user set is kept; the other flag is added once.
  assert os.environ['XLA_FLAGS'] == (
    '--xla_backend_optimization_level=2 --xla_foo=1 --xla_llvm_disable_expensive_passes=true'
  )
  reproduce.add_xla_flags(reproduce.FAST_COMPILE_FLAGS)
  assert os.environ['XLA_FLAGS'].count('expensive_passes') == 1
