"""What a dataset loader returns, before `load_dataset` adds the shared processing.

Loaders only read data; holding out validation/test splits, subsetting, standardising and label
checks happen once in `load_dataset`, so every dataset gets them the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_collections
import numpy as np

from research.data.dataset import Split
from research.errors import ConfigError


@dataclasses.dataclass(frozen=True, eq=False)
class Source:
  """The splits a dataset comes with.

  train: all examples not in a provided split (for data without splits: all examples).
  test / validation: the official splits, or None to hold them out of `train`.
  sized_by_num_examples: the loader already used `num_examples` (synthetic data size), so it
    must not also subset the train split.
  folds: predefined cross-validation folds, for datasets published with their own (MovieLens
    100K's u1-u5): fold k's held-out examples, as indices into the examples of `train`
    followed by those of `test`. With `dataset.cv_folds` set, they are used instead of a
    seeded k-fold split, and they make cross-validation possible although `test` is fixed.
  stratify: whether held-out splits keep class proportions; None = for classification.
    Sequence labels (a target per token) cannot be stratified.
  model_fields: sizes only the data knows, passed to the model if it declares the field
    (e.g. `vocab_size` of a vocabulary built from train text, `num_users`, `num_items`).
  metadata: JSON-serialisable facts a checkpoint needs to be used later (e.g. the
    vocabulary): written to `workdir/dataset.json` when training starts, so sampling or
    recommending from a workdir needs nothing else.
  """

  train: Split
  num_classes: int | None
  test: Split | None = None
  validation: Split | None = None
  sized_by_num_examples: bool = False
  folds: tuple[np.ndarray, ...] | None = None
  stratify: bool | None = None
  model_fields: dict[str, Any] = dataclasses.field(default_factory=dict)
  metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


Loader = Callable[[ml_collections.ConfigDict], Source]


def require_source(config: ml_collections.ConfigDict, name: str, allowed: tuple[str, ...]) -> str:
  """Returns the source to use, `config.source` unless it is 'auto' and only one is allowed.

  Raises ConfigError if `config.source` is not one the dataset can be read from.
  """
  if config.source == "auto":
    return allowed[0] if len(allowed) == 1 else "auto"
  if config.source not in allowed:
    raise ConfigError(f"dataset.source = {config.source!r}, but dataset {name!r} can only be read "
                      f"from {' or '.join(repr(s) for s in allowed)}: set dataset.source to "
                      f"one of those or to 'auto'.")
  return config.source
