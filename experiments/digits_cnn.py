"""Small CNN on scikit-learn's 8x8 digits: the default experiment, no download needed."""

import ml_collections

from research.config import base_config

REFERENCE = dict(
    metric="test/accuracy", value=0.97, goal=">=",
    source="scikit-learn digits (UCI optdigits 8x8); small CNNs typically reach 97-99%")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = base_config()
  config.dataset.name = "digits"
  config.model = ml_collections.ConfigDict(dict(
      name="small_cnn", features=(32, 64), dense=128, dropout_rate=0.25))
  config.task.name = "multiclass"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2e-3
  config.schedule.name = "cosine"
  config.train.batch_size = 32
  config.train.num_epochs = 30.0
  config.train.log_every_steps = 40
  config.train.steps_per_dispatch = 8
  if arg == "tiny":  # seconds: for tests
    config.train.num_epochs = 0.0
    config.train.num_steps = 24
    config.train.eval_every_steps = 8
    config.train.log_every_steps = 8
  elif arg:
    raise ValueError(f"unknown variant {arg!r}: use 'tiny' or none")
  return config
