"""Data parallelism over a device mesh, on one host or several.

The batch is split along the mesh's `data` axis and the train state is
replicated; `jax.jit` with these shardings inserts the gradient all-reduce.
This is what `pmap` used to do, written the way JAX 0.10 recommends.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def initialize_distributed(coordinator_address: str = '',
                           num_processes: int = 0,
                           process_id: int = -1) -> None:
  """Joins a multi-host job; unset arguments are auto-detected.

  On Cloud TPU, SLURM and Open MPI, JAX detects everything by itself; on
  other clusters pass the coordinator's `host:port`, the number of processes
  and this process's id. Call before any other JAX call.
  """
  kwargs = {}
  if coordinator_address:
    kwargs['coordinator_address'] = coordinator_address
  if num_processes > 0:
    kwargs['num_processes'] = num_processes
  if process_id >= 0:
    kwargs['process_id'] = process_id
  jax.distributed.initialize(**kwargs)


def mesh_size(num_devices: int = 0) -> int:
  """How many devices `make_data_mesh(num_devices)` spans."""
  return num_devices or jax.device_count()


def make_data_mesh(num_devices: int = 0) -> Mesh:
  """A 1-D mesh named `data` over the first `num_devices` (0: all) devices."""
  devices = jax.devices()
  n = mesh_size(num_devices)
  if n > len(devices):
    raise ValueError(f'asked for {n} devices but only {len(devices)} exist'
                     + (' (on CPU, cpu_devices sets how many)'
                        if devices[0].platform == 'cpu' else ''))
  if jax.process_count() > 1 and n != len(devices):
    # The first n would leave some hosts without a device for their rows.
    raise ValueError(f'on {jax.process_count()} hosts the data mesh spans '
                     f'every device: set num_devices to 0, not {n}')
  # Auto axes let the compiler propagate shardings: plain data parallelism
  # needs no per-op annotations.
  return jax.make_mesh((n,), (DATA_AXIS,), devices=devices[:n],
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole value (parameters, optimizer state)."""
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh, leading: int = 0) -> NamedSharding:
  """The batch dimension, after `leading` others (e.g. steps), is split
  over the `data` axis."""
  return NamedSharding(mesh, P(*(None,) * leading, DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
  """Raises a clear error if the batch does not split evenly."""
  n = mesh.size
  if global_batch_size % n:
    raise ValueError(f'batch_size {global_batch_size} is not divisible by '
                     f'the {n} devices of the data mesh; choose a multiple '
                     f'of {n} or set --config.num_devices')


def process_rows(global_batch_size: int) -> slice:
  """The rows of a global batch that this host loads and feeds."""
  n = jax.process_count()
  local = global_batch_size // n
  return slice(jax.process_index() * local, (jax.process_index() + 1) * local)


def to_global(local_batch: dict[str, np.ndarray], mesh: Mesh,
              leading: int = 0) -> dict:
  """Assembles each host's rows into global arrays sharded on `data`; the
  rows are the dimension after `leading` others."""
  sharding = batch_sharded(mesh, leading)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x),
      local_batch)


def to_host(tree: Any) -> Any:
  """Replicated device values as numpy (works on multi-host meshes too);
  values already on the host pass through."""
  return jax.tree.map(
      lambda x: np.asarray(x.addressable_data(0) if isinstance(x, jax.Array)
                           else x), tree)
