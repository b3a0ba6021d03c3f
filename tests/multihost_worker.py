"""One process of a multi-process run on this machine's CPU (gloo collectives): a tiny search
and a tiny retraining per job; process 0 saves every final state leaf to JOB_DIR/final.npz.

  python -m tests.multihost_worker PROCESS_ID NUM_PROCESSES PORT JOB_DIR:EPOCHS:WHAT [...]

WHAT is a comma-separated list of 'search', 'seeds' (2 seeds split over the 2 devices,
`parallel.seed_shards=2`: with 2 processes each holds one) and 'train'.

With NUM_PROCESSES=1 the single process has two devices (XLA_FLAGS set by the caller).
"""

import os
import sys

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402
import numpy as np  # noqa: E402

process_id, num_processes, port = (int(x) for x in sys.argv[1:4])
if num_processes > 1:
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(f'localhost:{port}', num_processes, process_id)
assert jax.device_count() == 2, jax.devices()

from tests.testing import tiny_search_config, tiny_train_config  # noqa: E402
from unreal_nas_jax import parallel  # noqa: E402
from unreal_nas_jax.train import retrain, search_loop  # noqa: E402

progress = os.environ.get('WORKER_PROGRESS', 'none')
for job in sys.argv[4:]:
  job_dir, epochs, what = job.split(':')
  states = {}
  # Two steps per epoch: collectives between processes are slow on a shared CPU.
  if 'search' in what:
    states['search'] = search_loop.run_search(
      tiny_search_config(
        search__warmup_epochs=0,  # the search step holds the warm-up's weight step
        search__epochs=int(epochs),
        data__num_examples=16,
        model__steps=1,
        model__multiplier=1,
        log__progress=progress,
      ),
      os.path.join(job_dir, 'search'),
    )['state']
  if 'seeds' in what:
    seeds = tiny_search_config(
      search__warmup_epochs=0,
      search__epochs=int(epochs),
      search__num_seeds=2,
      search__seeds_program='vmap',
      data__num_examples=16,
      model__steps=1,
      model__multiplier=1,
      log__progress=progress,
    )
    seeds.parallel.seed_shards = 2
    states['seeds'] = search_loop.run_search(seeds, os.path.join(job_dir, 'seeds'))['state']
  if 'train' in what:
    states['train'] = retrain.run_train(
      tiny_train_config(
        train__epochs=int(epochs), data__num_train_examples=16, data__num_eval_examples=8,
        log__progress=progress,
      ),
      os.path.join(job_dir, 'train'),
    )['state']  # fmt: skip
  leaves = {}
  for name, state in states.items():
    # The split seeds' state is not all on this process's devices: gathered to every device.
    for path, x in jax.tree_util.tree_leaves_with_path(jax.device_get(parallel.gather(state))):
      leaves[f'{name}{jax.tree_util.keystr(path)}'] = np.asarray(x)
  if jax.process_index() == 0:
    np.savez(os.path.join(job_dir, 'final.npz'), **leaves)
