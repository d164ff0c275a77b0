"""A frozen classifier trained by this framework, as a feature extractor (e.g. for FID).

The features are the input of the classifier's last Dense layer (its head): the penultimate
activations, as Inception's pool3 features are for the standard FID. A GAN's FID on these
features is comparable only with FIDs on the same classifier, never with Inception-FID.
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from research.errors import CheckpointError, ConfigError
from research.training.checkpoint import Checkpointer

# The experiment that trains a dataset's classifier, for the message when none is given.
CLASSIFIER_EXPERIMENTS = {"mnist": "mnist_cnn", "fashion_mnist": "fashion_mnist_cnn",
                          "cifar10": "cifar10_resnet20"}


def train_command(dataset: str, workdir: str) -> str:
  experiment = CLASSIFIER_EXPERIMENTS.get(dataset, f"{dataset}_cnn")
  return (f"python -m launch.main --config=experiments/{experiment}.py "
          f"--workdir={workdir or 'runs/' + experiment}")


def merge_into(base: ml_collections.ConfigDict, stored: dict[str, Any]) -> None:
  """Sets `stored` (a config.json) over `base`, keeping base fields the run predates."""
  for key, value in stored.items():
    if isinstance(value, dict) and isinstance(base.get(key), ml_collections.ConfigDict):
      merge_into(base[key], value)
    elif isinstance(value, dict):
      base[key] = ml_collections.ConfigDict(value)
    else:
      old = base.get(key)
      base[key] = tuple(value) if isinstance(old, tuple) and isinstance(value, list) else value


def workdir_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with (its config.json over today's schema)."""
  from research.config import base_config
  with open(os.path.join(workdir, "config.json")) as f:
    stored = json.load(f)
  config = base_config()
  config.model = ml_collections.ConfigDict()
  merge_into(config, stored)
  return config


def _fingerprint(workdir: str, best: bool) -> tuple[Any, ...]:
  """Changes whenever the workdir's config or checkpoints do (so a retrained one reloads)."""
  ckpt_dir = os.path.join(workdir, "checkpoints_best" if best else "checkpoints")
  steps = sorted(os.listdir(ckpt_dir)) if os.path.isdir(ckpt_dir) else []
  config_time = os.stat(os.path.join(workdir, "config.json")).st_mtime_ns
  return (os.path.realpath(workdir), best, config_time,
          tuple((s, os.stat(os.path.join(ckpt_dir, s)).st_mtime_ns) for s in steps))


_LOADED: dict[tuple[Any, ...], "FeatureClassifier"] = {}


def load(workdir: str, dataset: str, best: bool = False,
         field: str = "config.task.classifier_workdir") -> "FeatureClassifier":
  """A `FeatureClassifier`, loaded once per process while the workdir is unchanged: building
  an experiment again (evaluation after training, tests, sweeps) does not reload it."""
  if not workdir or not os.path.isfile(os.path.join(workdir, "config.json")):
    return FeatureClassifier(workdir, dataset, best, field)  # raises the ConfigError
  key = _fingerprint(workdir, best)
  if key not in _LOADED or _LOADED[key].dataset != dataset:
    classifier = FeatureClassifier(workdir, dataset, best, field)
    _LOADED.clear()  # one classifier at a time is what a process uses
    _LOADED[key] = classifier
  return _LOADED[key]


class FeatureClassifier:
  """The newest (or best) checkpoint of a classifier workdir, frozen.

  `features_and_logits(images)` is traceable (call it inside jit): images as the
  classifier's dataset gives them (uint8) or as floats in [0, 1].
  """

  def __init__(self, workdir: str, dataset: str, best: bool = False,
               field: str = "config.task.classifier_workdir"):
    from research.training import loop  # imported here: the loop imports the tasks
    command = train_command(dataset, workdir)
    if not workdir:
      raise ConfigError(f"{field} is empty: it must name the workdir of a classifier trained "
                        f"on {dataset!r} by this framework (its features define the FID). "
                        f"Train one with `{command}` and pass --{field}=<that workdir>.")
    if not os.path.isfile(os.path.join(workdir, "config.json")):
      raise ConfigError(f"{field}={workdir!r} holds no trained run (no config.json). Train the "
                        f"feature classifier first: `{command}`.")
    config = workdir_config(workdir)
    if config.task.name != "multiclass" or config.dataset.name != dataset:
      raise ConfigError(
          f"{field}={workdir!r} holds a {config.task.name!r} run on {config.dataset.name!r}; "
          f"the features must come from a multiclass classifier of {dataset!r}: `{command}`.")
    untrained = f"{field}={workdir!r} has no usable checkpoint"
    checkpointer = Checkpointer(workdir)
    try:
      trained = checkpointer.has_checkpoint(best)
    finally:
      checkpointer.close()
    if not trained:
      raise ConfigError(f"{untrained}: train the feature classifier first: `{command}`.")
    try:
      exp, state, step = loop.restore_state(config, workdir, best=best)
    except CheckpointError as e:
      raise ConfigError(f"{untrained} ({e}). Train the feature classifier first: "
                        f"`{command}`.") from None
    self.workdir, self.dataset, self.step = workdir, dataset, step
    self.model = exp.task.model
    self.input_shape = exp.dataset.input_shape
    self.variables = jax.device_get({"params": state.params, **(state.model_state or {})})

  def features_and_logits(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(penultimate features, logits), both float32, of a batch of images."""
    from research.tasks.base import prepare_inputs
    head_inputs = []

    def record_dense_inputs(next_fun, args, kwargs, context):
      if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
        head_inputs.append(args[0])
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(record_dense_inputs):
      logits = self.model.apply(self.variables, prepare_inputs(images), train=False)
    if not head_inputs:
      raise ConfigError(f"the classifier in {self.workdir} has no Dense layer; its features "
                        "cannot be taken from the input of its head.")
    features = head_inputs[-1]
    return (features.reshape((features.shape[0], -1)).astype(jnp.float32),
            logits.astype(jnp.float32))
