"""Softmax regression on scikit-learn's wine data (178 wines, 3 cultivars, 13 features)."""

import ml_collections

from experiments._tabular import tabular_config, variant

REFERENCE = dict(
    metric="test/accuracy", value=0.93, goal=">=",
    source="UCI wine (Forina et al.); linear classifiers reach 95-100% held-out")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = tabular_config("wine", "softmax_regression", "multiclass",
                          optimizer="sgd", learning_rate=0.1, batch_size=16, num_epochs=100)
  config.task.top_k = 2
  return variant(config, arg)
