"""The package's layers: no module imports from a layer above its own (README, Layout)."""

import ast
import graphlib
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'unreal_nas_jax'

# Bottom to top; a module may import from its own layer and the layers below. Keep in step with
# the README's Layout section.
LAYERS = (
  ('base', ('checkpointing', 'config_utils', 'files', 'optim', 'parallel', 'targets', 'timing')),
  ('space, ops', ('space', 'ops')),
  ('data', ('data',)),
  ('models', ('models',)),
  ('search', ('search',)),
  ('train', ('train',)),
  # The analyses read what the loops write (train/probe_format.py, train/tensorboard.py).
  ('analysis', ('analysis',)),
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


def _module_name(path: pathlib.Path) -> str:
  return '.'.join(('unreal_nas_jax', *path.relative_to(PACKAGE).with_suffix('').parts))


def test_no_import_cycles():
  """Not even within a layer, nor through a function-level import."""
  modules = {_module_name(p): p for p in _modules()}
  graph = {
    name: {m if m in modules else m.rpartition('.')[0] for m in _imports(path)} & set(modules)
    for name, path in modules.items()
  }
  try:
    graphlib.TopologicalSorter(graph).prepare()
  except graphlib.CycleError as e:
    pytest.fail(f'import cycle: {" -> ".join(e.args[1])}')


def test_readme_layout_names_every_module():
  layout = (PACKAGE.parent / 'README.md').read_text().split('## Layout', 1)[1].split('\n## ', 1)[0]
  missing = [str(p.relative_to(PACKAGE)) for p in _modules() if p.stem not in layout]
  assert not missing, f'README Layout does not mention: {missing}'
