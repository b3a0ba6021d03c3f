"""Where a cell to retrain comes from: a published name, a genotype.json, or a search workdir.

A search workdir is read through its latest Orbax checkpoint: the alphas are restored (without
building the supernet or the data) and the genotype derived from them by the DARTS rule with the
run's `model.steps` and `model.multiplier` (from its config.json), so the cell is the one the
search state holds, not a copy that might be stale.
"""

from __future__ import annotations

import os

from unreal_nas_jax import checkpointing, files
from unreal_nas_jax.config_utils import ConfigError
from unreal_nas_jax.search import derivation
from unreal_nas_jax.space import genotypes, published


def resolve_genotype(spec: str) -> tuple[genotypes.Genotype, str]:
  """Returns (genotype, a description of where it came from) for a name, file or workdir.

  Raises:
    ConfigError: one line: an unknown name (listing the known ones), a malformed genotype.json
      (naming the field), or a search workdir without a checkpoint.
  """
  if not spec:
    raise ConfigError(
      'no genotype given; pass a published name, a genotype.json path or a search workdir'
    )
  path = spec if files.is_remote(spec) else os.path.expanduser(spec)
  if files.is_dir(path):
    return genotype_from_search_workdir(path)
  if files.exists(path):
    try:
      return genotypes.load_genotype(path), f'file {path}'
    except (ValueError, OSError) as e:
      raise ConfigError(str(e).splitlines()[0]) from None
  if spec.endswith('.json') or os.sep in spec:
    raise ConfigError(f'genotype file or workdir {spec!r} does not exist')
  try:
    return published.get_genotype(spec), f'published {spec}'
  except ValueError as e:
    raise ConfigError(str(e)) from None


def genotype_from_search_workdir(workdir: str) -> tuple[genotypes.Genotype, str]:
  """Derives the genotype from the alphas of the latest checkpoint of a search in `workdir`."""
  checkpoints = files.join(workdir, 'checkpoints')
  config_path = files.join(workdir, 'config.json')
  model, search = {'steps': 4, 'multiplier': 4}, {'method': 'darts', 'sgas_criterion': 1}
  saved = files.read_json(config_path) if files.exists(config_path) else {}
  if 'train' in saved and 'search' not in saved:
    raise ConfigError(
      f'{workdir!r} is a retraining workdir (it trains {saved.get("genotype")!r}), not a search; '
      'pass a search workdir, a genotype.json or a published name'
    )
  if not any(name.isdigit() for name in files.list_dir(checkpoints)):
    raise ConfigError(
      f'{workdir!r} holds no search checkpoint (no {checkpoints}); run or resume the search first, '
      'or pass its genotype.json'
    )
  if saved:
    model.update(saved.get('model', {}))
    search.update(saved.get('search', {}))
  try:
    state, record, step = checkpointing.restore_raw(checkpoints)
  except FileNotFoundError:
    raise ConfigError(f'{workdir!r} holds no complete search checkpoint') from None
  if not isinstance(state, dict) or 'alphas' not in state:
    raise ConfigError(f'the checkpoint in {checkpoints} is not a search checkpoint (no alphas)')
  if state['alphas']['normal'].ndim == 3:
    n = state['alphas']['normal'].shape[0]
    raise ConfigError(
      f"{workdir!r} is a search of {n} seeds; pass one seed's genotype, e.g. "
      f'{files.join(workdir, "seed_0", "genotype.json")}'
    )
  genotype = derivation.search_genotype(
    state['alphas'],
    state.get('decisions'),
    method=search['method'],
    steps=model['steps'],
    multiplier=model['multiplier'],
    sgas_criterion=search['sgas_criterion'],
  )
  return genotype, f'search {workdir} (checkpoint of epoch {record.get("epoch", step)})'
