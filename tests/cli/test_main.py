"""Bad input on the command line: one line on stderr, exit status 2, nothing written."""

import pytest

from tests.testing import CACHE_DIR, TINY_FLAGS, run_cli
from unreal_nas_jax.cli.main import main


def _error_line(result):
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1, result.stderr
  return lines[0]


def _main_in_process(capsys, monkeypatch, *args):
  """`unreal-nas ARGS` in this process (ml_collections reads --config.x overrides from sys.argv);
  returns (exit status, the stderr lines)."""
  argv = ['unreal-nas', *args]
  monkeypatch.setattr('sys.argv', argv)
  status = main(argv)
  return status, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize(
  'flags,expected',
  [
    (('--config=configs/search.py:nope',), "unknown search preset 'nope'; allowed: rlrn"),
    (('--config=configs/search.py:rlrn,fast',), "unknown config modifier 'fast'"),
    (('--config.data.num_classes=1',), 'config.data.num_classes=1 is not allowed'),
    (('--config.search.order=3',), 'config.search.order=3 is not allowed; allowed: 1, 2'),
    (('--config.data.nope=1',), 'nope'),
    (('--config.search.batch_size=abc',), 'batch_size'),
    (('--config.parallel.num_devices=3',), 'config.parallel.num_devices=3 is not allowed'),
    (('--config.model.depthwise_impl=magic',), "config.model.depthwise_impl='magic'"),
    (
      ('--config.parallel.xla_optimization_level=O4',),
      "config.parallel.xla_optimization_level='O4' is not allowed; allowed: default, O0, O1, O2, O3",
    ),
  ],
)
def test_bad_flags_fail_with_one_line(tmp_path, capsys, monkeypatch, flags, expected):
  workdir = tmp_path / 'run'
  status, lines = _main_in_process(
    capsys, monkeypatch, 'search', *TINY_FLAGS, *flags, f'--workdir={workdir}',
    f'--compile_cache={CACHE_DIR}',
  )  # fmt: skip
  assert status == 2 and len(lines) == 1, lines
  assert lines[0].startswith('unreal-nas search: error:')
  assert expected in lines[0]
  assert not workdir.exists()


def test_unknown_command_and_usage():
  result = run_cli('serach', timeout=60)
  assert result.returncode == 2 and "unknown command 'serach'" in _error_line(result)
  result = run_cli('--help', timeout=60)
  assert result.returncode == 0 and 'search' in result.stdout and 'bench' in result.stdout


def test_search_help_lists_flags():
  result = run_cli('search', '--help', timeout=60)
  assert result.returncode == 0
  assert '--workdir' in result.stdout and '--config' in result.stdout


def test_missing_workdir_flag():
  result = run_cli('search', '--config=configs/search.py:rlrn', timeout=60)
  assert result.returncode == 2 and 'workdir' in _error_line(result)
