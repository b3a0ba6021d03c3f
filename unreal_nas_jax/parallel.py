"""Devices: optional multi-host initialisation, the `data` mesh (with a `seeds` axis in front when
N searches are split over groups of devices), and how hard XLA optimises the step programs.

The search state is replicated and every batch is sharded over the `data` axis; plain `jax.jit`
with these shardings runs the same program on 1 CPU, 8 GPUs or a TPU pod. BatchNorm statistics are
computed over the global batch, so results do not depend on the device count. With
`config.parallel.seed_shards` > 1 the N seeds' stacked states are split over the `seeds` axis
instead of copied: each group of devices steps its own seeds, data parallel within the group.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = 'data'
SEEDS_AXIS = 'seeds'

# `config.parallel.xla_optimization_level`: XLA's effort levels (xla.proto's EffortLevel numbers,
# the values jax.jit's `compiler_options` takes on every JAX this project supports). 'default'
# leaves the compiler its own choice. Of the compilers measured, the TPU's acts on it: at O0 and
# O1 it keeps no buffers in on-chip memory and compiles several times faster, and estimates its
# steps at several times the cycles (docs/speed.md).
# The CPU's compiles the same program at every level; the H200's paper step is unchanged at O0.
XLA_OPTIMIZATION_LEVELS = {'default': None, 'O0': 9, 'O1': 19, 'O2': 29, 'O3': 39}


class DeviceError(ValueError):
  """A device or batch-size setting that cannot work (one-line message)."""


def maybe_initialize_distributed() -> None:
  """Joins a multi-host run when UNREAL_NAS_DISTRIBUTED=1 (Cloud TPU pods, SLURM, ...).

  `jax.distributed.initialize()` reads the coordinator from the environment on TPU VMs; on other
  clusters set JAX's coordinator variables. Single-host runs skip it.
  """
  if os.environ.get('UNREAL_NAS_DISTRIBUTED', '0') == '1' and not jax.distributed.is_initialized():
    jax.distributed.initialize()


def make_mesh(num_devices: int = 0) -> Mesh:
  """A mesh over the first `num_devices` devices (0: all of them) with one axis, 'data'."""
  devices = jax.devices()
  if num_devices < 0 or num_devices > len(devices):
    raise DeviceError(
      f'config.parallel.num_devices={num_devices} is not allowed; this machine has '
      f'{len(devices)} {devices[0].platform} device(s) (0 uses all)'
    )
  chosen = devices[:num_devices] if num_devices else devices
  return Mesh(np.asarray(chosen), (DATA_AXIS,))


def mesh_platform(mesh: Mesh) -> str:
  """'cpu', 'gpu' or 'tpu': the platform a mesh's programs compile for (also a compile-only
  mesh of another machine's devices, `unreal_nas_jax.targets`)."""
  return mesh.devices.flat[0].platform


def with_seed_axis(mesh: Mesh, seed_shards: int) -> Mesh:
  """`mesh`'s devices as a ('seeds', 'data') mesh of `seed_shards` groups (`mesh` itself for 1)."""
  if seed_shards == 1:
    return mesh
  count = mesh.devices.size
  if count % seed_shards:
    raise DeviceError(
      f'config.parallel.seed_shards={seed_shards} does not divide the {count} device(s); '
      f'use a divisor of {count} or set config.parallel.num_devices'
    )
  return Mesh(mesh.devices.reshape(seed_shards, -1), (SEEDS_AXIS, DATA_AXIS))


def seed_shards(mesh: Mesh) -> int:
  """How many groups of devices a mesh splits the seeds over (1: every device steps every seed)."""
  return mesh.shape.get(SEEDS_AXIS, 1)


def per_seed(mesh: Mesh) -> NamedSharding:
  """Where a tree with a leading seed axis lives: split over the `seeds` axis, else replicated."""
  return NamedSharding(
    mesh, PartitionSpec(SEEDS_AXIS) if seed_shards(mesh) > 1 else PartitionSpec()
  )


def check_batch_divides(batch_size: int, mesh: Mesh, name: str = 'config.search.batch_size'):
  count = mesh.shape[DATA_AXIS]
  if batch_size % count:
    group = f'{count} devices of each seed group' if seed_shards(mesh) > 1 else f'{count} devices'
    raise DeviceError(
      f'{name}={batch_size} does not divide by the {group} of the data mesh; '
      f'use a multiple of {count} or set config.parallel.num_devices'
    )


def data_mesh(num_devices: int, batch_size: int, batch_name: str, mesh: Mesh | None = None) -> Mesh:
  """`mesh`, or a new one over `num_devices`, after checking that the global batch divides."""
  mesh = mesh if mesh is not None else make_mesh(num_devices)
  check_batch_divides(batch_size, mesh, batch_name)
  return mesh


def abstract_replicated(init_fn, mesh: Mesh):
  """Shapes, dtypes and replicated shardings of `init_fn()`'s pytree, without computing it."""
  return abstract(jax.eval_shape(init_fn), mesh)


def abstract(tree, mesh: Mesh, spec: PartitionSpec = PartitionSpec()):
  """`ShapeDtypeStruct`s of a pytree of arrays or shapes, placed by `spec` on `mesh`
  (replicated by default)."""
  sharding = NamedSharding(mesh, spec)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), tree)


def compiler_options(optimization_level: str) -> dict[str, int] | None:
  """`jax.jit`'s `compiler_options` for a validated `config.parallel.xla_optimization_level`."""
  level = XLA_OPTIMIZATION_LEVELS[optimization_level]
  return None if level is None else {'optimization_level': level}


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def replicate(tree, mesh: Mesh):
  """Places every leaf of `tree` on all devices of `mesh` (of every process)."""
  return place(tree, replicated(mesh))


def place(tree, sharding: NamedSharding):
  """Places every leaf of `tree` by `sharding` on the devices of every process.

  In a multi-process run each process builds its part of the global array from its own copy of
  the (identical) host value; an array that is already global is resharded.
  """
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(put, tree)


def gather(tree):
  """`tree` with every leaf readable by this process: leaves split over other processes' devices
  (seeds over a pod) are copied to all devices first; the rest are returned as they are."""
  leaves = jax.tree.leaves(tree)
  if all(not isinstance(x, jax.Array) or x.is_fully_addressable for x in leaves):
    return tree
  mesh = next(x.sharding.mesh for x in leaves if isinstance(x, jax.Array))
  return jax.jit(lambda t: t, out_shardings=replicated(mesh))(tree)
