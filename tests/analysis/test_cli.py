"""`unreal-nas analyze` and `unreal-nas plot`, in process: JSON lines, figures, one-line errors."""

import json

import numpy as np
import pytest

from tests.testing import run_cli, write_probe_run, write_search_run, write_train_run
from unreal_nas_jax.cli.main import main


def _run(capsys, *args):
  code = main(['unreal-nas', *args])
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def _error(capsys, *args):
  code, out, err = _run(capsys, *args)
  lines = [line for line in err.splitlines() if line.strip()]
  assert code == 2 and len(lines) == 1, (code, err)
  assert lines[0].startswith(f'unreal-nas {args[0]}: error: ')
  return lines[0]


def _curve(score, epochs=60):
  t = np.arange(1, epochs + 1)
  return list(0.95 * (1 - np.exp(-t * np.log(20) / score)))


@pytest.fixture
def probes(tmp_path):
  easy = write_probe_run(tmp_path / 'c10', {'a': _curve(10), 'b': _curve(14)}, 'cifar10')
  hard = write_probe_run(tmp_path / 'rlrn', {'a': _curve(30), 'b': _curve(25)}, 'rlrn')
  return easy, hard


def test_analyze_difficulty(tmp_path, capsys, probes):
  out, json_file = tmp_path / 'd.png', tmp_path / 'd.json'
  code, stdout, _ = _run(
    capsys, 'analyze', 'difficulty', *probes, f'--out={out}', f'--json={json_file}'
  )
  assert code == 0 and out.stat().st_size > 0
  document = json.loads(stdout)
  assert json.loads(json_file.read_text()) == document
  easy, hard = document['datasets']
  assert (easy['dataset'], hard['dataset']) == ('cifar10', 'rlrn')
  assert easy['converged_epoch'] < hard['converged_epoch']
  assert 'through the last epoch' in document['rule']
  # The rule's flags reach the rule: an absolute band of 0.5 is entered much earlier.
  code, stdout, _ = _run(
    capsys, 'analyze', 'difficulty', probes[1], f'--out={out}', '--absolute', '--tolerance=0.5'
  )
  assert json.loads(stdout)['datasets'][0]['converged_epoch'] < hard['converged_epoch']


def test_analyze_rank(tmp_path, capsys, probes):
  csv = tmp_path / 'real.csv'
  csv.write_text('name,top1\na,0.9\nb,0.8\n')
  code, stdout, _ = _run(
    capsys, 'analyze', 'rank', probes[0], str(csv), '--epoch=5', f'--out={tmp_path}/r.svg'
  )
  result = json.loads(stdout)
  assert code == 0 and result['n'] == 2 and result['tau'] == 1.0 and result['epoch'] == 5
  assert set(result) >= {'tau', 'p_value', 'n'}


def test_analyses_without_a_figure_print_their_json_line(tmp_path, capsys, probes):
  # The JSON line is the result; --out only adds the figure.
  code, stdout, err = _run(capsys, 'analyze', 'difficulty', *probes)
  assert code == 0, err
  document = json.loads(stdout)
  assert document['plot'] is None and len(document['datasets']) == 2
  code, stdout, err = _run(capsys, 'analyze', 'rank', probes[0], probes[1], '--epoch=5')
  assert code == 0, err
  result = json.loads(stdout)
  assert result['plot'] is None and result['n'] == 2 and result['tau'] == -1.0
  assert not [p for p in tmp_path.rglob('*') if p.suffix in ('.png', '.svg')]


def test_plot_search_runs_and_sweep(tmp_path, capsys):
  a = write_search_run(tmp_path / 'a', dataset='cifar10', num_classes=10, epochs=3)
  b = write_search_run(tmp_path / 'b', dataset='rlrn', num_classes=100, epochs=3)
  code, stdout, _ = _run(capsys, 'plot', a, b, f'--out={tmp_path}/p.png', '--kind=skip')
  assert code == 0 and [r['label'] for r in json.loads(stdout)['runs']] == ['cifar10', 'rlrn']
  code, stdout, _ = _run(capsys, 'plot', a, b, f'--out={tmp_path}/s.svg', '--kind=sweep')
  assert code == 0 and [p['num_classes'] for p in json.loads(stdout)['points']] == [10, 100]
  t = write_train_run(tmp_path / 't', b, (0.5, 0.8))
  code, stdout, _ = _run(
    capsys, 'plot', t, f'--out={tmp_path}/s.svg', '--kind=sweep', '--metric=eval_top1'
  )
  assert code == 0 and json.loads(stdout)['points'][0] == {
    'num_classes': 100, 'value': 0.8, 'label': 'cifar10'
  }  # fmt: skip


def test_errors_are_one_line(tmp_path, capsys, probes):
  (tmp_path / 'empty').mkdir()
  line = _error(capsys, 'analyze', 'difficulty', str(tmp_path / 'empty'), f'--out={tmp_path}/d.png')
  assert 'is not a run: it has no config.json' in line
  line = _error(capsys, 'plot', str(tmp_path / 'nope'), f'--out={tmp_path}/p.png')
  assert 'no such directory' in line
  line = _error(capsys, 'plot', probes[0], f'--out={tmp_path}/p.png')
  assert 'is a probe run, not a search or training run' in line
  other = write_probe_run(tmp_path / 'other', {'a': [0.1, 0.2], 'c': [0.3, 0.4]})
  line = _error(capsys, 'analyze', 'rank', probes[0], other, f'--out={tmp_path}/r.png')
  assert 'the architecture lists differ' in line and 'missing from' in line
  assert 'other: b' in line and 'c10: c' in line
  search = write_search_run(tmp_path / 's', epochs=1)  # warm-up only: no val_acc yet
  line = _error(capsys, 'plot', search, f'--out={tmp_path}/s.png', '--kind=sweep')
  assert "empty sweep: 1 run(s) given, none has a value of 'val_acc'" in line
  line = _error(capsys, 'plot', f'--out={tmp_path}/s.png', '--kind=sweep')
  assert 'empty sweep: no workdirs given' in line
  line = _error(capsys, 'plot', search, f'--out={tmp_path}/s.jpg')
  assert 'is not allowed; allowed: a file ending in .png, .svg' in line
  line = _error(capsys, 'analyze', 'rank', probes[0], f'--out={tmp_path}/r.png')
  assert 'takes two inputs' in line
  line = _error(capsys, 'analyze', 'speed', f'--out={tmp_path}/r.png')
  assert "needs an analysis, got 'speed'; allowed: difficulty, rank" in line
  line = _error(capsys, 'analyze', 'rank', probes[0], probes[1], '--out=r.png', '--epoch=0')
  assert 'epoch' in line
  line = _error(capsys, 'analyze', 'difficulty', search, f'--out={tmp_path}/d.png', '--smoothing=4')
  assert 'smoothing=4 is not allowed' in line
  assert not list(tmp_path.glob('*.png')) and not list(tmp_path.glob('*.jpg'))


def test_as_a_subprocess(tmp_path):
  # `python -m unreal_nas_jax.cli.main` runs main() from a second copy of cli/main.py.
  result = run_cli('plot', str(tmp_path / 'nope'), f'--out={tmp_path}/p.png', timeout=120)
  assert result.returncode == 2 and result.stderr.strip().count('\n') == 0, result.stderr
  assert 'unreal-nas plot: error:' in result.stderr and 'no such directory' in result.stderr
  result = run_cli('analyze', '--help', timeout=120)
  assert result.returncode == 0 and 'analyze rank DIR_A' in result.stdout
