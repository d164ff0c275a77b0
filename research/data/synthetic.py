"""Synthetic datasets with known ground truth, to check that training recovers it.

All randomness comes from `split_seed`, so a dataset is fully determined by its config.
"""

from __future__ import annotations

import ml_collections
import numpy as np
from sklearn import datasets as sk_datasets

from research.data.dataset import Split
from research.data.sources import Source, require_source
from research.data.splits import derived_seed
from research.errors import ConfigError

DEFAULT_NUM_EXAMPLES = 1000
# Streams of derived_seed for the parts of a synthetic dataset (0-2 are used by splits.py).
PARAMS_STREAM = 10
DATA_STREAM = 11


def synthetic_linear_params(seed: int, num_features: int) -> tuple[np.ndarray, np.float32]:
  """The true (w, b) of `synthetic_linear` for `split_seed=seed`: w float32 (F,), b float32.

  Exposed so a test can check that a trained linear model recovers them. They are in the raw
  feature space: compare against a model trained with dataset.standardize=False.
  """
  rng = np.random.default_rng(derived_seed(seed, PARAMS_STREAM))
  w = rng.normal(size=(num_features,)).astype(np.float32)
  b = np.float32(rng.normal())
  return w, b


def load_linear(config: ml_collections.ConfigDict) -> Source:
  """y = x @ w + b + noise, x ~ N(0, I), noise ~ N(0, config.noise^2); float32 (N,) targets."""
  require_source(config, "synthetic_linear", ("synthetic",))
  n = config.num_examples or DEFAULT_NUM_EXAMPLES
  w, b = synthetic_linear_params(config.split_seed, config.num_features)
  rng = np.random.default_rng(derived_seed(config.split_seed, DATA_STREAM))
  x = rng.normal(size=(n, config.num_features)).astype(np.float32)
  y = x.astype(np.float64) @ w + b + config.noise * rng.normal(size=(n,))
  return Source(train=Split(inputs=x, labels=y.astype(np.float32)), num_classes=None,
                sized_by_num_examples=True)


def load_classification(config: ml_collections.ConfigDict) -> Source:
  """A binary problem from sklearn's make_classification; `noise` = fraction of flipped labels."""
  require_source(config, "synthetic_classification", ("synthetic",))
  if config.noise > 1:
    raise ConfigError(f"dataset.noise = {config.noise} is invalid for synthetic_classification: "
                      "it is the fraction of flipped labels, so it must be in [0, 1].")
  n = config.num_examples or DEFAULT_NUM_EXAMPLES
  num_features = config.num_features
  x, y = sk_datasets.make_classification(
      n_samples=n, n_features=num_features,
      n_informative=max(1, num_features // 2), n_redundant=0, n_repeated=0,
      n_classes=2, n_clusters_per_class=1, flip_y=config.noise,
      random_state=derived_seed(config.split_seed, DATA_STREAM) % 2**32)
  return Source(train=Split(inputs=x.astype(np.float32), labels=y.astype(np.int32)),
                num_classes=2, sized_by_num_examples=True)
