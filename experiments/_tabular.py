"""Shared recipe for the scikit-learn tabular experiments (not an experiment itself)."""

import ml_collections

from research.config import base_config


def tabular_config(dataset: str, model: str, task: str, *, optimizer: str = "sgd",
                   learning_rate: float = 0.1, batch_size: int = 32,
                   num_epochs: float = 100.0) -> ml_collections.ConfigDict:
  """A linear model on standardised features, evaluated once per epoch."""
  config = base_config()
  config.dataset.name = dataset
  config.dataset.standardize = True
  config.model = ml_collections.ConfigDict({"name": model})
  config.task.name = task
  config.optimizer.name = optimizer
  config.optimizer.learning_rate = learning_rate
  config.train.batch_size = batch_size
  config.train.num_epochs = num_epochs
  # Epochs of these datasets are a few steps: evaluate (and checkpoint) every 100 steps.
  config.train.log_every_steps = 100
  config.train.eval_every_steps = 100
  config.train.steps_per_dispatch = 10
  return config


def variant(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """No variant: the recipe; `:tiny`: a few steps for tests; anything else is an error."""
  if arg == "tiny":
    return shrink(config)
  if arg:
    raise ValueError(f"unknown variant {arg!r}: use 'tiny' or none")
  return config


def shrink(config: ml_collections.ConfigDict, steps: int = 20) -> ml_collections.ConfigDict:
  """The `:tiny` variant used by tests: a few steps, evaluated twice."""
  config.train.num_epochs = 0.0
  config.train.num_steps = steps
  config.train.eval_every_steps = steps // 2
  config.train.log_every_steps = steps // 2
  config.train.steps_per_dispatch = 1
  return config
