"""The device mesh and the shardings of the compiled step.

The mesh has three axes, sized by `config.mesh`: `data` (pure data parallelism), `fsdp`
(data parallelism whose parameters and optimizer state are sharded too, FSDP / ZeRO-3
style) and `model` (tensor parallelism). Batches are split over `data` x `fsdp`.

Models name the axes of their weights with Flax logical names
(`nn.with_logical_partitioning(init, ("embed", "mlp"))`); `config.mesh.rules` maps logical
names to mesh axes. A weight without names, or a name without a rule, is replicated, so
models that say nothing about sharding run as plain data parallelism. Optimizer state that
mirrors the parameters (Adam's moments, accumulated gradients) is sharded like them. The
same code runs on 1 CPU, 8 simulated CPU devices, a GPU, a TPU slice or many hosts.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from research.errors import ConfigError
from research.training.transfer import path_name

DATA_AXIS, FSDP_AXIS, MODEL_AXIS = "data", "fsdp", "model"
MESH_AXES = (DATA_AXIS, FSDP_AXIS, MODEL_AXIS)
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)

# Logical axis name -> mesh axis. FSDP shards every weight along its model width; tensor
# parallelism splits attention by whole heads (its q, k, v and output projections) and the
# MLP by its hidden units over `model`, Megatron-style, so each device attends over its own
# heads with no communication. With fsdp = model = 1 (the default) all replicate.
DEFAULT_RULES = (("embed", FSDP_AXIS), ("heads", MODEL_AXIS), ("mlp", MODEL_AXIS),
                 ("vocab", MODEL_AXIS))


def default_mesh_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      data=-1,     # -1 (one axis at most): every device the other axes leave
      fsdp=1,      # data parallelism with parameters and optimizer state sharded (FSDP)
      model=1,     # tensor parallelism
      rules=DEFAULT_RULES,  # (logical axis name, mesh axis or '' for replicated) pairs
  ))


def make_mesh(mesh_config: ml_collections.ConfigDict | None = None) -> Mesh:
  """A (data, fsdp, model) mesh; one axis may be -1: every device the others leave."""
  mesh_config = mesh_config if mesh_config is not None else default_mesh_config()
  sizes = {}
  for axis in MESH_AXES:
    value = mesh_config.get(axis, -1 if axis == DATA_AXIS else 1)
    if isinstance(value, bool) or not isinstance(value, int) or not (value >= 1 or value == -1):
      raise ConfigError(f"config.mesh.{axis} must be an integer >= 1, or -1 for all devices "
                        f"the other axes leave; got {value!r}.")
    sizes[axis] = value
  fill = [a for a in MESH_AXES if sizes[a] == -1]
  if len(fill) > 1:
    raise ConfigError(f"config.mesh.{fill[0]} and config.mesh.{fill[1]} are both -1: at most "
                      "one axis can take the devices the others leave.")
  devices = jax.devices()
  n = len(devices)
  if fill:
    fixed = math.prod(v for v in sizes.values() if v != -1)
    if n % fixed:
      shown = " x ".join(f"{a}={sizes[a]}" for a in MESH_AXES if a != fill[0])
      raise ConfigError(f"config.mesh {shown} = {fixed} does not divide the {n} visible "
                        f"device(s); choose sizes whose product divides {n}.")
    sizes[fill[0]] = n // fixed
  total = math.prod(sizes.values())
  if total > n:
    raise ConfigError(
        f"config.mesh data={sizes[DATA_AXIS]} x fsdp={sizes[FSDP_AXIS]} x "
        f"model={sizes[MODEL_AXIS]} needs {total} devices but {n} are visible; use -1 for "
        "one axis or smaller sizes.")
  if total < n and jax.process_count() > 1:
    raise ConfigError(
        f"config.mesh uses {total} of the {n} devices of {jax.process_count()} processes; "
        "a multi-process run must use them all: set one axis to -1.")
  shape = tuple(sizes[a] for a in MESH_AXES)
  return Mesh(np.asarray(devices[:total]).reshape(shape), MESH_AXES)


def logical_rules(mesh_config: ml_collections.ConfigDict | None) -> tuple[tuple[str, Any], ...]:
  """`config.mesh.rules` as Flax logical axis rules, checked against the mesh axes."""
  raw = DEFAULT_RULES if mesh_config is None else mesh_config.get("rules", DEFAULT_RULES)
  rules = []
  for rule in raw:
    if not isinstance(rule, (list, tuple)) or len(rule) != 2 or not isinstance(rule[0], str):
      raise ConfigError(f"config.mesh.rules entry {rule!r} is not a (logical name, mesh axis) "
                        "pair, e.g. ('embed', 'fsdp').")
    name, target = rule
    targets = tuple(target) if isinstance(target, (list, tuple)) else (target,)
    targets = tuple(t for t in targets if t not in ("", None))
    unknown = [t for t in targets if t not in MESH_AXES]
    if unknown:
      raise ConfigError(f"config.mesh.rules maps {name!r} to unknown mesh axis {unknown[0]!r}; "
                        f"the mesh axes are {', '.join(MESH_AXES)} ('' replicates).")
    rules.append((name, targets[0] if len(targets) == 1 else (targets or None)))
  return tuple(rules)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh, leading_axes: int = 0) -> NamedSharding:
  """Shards the batch dimension after `leading_axes` unsharded ones (e.g. a step axis)."""
  return NamedSharding(mesh, P(*([None] * leading_axes), BATCH_AXES))


def data_parallel_size(mesh: Mesh) -> int:
  """Devices a batch is split over: data x fsdp."""
  return math.prod(mesh.shape[a] for a in BATCH_AXES if a in mesh.shape)


def put(value: Any, sharding: NamedSharding) -> Any:
  """Host numpy arrays onto the mesh. With several processes each one places only its own
  devices' slices of the (identical on every process) host value."""
  if jax.process_count() == 1:
    return jax.device_put(value, sharding)
  return jax.tree.map(lambda x: jax.make_array_from_callback(
      np.shape(x), sharding, lambda index: np.asarray(x)[index]), value)


