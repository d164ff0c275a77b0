"""A trained workdir read back without its dataset: config.json, dataset.json, checkpoint.

Sampling, translation and image generation need nothing but the workdir: the config says
which model to build, `dataset.json` holds the tokeniser, and the checkpoint is restored
without a target (as nested dicts), so neither the data nor the optimizer is rebuilt.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research.errors import CheckpointError
from research.training.checkpoint import Checkpointer
from research.training.loop import DATASET_FILE
from research.training.workdir import CONFIG_FILE


def read_json(path: str, what: str) -> dict[str, Any]:
  """The JSON file at `path`; CheckpointError naming it and `what` it is for otherwise."""
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    raise CheckpointError(f"{path} is missing: {what}") from None
  except (OSError, json.JSONDecodeError) as e:
    raise CheckpointError(f"{path} cannot be read ({e}): {what}") from e


@dataclasses.dataclass(frozen=True)
class SavedRun:
  """A workdir's config, its dataset metadata (and where it was read), its saved state."""
  workdir: str
  config: ml_collections.ConfigDict
  metadata: dict[str, Any]
  metadata_path: str
  state: dict[str, Any]
  step: int

  @property
  def dtype(self) -> Any:
    return jnp.bfloat16 if self.config.get("precision") == "bfloat16" else jnp.float32


def read(workdir: str, metadata_use: str, best: bool = False) -> SavedRun:
  """config.json, dataset.json and the newest (or best) checkpoint of `workdir`.

  `metadata_use` says what dataset.json is needed for (named in the error when it is
  missing). CheckpointError when any of the three is missing or unreadable.
  """
  if not os.path.isdir(workdir):
    raise CheckpointError(f"--workdir={workdir} does not exist: point it at a trained run.")
  config = ml_collections.ConfigDict(read_json(
      os.path.join(workdir, CONFIG_FILE), "this is not a training workdir; point --workdir "
      "at one that `python -m launch.main` trained."))
  metadata_path = os.path.join(workdir, DATASET_FILE)
  metadata = read_json(metadata_path, metadata_use)
  checkpointer = Checkpointer(workdir)
  try:
    state, step = checkpointer.restore_raw(best)
  finally:
    checkpointer.close()
  return SavedRun(workdir, config, metadata, metadata_path, state, step)


def mismatch(model: nn.Module, params: Any, *sample_inputs: jax.Array) -> str | None:
  """None if `params` has exactly the tree and shapes `model` initialises from the inputs;
  else the first difference, e.g. 'block0/attn/qkv/kernel: saved (32, 96), model (32, 3, 4, 8)'."""
  from research.training.transfer import path_name
  expected = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), *sample_inputs))
  want = {path_name(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(expected["params"])}
  have = {path_name(p): np.shape(x) for p, x in jax.tree_util.tree_leaves_with_path(params)}
  for name in sorted(set(want) | set(have)):
    if want.get(name) != have.get(name):
      return (f"{name}: saved {have.get(name, 'absent')}, model {want.get(name, 'absent')}")
  return None
