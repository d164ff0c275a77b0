"""The device mesh and the shardings of the compiled step.

Batches are sharded over the `data` axis, parameters and optimizer state replicated.
The same code runs on 1 CPU, 8 simulated CPU devices, a GPU or a TPU slice.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from research.errors import ConfigError

DATA_AXIS = "data"


def make_mesh(mesh_config: ml_collections.ConfigDict | None = None) -> Mesh:
  """A 1-D `data` mesh over `mesh.data` devices (-1: all of them)."""
  devices = jax.devices()
  n = int(mesh_config.get("data", -1)) if mesh_config is not None else -1
  if n == -1:
    n = len(devices)
  if n <= 0 or n > len(devices):
    raise ConfigError(f"config.mesh.data={n} but {len(devices)} device(s) are visible; "
                      "use -1 for all devices or a number between 1 and the device count.")
  return Mesh(np.asarray(devices[:n]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh, leading_axes: int = 0) -> NamedSharding:
  """Shards the batch dimension after `leading_axes` unsharded ones (e.g. a step axis)."""
  return NamedSharding(mesh, P(*([None] * leading_axes), DATA_AXIS))


def data_parallel_size(mesh: Mesh) -> int:
  return mesh.shape[DATA_AXIS]
