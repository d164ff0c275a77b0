"""scikit-learn's bundled datasets: small, always available offline, fast to train on.

They come without splits; `load_dataset` holds out the test and validation splits.
"""

from __future__ import annotations

from typing import Callable

import ml_collections
import numpy as np
from sklearn import datasets as sk_datasets

from research.data.dataset import Split
from research.data.sources import Source, require_source

# name -> (loader, num_classes or None for regression).
DATASETS: dict[str, tuple[Callable[..., tuple[np.ndarray, np.ndarray]], int | None]] = {
    "digits": (sk_datasets.load_digits, 10),
    "iris": (sk_datasets.load_iris, 3),
    "wine": (sk_datasets.load_wine, 3),
    "breast_cancer": (sk_datasets.load_breast_cancer, 2),
    "diabetes": (sk_datasets.load_diabetes, None),
}


def load(name: str, config: ml_collections.ConfigDict) -> Source:
  """All examples of scikit-learn dataset `name` as float32 features and int32/float32 labels.

  digits is returned as float32 (N, 8, 8, 1) images scaled to [0, 1] (its pixels are 0..16), so
  image models apply to it unchanged and standardisation (tabular only) leaves it alone.
  """
  require_source(config, name, ("sklearn",))
  load_fn, num_classes = DATASETS[name]
  inputs, labels = load_fn(return_X_y=True)
  inputs = np.asarray(inputs, dtype=np.float32)
  if name == "digits":
    inputs = inputs.reshape(-1, 8, 8, 1) / np.float32(16.0)
  labels = np.asarray(labels, dtype=np.int32 if num_classes else np.float32)
  return Source(train=Split(inputs=inputs, labels=labels), num_classes=num_classes)
