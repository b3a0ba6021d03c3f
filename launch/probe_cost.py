"""Seconds per step per architecture of the probe programs (vmap, map, loop, one alone), round-robin
in one process; the measurement behind docs/analyses.md. Usage (from the repository root):
  PYTHONPATH=. JAX_PLATFORMS=cpu python launch/probe_cost.py K ROUNDS STEPS   # e.g. 4 3 6
"""

import json
import statistics
import sys
import time

import jax

from unreal_nas_jax.config_utils import load_config
from unreal_nas_jax.search import seeds
from unreal_nas_jax.search import setup as search_setup
from unreal_nas_jax.train import probe

K = int(sys.argv[1])
rounds = int(sys.argv[2])
steps = int(sys.argv[3])
# A cache makes a rerun skip the compiles (the first-call times then show cache loads).
jax.config.update('jax_compilation_cache_dir', '/tmp/probe_bench_jax_cache')
jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
c = load_config('configs/probe.py:rlrn,quick')
c.probe.num_architectures = K
fns = {}
for program in ('vmap', 'map', 'loop'):
  c.probe.program = program
  setup = probe.build_probe(c)
  s = setup.search
  state = probe.init_states(setup)
  sums = search_setup.init_sums(s)
  inputs = probe.epoch_inputs(setup, 0)
  fn = search_setup.make_step_fn(s, 'warmup')
  t0 = time.perf_counter()
  if program == 'loop':
    fn = seeds.host_loop(fn, K, None)
  state, sums = jax.block_until_ready(fn(state, sums, s.data, *inputs))
  print(program, 'first call (compile) s', round(time.perf_counter() - t0, 1), flush=True)
  fns[program] = (fn, state, sums, s, inputs)
# one architecture alone
c.probe.num_architectures = 1
setup1 = probe.build_probe(c)
s1 = setup1.search
one = (
  search_setup.make_step_fn(s1, 'warmup'),
  probe.init_states(setup1),
  search_setup.init_sums(s1),
  s1,
  probe.epoch_inputs(setup1, 0),
)
t0 = time.perf_counter()
st, su = jax.block_until_ready(one[0](one[1], one[2], s1.data, *one[4]))
print('single first call s', round(time.perf_counter() - t0, 1))
fns['one'] = (one[0], st, su, s1, one[4])
times = {p: [] for p in fns}
for r in range(rounds):
  for p, (fn, state, sums, s, inputs) in list(fns.items()):
    t0 = time.perf_counter()
    for _ in range(steps):
      state, sums = fn(state, sums, s.data, *inputs)
    jax.block_until_ready(state)
    times[p].append((time.perf_counter() - t0) / steps)
    fns[p] = (fn, state, sums, s, inputs)
  print('round', r, {p: round(v[-1], 3) for p, v in times.items()}, flush=True)
res = {p: round(statistics.median(v) / (1 if p == 'one' else K), 4) for p, v in times.items()}
print(json.dumps({'K': K, 'median_s_per_step_per_arch': res}))
