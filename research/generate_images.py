"""Sample images from a trained GAN's workdir, needing nothing else (no data, no classifier).

Reads config.json (the model) and the newest (or best) checkpoint. The latents of seed s are
those of the sample grids training wrote with `config.task.sample_seed` = s.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from research import images, models
from research.errors import CheckpointError, ConfigError
from research.tasks import gan
from research.tasks.classifier_features import workdir_config
from research.training.checkpoint import Checkpointer


@dataclasses.dataclass
class LoadedGAN:
  model: Any
  params: Any
  model_state: Any
  step: int


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  return {jax.tree_util.keystr(path): tuple(np.shape(leaf))
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def load_workdir(workdir: str, best: bool = False) -> LoadedGAN:
  """The GAN of a workdir's newest (or best) checkpoint.

  Raises CheckpointError when there is no readable checkpoint or when its arrays do not fit
  the model config.json describes (naming the first array that differs).
  """
  if not os.path.isfile(os.path.join(workdir, "config.json")):
    raise CheckpointError(f"--workdir={workdir} holds no config.json: point it at a workdir "
                          "that `python -m launch.main` trained.")
  config = workdir_config(workdir)
  if config.task.name != "gan":
    raise ConfigError(f"--workdir={workdir} holds a {config.task.name!r} run; images can be "
                      "sampled only from a GAN (config.task.name='gan').")
  model = models.build_model(config.model, gan.GAN.num_outputs(None),
                             jnp.bfloat16 if config.precision == "bfloat16" else jnp.float32)
  checkpointer = Checkpointer(workdir)
  where = checkpointer.best_dir if best else checkpointer.latest_dir
  try:
    state, step = checkpointer.restore_raw(best)
  finally:
    checkpointer.close()
  image_shape = tuple(config.model.image_shape)
  expected = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1,) + image_shape))
  expected_shapes = _shapes({"params": expected["params"],
                             "batch_stats": expected.get("batch_stats", {})})
  found_shapes = _shapes({"params": state["params"],
                          "batch_stats": state["model_state"].get("batch_stats", {})})
  if expected_shapes != found_shapes:
    differing = sorted(set(expected_shapes.items()) ^ set(found_shapes.items()))[0][0]
    raise CheckpointError(
        f"the checkpoint in {where} does not fit the model of {workdir}/config.json: array "
        f"{differing} has shape {found_shapes.get(differing)} in the checkpoint, "
        f"{expected_shapes.get(differing)} in config.model ({dict(config.model)}). The "
        "config.json was edited after training: restore it, or retrain.")
  return LoadedGAN(model, state["params"], state["model_state"], int(step))


def sample(workdir: str, num: int = 64, seed: int = 0,
           best: bool = False) -> tuple[np.ndarray, int]:
  """(uint8 grid image of `num` samples, checkpoint step)."""
  if num < 1:
    raise ConfigError(f"--num={num}: draw at least 1 sample.")
  loaded = load_workdir(workdir, best)
  grid = gan.sample_grid(loaded.model, loaded.params, loaded.model_state, num, seed)
  return grid, loaded.step


def write_samples(workdir: str, num: int = 64, seed: int = 0, output: str = "",
                  best: bool = False) -> str:
  """Samples a grid and writes it as PNG (default WORKDIR/samples/sample_step<STEP>_seed<SEED>
  .png); returns the path."""
  grid, step = sample(workdir, num, seed, best)
  path = output or os.path.join(workdir, "samples", f"sample_step{step:06d}_seed{seed}.png")
  return images.write_png(path, grid)
