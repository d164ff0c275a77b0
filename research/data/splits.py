"""Seeded held-out splits, training subsets and train-only standardisation.

All randomness here is driven by `split_seed` alone, never by the training seed, so every
training seed of a sweep is trained and evaluated on exactly the same examples.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn import model_selection

from research.data.dataset import Split
from research.errors import ConfigError, DataError

# Streams of `derived_seed`: each use of split_seed draws independent randomness.
TEST_STREAM = 0
VALIDATION_STREAM = 1
SUBSET_STREAM = 2


def derived_seed(seed: int, stream: int) -> int:
  """An int seed for one purpose (stream) of `seed`, independent of the other streams."""
  return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def take(split: Split, indices: np.ndarray) -> Split:
  return Split(inputs=split.inputs[indices], labels=split.labels[indices])


def hold_out(split: Split, fraction: float, seed: int, stratify: bool,
             what: str = "held-out") -> tuple[Split, Split]:
  """Splits `split` into (rest, held_out) with held_out ~ `fraction` of the examples.

  Uses scikit-learn's train_test_split (held-out size rounded up, as scikit-learn does), stratified
  by label when `stratify` so class proportions match in both parts. Stratification is impossible
  when a class has a single example or the held-out part is smaller than the number of classes
  (tiny debug datasets); the split is then a plain seeded random one. Both parts keep the original
  example order, so a split's content does not depend on how it was shuffled.
  """
  n = len(split)
  if fraction == 0.0 or n == 0:
    return split, take(split, np.arange(0))
  num_held = math.ceil(fraction * n)
  if num_held >= n:
    raise DataError(f"cannot hold out a {fraction:g} {what} fraction of only {n} examples: "
                    "lower the fraction or use more examples (dataset.num_examples).")
  labels = None
  if stratify:
    _, counts = np.unique(split.labels, return_counts=True)
    if counts.min() >= 2 and min(num_held, n - num_held) >= len(counts):
      labels = split.labels
  rest, held = model_selection.train_test_split(
      np.arange(n), test_size=num_held, random_state=seed, shuffle=True, stratify=labels)
  return take(split, np.sort(rest)), take(split, np.sort(held))


def fold_indices(labels: np.ndarray, num_folds: int, seed: int,
                 stratify: bool) -> list[tuple[np.ndarray, np.ndarray]]:
  """The `(rest, held_out)` example indices of each of `num_folds` cross-validation folds.

  Exactly scikit-learn's `StratifiedKFold` (when `stratify`) or `KFold`, with `shuffle=True,
  random_state=seed`, so a fold can be reproduced, or compared with, outside this framework.
  Every example is held out in exactly one fold. Stratification needs every class to have at
  least `num_folds` examples; when one has fewer (tiny debug datasets) the folds are a plain
  seeded `KFold`, as `hold_out` falls back to a random split.
  """
  n = len(labels)
  if num_folds > n:
    raise DataError(f"cannot split {n} examples into dataset.cv_folds = {num_folds} folds: "
                    f"use at most {n} folds.")
  splitter: model_selection.BaseCrossValidator = model_selection.KFold(
      num_folds, shuffle=True, random_state=seed)
  if stratify:
    _, counts = np.unique(labels, return_counts=True)
    if counts.min() >= num_folds:
      splitter = model_selection.StratifiedKFold(num_folds, shuffle=True, random_state=seed)
  return list(splitter.split(np.zeros((n, 1)), labels))


def predefined_fold(num_examples: int, held_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """`(rest, held_out)` indices of a fold a dataset publishes (see `Source.folds`), checked."""
  held = np.unique(np.asarray(held_out, dtype=np.int64))
  if len(held) != len(held_out) or (len(held) and (held[0] < 0 or held[-1] >= num_examples)):
    raise DataError(f"a predefined cross-validation fold has repeated indices or indices "
                    f"outside [0, {num_examples}): the dataset's fold files are corrupt; "
                    "re-download them.")
  return np.setdiff1d(np.arange(num_examples), held), held


def concatenate(*parts: Split) -> Split:
  """The examples of `parts`, in order: the pool that predefined folds index into."""
  return Split(inputs=np.concatenate([p.inputs for p in parts]),
               labels=np.concatenate([p.labels for p in parts]))


def subset(split: Split, num_examples: int, seed: int, field: str = "dataset.num_examples") -> Split:
  """A seeded random subset of `num_examples` examples (in original order); 0 keeps all."""
  if num_examples == 0 or num_examples == len(split):
    return split
  if num_examples > len(split):
    raise ConfigError(f"{field} = {num_examples} but the train split has only {len(split)} "
                      f"examples: use at most {len(split)}, or 0 for all.")
  rng = np.random.default_rng(seed)
  return take(split, np.sort(rng.permutation(len(split))[:num_examples]))


def standardize(train: Split, *others: Split) -> tuple[Split, ...]:
  """Standardises features with the train split's per-feature mean and std, applied to all splits.

  Fit on train only: statistics computed on validation/test would leak them into training. A
  feature that is constant on train has std 0; it is divided by 1 instead (becoming 0 on train),
  so it does not produce inf/NaN. Only float features are standardised; anything else
  (uint8 images, say) is returned unchanged.
  """
  if not np.issubdtype(train.inputs.dtype, np.floating) or len(train) == 0:
    return (train, *others)
  features = train.inputs.astype(np.float64)
  mean = features.mean(axis=0)
  std = features.std(axis=0)
  std = np.where(std > 0, std, 1.0)

  def apply(split: Split) -> Split:
    inputs = ((split.inputs.astype(np.float64) - mean) / std).astype(np.float32)
    return Split(inputs=inputs, labels=split.labels)

  return tuple(apply(s) for s in (train, *others))
