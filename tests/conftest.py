"""Shared test settings: CPU, a persistent compilation cache, tiny configs."""

import os
import pathlib

# Before JAX starts: CPU only, and keep TensorFlow (tfds) off any accelerator.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Tests check behaviour, not speed: LLVM's cheap optimisation level makes XLA:CPU compile the
# supernets' programs about a third faster (same arithmetic). Subprocesses inherit it.
FAST_COMPILE_FLAGS = '--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true'
os.environ['XLA_FLAGS'] = f'{os.environ.get("XLA_FLAGS", "")} {FAST_COMPILE_FLAGS}'.strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
CACHE_DIR = os.environ.setdefault(
  'JAX_COMPILATION_CACHE_DIR', str(pathlib.Path(__file__).resolve().parents[1] / '.jax_cache')
)

import jax  # noqa: E402
import pytest  # noqa: E402

from unreal_nas_jax.config_utils import load_config  # noqa: E402

jax.config.update('jax_compilation_cache_dir', CACHE_DIR)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


# The sizes of every tiny search-space config (search, probe): C=4, 3 cells of 2 nodes, 8x8 images.
TINY_SIZES = {
  'data__num_examples': 32,
  'data__num_classes': 10,
  'data__image_size': 8,
  'model__channels': 4,
  'model__layers': 3,
  'model__steps': 2,
  'model__multiplier': 2,
}


def tiny_search_config(**overrides):
  """A search config that compiles and runs in seconds: C=4, 3 cells, 8x8, 32 examples."""
  config = load_config('configs/search.py:rlrn,quick')
  fields = {**TINY_SIZES, 'search__batch_size': 8, 'search__warmup_epochs': 1}
  fields.update({'search__epochs': 2, 'log__progress': 'none'})
  return apply_overrides(config, {**fields, **overrides})


def apply_overrides(config, overrides):
  """Sets `a__b=value` keyword overrides (config.a.b = value) on a ConfigDict; returns it."""
  for dotted, value in overrides.items():
    node = config
    *parents, leaf = dotted.split('__')
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


@pytest.fixture
def tiny_config():
  return tiny_search_config()
