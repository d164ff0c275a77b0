"""Softmax regression on Fisher's iris (150 flowers, 3 species)."""

import ml_collections

from experiments._tabular import tabular_config, variant

REFERENCE = dict(
    metric="test/accuracy", value=0.93, goal=">=",
    source="Fisher 1936; multinomial logistic regression typically 93-97% held-out")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = tabular_config("iris", "softmax_regression", "multiclass",
                          optimizer="sgd", learning_rate=0.1, batch_size=16, num_epochs=100)
  config.task.top_k = 2
  return variant(config, arg)


def get_sweep(arg: str | None = None) -> dict:
  """Learning rate x optimizer x batch size, on validation loss (accuracy ties on 12 flowers)."""
  return {
      "metric": "validation/loss", "mode": "min", "sampler": "tpe", "pruner": "median",
      "num_trials": 6 if arg == "tiny" else 30,
      "params": {
          "optimizer.learning_rate": {"type": "loguniform", "low": 1e-3, "high": 1.0},
          "optimizer.name": {"type": "choice", "values": ["sgd", "momentum", "adam"]},
          "train.batch_size": {"type": "choice", "values": [8, 16, 32]},
      },
  }
