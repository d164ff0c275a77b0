"""The in-memory dataset types every loader returns, and the label check they all share.

Datasets here are small enough to hold as host numpy arrays (MNIST is 55 MB as uint8), so a
`Dataset` is just three named `Split`s of arrays. Arrays are made read-only: the same arrays are
shared by every consumer of a loaded dataset, and an in-place shuffle in one place would silently
change what another sees.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from research.errors import DataError

SPLIT_NAMES = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
  """One split: `inputs[i]` is example i and `labels[i]` its target.

  inputs: float32 (N, F) features, float32 (N, H, W, C) or uint8 (N, H, W, C) images.
  labels: int32 (N,) class ids, or float32 (N,) / (N, K) regression targets.
  """

  inputs: np.ndarray
  labels: np.ndarray

  def __post_init__(self):
    if len(self.inputs) != len(self.labels):
      raise DataError(
          f"split has {len(self.inputs)} inputs but {len(self.labels)} labels; every example "
          "needs exactly one label: check that the input and label files belong together.")
    for array in (self.inputs, self.labels):
      array.flags.writeable = False

  def __len__(self) -> int:
    return len(self.labels)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """A named dataset with 'train', 'validation' and 'test' splits (any may be empty)."""

  name: str
  splits: dict[str, Split]
  num_classes: int | None  # None for regression.
  # Sizes passed to the model and facts saved with the run: see `sources.Source`.
  model_fields: dict[str, Any] = dataclasses.field(default_factory=dict)
  metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if tuple(sorted(self.splits)) != tuple(sorted(SPLIT_NAMES)):
      raise ValueError(f"dataset {self.name!r} has splits {sorted(self.splits)}, "
                       f"expected exactly {list(SPLIT_NAMES)}")

  @property
  def input_shape(self) -> tuple[int, ...]:
    """Shape of one example's inputs, e.g. (28, 28, 1) or (num_features,)."""
    return tuple(self.splits["train"].inputs.shape[1:])

  @property
  def is_classification(self) -> bool:
    return self.num_classes is not None


def check_labels(split_name: str, labels: np.ndarray, num_classes: int,
                 source: str | None = None) -> None:
  """Raises DataError unless every label is an integer class id in [0, num_classes).

  An out-of-range label would otherwise surface much later as a silently wrong one-hot (JAX
  clips gather indices instead of failing), so it is caught when the data is read. `source`
  names the file the labels came from, when there is one, so the message says what to replace.
  """
  where = f"split {split_name!r}" + (f" ({source})" if source else "")
  labels = np.asarray(labels)
  if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.bool_)):
    raise DataError(f"{where}: labels must be integer class ids, got dtype {labels.dtype}.")
  bad = (labels < 0) | (labels >= num_classes)
  num_bad = int(np.count_nonzero(bad))
  if num_bad:
    bad_values = np.unique(labels[bad])
    shown = ", ".join(str(v) for v in bad_values[:5]) + (", ..." if len(bad_values) > 5 else "")
    raise DataError(
        f"{where}: {num_bad} of {labels.size} labels are outside [0, {num_classes}) "
        f"(offending values: {shown}); the label file is corrupt or belongs to another dataset: "
        "re-download it.")
