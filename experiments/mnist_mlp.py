"""MNIST: 784-500-10 ReLU MLP, Adam 1e-3, batch 64, 10 epochs.

Users run it on TFDS `mnist`; MNIST's training images are not on these machines.
"""

import ml_collections

from experiments._mnist_family import apply_variant, mnist_family_config

REFERENCE = dict(
    metric="test/accuracy", value=0.98, goal=">=",
    source="784-500-10 MLP with Adam, 10 epochs: about 98% (LeCun et al. 1998 report 98.4-98.5% for 500-300 nets)")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return apply_variant(mnist_family_config("mnist", "mlp"), arg)


def get_sweep(arg: str | None = None) -> dict:
  """Learning rate x batch size x width, by TPE with median pruning on validation accuracy."""
  return {
      "metric": "validation/accuracy", "mode": "max", "sampler": "tpe", "pruner": "median",
      "num_trials": 4 if arg == "tiny" else 30,
      "params": {
          "optimizer.learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
          "train.batch_size": {"type": "choice", "values": [32, 64, 128, 256]},
          "model.hidden_sizes": {"type": "choice", "values": [[256], [500], [1000]]},
      },
  }
