"""Where a cell to retrain comes from: a published name, a genotype.json, or a search workdir.

A search workdir is read through its latest Orbax checkpoint: the alphas are restored (without
building the supernet or the data) and the genotype derived from them by the DARTS rule with the
run's `model.steps` and `model.multiplier` (from its config.json), so the cell is the one the
search state holds, not a copy that might be stale.
"""

from __future__ import annotations

import json
import os

from unreal_nas_jax import checkpointing
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
  path = os.path.expanduser(spec)
  if os.path.isdir(path):
    return genotype_from_search_workdir(path)
  if os.path.isfile(path):
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
  checkpoints = os.path.join(workdir, 'checkpoints')
  config_path = os.path.join(workdir, 'config.json')
  if not os.path.isdir(checkpoints) or not os.listdir(checkpoints):
    raise ConfigError(
      f'{workdir!r} holds no search checkpoint (no {checkpoints}); run or resume the search first, '
      'or pass its genotype.json'
    )
  model, search = {'steps': 4, 'multiplier': 4}, {'method': 'darts', 'sgas_criterion': 1}
  if os.path.exists(config_path):
    with open(config_path) as f:
      saved = json.load(f)
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
      f'{os.path.join(workdir, "seed_0", "genotype.json")}'
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
