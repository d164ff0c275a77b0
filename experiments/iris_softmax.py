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
