"""The test processes' set-up before JAX starts (CPU, fast compiles, a persistent compile cache),
and the runs several test modules read, made once per test process."""

import os
import subprocess
import sys

from tests.testing import CACHE_DIR, tiny_search_config, tiny_train_config
from unreal_nas_jax.cli.reproduce import FAST_COMPILE_FLAGS, add_xla_flags

# Before JAX starts: CPU only, and keep TensorFlow (tfds) off any accelerator.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Tests check behaviour, not speed: LLVM's cheap optimisation level (the quick reproduction's
# flags) makes XLA:CPU compile the supernets' programs about a third faster, and its loop emitters
# (no MLIR fusion emitters) halve what is left; same arithmetic. Subprocesses inherit them.
add_xla_flags(FAST_COMPILE_FLAGS)
# jaxlib 0.6 to 0.11.0 know the emitters' flag, 0.11.2 and 0.12 do not, and XLA aborts on a flag it
# does not know: asked once per suite, the xdist workers inherit the answer.
LOOP_EMITTERS_FLAG = '--xla_cpu_use_fusion_emitters=false'
if 'UNREAL_NAS_TESTS_LOOP_EMITTERS' not in os.environ:
  probe = subprocess.run(
    [sys.executable, '-c', 'import jax; jax.devices()'],
    env={**os.environ, 'XLA_FLAGS': LOOP_EMITTERS_FLAG, 'JAX_PLATFORMS': 'cpu'},
    capture_output=True,
  )
  os.environ['UNREAL_NAS_TESTS_LOOP_EMITTERS'] = str(int(probe.returncode == 0))
if os.environ['UNREAL_NAS_TESTS_LOOP_EMITTERS'] == '1':
  add_xla_flags([LOOP_EMITTERS_FLAG])
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ['JAX_COMPILATION_CACHE_DIR'] = CACHE_DIR  # the CLI runs the tests start use it too

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update('jax_compilation_cache_dir', CACHE_DIR)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)

# The longest tests (`pytest --durations`), started first so that `-n 2`'s two workers end
# together rather than one waiting on the other's last long test. Order only: no test depends on it.
LONGEST_FIRST = (
  'tests/test_multihost.py',
  'tests/test_seed_shards.py',
  'tests/reproduce/test_reproduce.py::test_a_quick_reproduction',
  'tests/search/test_sgas.py',
  'tests/models/test_supernet.py::test_fused_second_order',
  'tests/test_multidevice.py',
)


def pytest_collection_modifyitems(items):
  def rank(item):
    return next(
      (i for i, p in enumerate(LONGEST_FIRST) if item.nodeid.startswith(p)), len(LONGEST_FIRST)
    )

  items.sort(key=rank)  # stable: the rest keep their order


# Finished runs that tests read (and copy before changing): (config, workdir, summary).


@pytest.fixture(scope='session')
def search_run(tmp_path_factory):
  """The tiny search (`testing.TINY_SEARCH`): a warm-up epoch and two search epochs."""
  from unreal_nas_jax.train import search_loop

  config = tiny_search_config()
  workdir = tmp_path_factory.mktemp('search')
  return config, workdir, search_loop.run_search(config, str(workdir))


@pytest.fixture(scope='session')
def sgas_run(tmp_path_factory):
  """SGAS deciding an edge after each of 3 search epochs, its batch growing 8 -> 12 -> 16."""
  from unreal_nas_jax.train import search_loop

  config = tiny_search_config(
    search__method='sgas',
    search__epochs=3,
    search__sgas_decision_start=0,
    search__sgas_decision_every=1,
    search__sgas_batch_increase=4,
    data__num_examples=48,
  )
  workdir = tmp_path_factory.mktemp('sgas')
  return config, workdir, search_loop.run_search(config, str(workdir))


@pytest.fixture(scope='session')
def seeds_run(tmp_path_factory):
  """The tiny search with 2 seeds."""
  from unreal_nas_jax.train import search_loop

  config = tiny_search_config(search__num_seeds=2)
  workdir = tmp_path_factory.mktemp('seeds')
  return config, workdir, search_loop.run_search(config, str(workdir))


@pytest.fixture(scope='session')
def train_run(tmp_path_factory):
  """The tiny retraining (`testing.TINY_TRAIN`): DARTS_V2 on fake CIFAR-10, two epochs."""
  from unreal_nas_jax.train import retrain

  config = tiny_train_config()
  workdir = tmp_path_factory.mktemp('train')
  return config, workdir, retrain.run_train(config, str(workdir))
