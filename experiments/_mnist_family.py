"""Shared MNIST / Fashion-MNIST recipes (not an experiment itself).

The MLP recipe: 784-500-10 ReLU, Adam 1e-3, batch 64, 10 epochs. The CNN recipe: the
Keras MNIST CNN (Conv32-pool-Conv64-pool-Conv64-Dense64-Dense10), Adam 1e-3, batch 64,
5 epochs. Both validate on 10% of train carved with `dataset.split_seed`.
"""

import ml_collections

from research.config import base_config


def mnist_family_config(dataset: str, model: str) -> ml_collections.ConfigDict:
  config = base_config()
  config.dataset.name = dataset
  config.task.name = "multiclass"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.train.batch_size = 64
  config.train.log_every_steps = 200
  if model == "mlp":
    config.model = ml_collections.ConfigDict(dict(
        name="mlp", hidden_sizes=(500,), activation="relu", dropout_rate=0.0))
    config.train.num_epochs = 10.0
    config.train.steps_per_dispatch = 8
  elif model == "cnn":
    config.model = ml_collections.ConfigDict(dict(name="keras_cnn", dropout_rate=0.0))
    config.train.num_epochs = 5.0
    # 8 steps per compiled call: the same numbers, 10-15% faster on CPU (1.09x PyTorch
    # against 0.94x at 1, BENCHMARKS.md), for ~3 s more compilation.
    config.train.steps_per_dispatch = 8
  else:
    raise ValueError(f"unknown MNIST-family model {model!r}")
  return config


def apply_variant(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """`:tiny` (tests: 2,000 examples, 20 steps), `:cpu` (a couple of minutes on 2 cores)."""
  if arg == "tiny":
    config.dataset.num_examples = 2000
    config.train.num_epochs = 0.0
    config.train.num_steps = 20
    config.train.eval_every_steps = 10
    config.train.log_every_steps = 10
    config.train.steps_per_dispatch = 1
  elif arg == "cpu":
    config.dataset.num_examples = 12000
  elif arg:
    raise ValueError(f"unknown variant {arg!r}: use 'tiny', 'cpu' or none")
  return config
