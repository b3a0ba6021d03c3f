"""The package's layers: no module imports from a layer above its own (README, Layout)."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'unreal_nas_jax'

# Bottom to top; a module may import from its own layer and the layers below. Keep in step with
# the README's Layout section.
LAYERS = (
  ('base', ('checkpointing', 'config_utils', 'files', 'optim', 'parallel', 'timing')),
  ('space, ops', ('space', 'ops')),
  ('data', ('data',)),
  ('models', ('models',)),
  ('search', ('search',)),
  # The analyses share the loops' layer: the loops write TensorBoard events and probe records
  # with analysis/ helpers, and analysis/ reads what the loops write.
  ('train, analysis', ('train', 'analysis')),
  ('commands', ('bench', 'cli', 'reproduce', 'torch_reference')),
)
LAYER_OF = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
  """'unreal_nas_jax.search.darts' -> 'search'."""
  return module.split('.')[1]


def _modules():
  return sorted(p for p in PACKAGE.rglob('*.py') if p.name != '__init__.py')


def _imports(path: pathlib.Path):
  """Every unreal_nas_jax module `path` imports, function-level imports included."""
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names = [f'{node.module}.{alias.name}' for alias in node.names]
      if node.module == 'unreal_nas_jax':  # `from unreal_nas_jax import timing`
        names = [f'unreal_nas_jax.{alias.name}' for alias in node.names]
    else:
      continue
    yield from (n for n in names if n.startswith('unreal_nas_jax.'))


def test_every_module_has_a_layer():
  units = {p.relative_to(PACKAGE).parts[0].removesuffix('.py') for p in _modules()}
  assert units == set(LAYER_OF), 'a package module is missing from LAYERS (or LAYERS is stale)'


@pytest.mark.parametrize('path', _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
  own = LAYER_OF[path.relative_to(PACKAGE).parts[0].removesuffix('.py')]
  upward = [m for m in _imports(path) if LAYER_OF[_unit(m)] > own]
  assert not upward, f'{path.name} ({LAYERS[own][0]}) imports from a layer above: {upward}'


def test_readme_layout_names_every_module():
  layout = (PACKAGE.parent / 'README.md').read_text().split('## Layout', 1)[1].split('\n## ', 1)[0]
  missing = [str(p.relative_to(PACKAGE)) for p in _modules() if p.stem not in layout]
  assert not missing, f'README Layout does not mention: {missing}'
