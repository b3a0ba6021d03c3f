"""Where a cell to retrain comes from, and `unreal-nas genotype`."""

import json

import pytest

from tests.testing import run_cli
from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.space import genotypes, published
from unreal_nas_jax.train.genotype_source import resolve_genotype


def test_published_name_and_genotype_file(tmp_path):
  genotype, source = resolve_genotype('PC_DARTS_cifar')
  assert (
    genotype == published.get_genotype('PC_DARTS_cifar') and source == 'published PC_DARTS_cifar'
  )
  path = tmp_path / 'cell.json'
  genotypes.save_genotype(path, genotype)
  assert resolve_genotype(str(path)) == (genotype, f'file {path}')


@pytest.mark.parametrize(
  'content, message',
  [
    ('{"normal": [', 'not valid JSON'),
    ('{"normal": [["sep_conv_3x3", 0]]}', 'normal'),
  ],
)
def test_malformed_genotype_file_is_one_line_naming_the_problem(tmp_path, content, message):
  path = tmp_path / 'bad.json'
  path.write_text(content)
  with pytest.raises(ConfigError, match=message) as err:
    resolve_genotype(str(path))
  assert '\n' not in str(err.value) and str(path) in str(err.value)


def test_unknown_name_lists_the_known_ones_and_missing_paths_are_named(tmp_path):
  with pytest.raises(ConfigError, match="unknown genotype 'DARTS_V3'; known: NASNet, AmoebaNet"):
    resolve_genotype('DARTS_V3')
  with pytest.raises(ConfigError, match='does not exist'):
    resolve_genotype(str(tmp_path / 'nope.json'))
  with pytest.raises(ConfigError, match='holds no search checkpoint'):
    resolve_genotype(str(tmp_path))


def test_cli_genotype_json_and_plot(tmp_path):
  plot = tmp_path / 'cells.svg'
  done = run_cli('genotype', 'DARTS_V2', '--json', f'--plot={plot}')
  assert done.returncode == 0, done.stderr
  record = json.loads(done.stdout.strip().splitlines()[-1])
  assert record['params'] == {'cifar10': 3_349_342, 'cifar100': 3_401_272, 'imagenet': 4_718_752}
  assert set(record['madds']) == {'cifar10', 'cifar100', 'imagenet'}
  assert record['genotype'] == genotypes.genotype_to_json(published.get_genotype('DARTS_V2'))
  assert plot.read_text().lstrip().startswith('<?xml') and 'sep_conv_3x3' in plot.read_text()
  bad = run_cli('genotype', 'DARTS_V2', f'--plot={tmp_path / "cells.gif"}')
  assert bad.returncode == 2 and "cells.gif' is not allowed" in bad.stderr.strip().splitlines()[-1]
  none = run_cli('genotype')
  assert none.returncode == 2 and 'takes one cell, got 0' in none.stderr