def _logical_axes(boxed_variables: Any) -> dict[str, tuple[tuple[int, ...], tuple[Any, ...]]]:
  """{path inside its collection: (shape, logical names)} of every annotated variable."""
  table = {}
  leaves = jax.tree_util.tree_leaves_with_path(
      boxed_variables, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  for path, leaf in leaves:
    if isinstance(leaf, nn.Partitioned):
      table[path_name(path[1:])] = (tuple(leaf.value.shape), tuple(leaf.names))
  return table


def _divisible(spec: P, shape: tuple[int, ...], mesh: Mesh, where: str) -> P:
  """`spec` with the axes that do not divide their dimension replicated instead."""
  dims = []
  for size, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = (axes,) if isinstance(axes, str) else tuple(axes or ())
    parts = math.prod(mesh.shape[a] for a in names)
    if parts > 1 and size % parts:
      logging.info("Replicating dimension of size %d of %s: it does not split over %s.",
                   size, where, names)
      axes = None
    dims.append(axes)
  return P(*dims)


def state_shardings(abstract_state: Any, boxed_variables: Any, mesh: Mesh,
                    rules: tuple[tuple[str, Any], ...]) -> Any:
  """A NamedSharding for every leaf of `abstract_state` (a pytree of shapes).

  A leaf whose path ends with the path of an annotated variable and has its shape takes
  that variable's logical names (so `params/block0/fc/kernel` and Adam's
  `opt_state/0/mu/block0/fc/kernel` shard alike); every other leaf is replicated.
  """
  table = _logical_axes(boxed_variables)

  def sharding(path, leaf):
    parts = path_name(path).split("/")
    for i in range(len(parts)):
      found = table.get("/".join(parts[i:]))
      if found is not None and found[0] == tuple(leaf.shape):
        spec = nn.logical_to_mesh_axes(found[1], rules)
        return NamedSharding(mesh, _divisible(spec, leaf.shape, mesh, "/".join(parts)))
    return replicated(mesh)

  return jax.tree_util.tree_map_with_path(sharding, abstract_state)


def bytes_per_device(tree: Any) -> int:
  """Bytes of `tree` (arrays or shape structs with shardings) held by one device."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    shard = leaf.sharding.shard_shape(leaf.shape)
    total += math.prod(shard) * np.dtype(leaf.dtype).itemsize
  return total
