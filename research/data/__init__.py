"""Datasets by name: TFDS, raw files in a local data dir, scikit-learn's bundled data, synthetic.

`load_dataset(config.dataset)` returns a `Dataset` of host numpy arrays; `research.training`
puts small datasets on the devices once and batches them there.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np

from research.data import (cifar, imdb, mnist, movielens, shakespeare, sklearn_source, splits,
                           sst2, synthetic)
from research.data import multi30k, parallel  # noqa: F401  (multi30k registers its reader)
from research.data.config import default_dataset_config, resolve_dataset_config
from research.data.dataset import Dataset, Split, check_labels
from research.data.idx import read_idx
from research.data.sources import Loader, Source
from research.data.synthetic import synthetic_linear_params
from research.errors import ConfigError
from research.registry import Registry

__all__ = [
    "DATASETS", "Dataset", "Split", "check_labels", "default_dataset_config", "load_dataset",
    "read_idx", "synthetic_linear_params",
]

DATASETS: Registry[Loader] = Registry("dataset")

for _name in mnist.DATASETS:
  DATASETS.register(_name)(functools.partial(mnist.load, _name))
DATASETS.register(mnist.T10K_NAME)(mnist.load_t10k)
for _name in sklearn_source.DATASETS:
  DATASETS.register(_name)(functools.partial(sklearn_source.load, _name))
DATASETS.register("synthetic_linear")(synthetic.load_linear)
DATASETS.register("synthetic_classification")(synthetic.load_classification)
DATASETS.register(cifar.NAME)(cifar.load)
DATASETS.register(sst2.NAME)(sst2.load)
DATASETS.register(imdb.NAME)(imdb.load)
DATASETS.register(multi30k.NAME)(parallel.load)
for _name in shakespeare.DATASETS:
  DATASETS.register(_name)(functools.partial(shakespeare.load, _name))
for _name in movielens.DATASETS:
  DATASETS.register(_name)(functools.partial(movielens.load, _name))


def load_dataset(config: ml_collections.ConfigDict | Mapping[str, Any]) -> Dataset:
  """Loads the dataset `config` names, with train/validation/test splits.

  `config` is `config.dataset`: only `name` is required (see `default_dataset_config` for the
  other fields). Processing shared by all datasets, in order: hold out `test_fraction` of the
  examples as test when the dataset has no test split (or, with `cv_folds` set, make fold
  `cv_fold` the test split: see `cross_validation_split`), hold out `validation_fraction` of the
  remaining training examples as validation when it has no validation split (both seeded by
  `split_seed`, stratified by class for classification), keep `num_examples` training examples,
  standardise tabular features with train statistics, and check class ids are in range.
  """
  config = resolve_dataset_config(config)
  loader = DATASETS.get(config.name, "dataset.name")
  source = loader(config)
  stratify = _stratify(source)
  seed = config.split_seed

  train, test, validation = source.train, source.test, source.validation
  if config.cv_folds:
    train, test = cross_validation_split(config, source)
  elif test is None:
    train, test = splits.hold_out(train, config.test_fraction,
                                  splits.derived_seed(seed, splits.TEST_STREAM), stratify, "test")
  if validation is None:
    train, validation = splits.hold_out(
        train, config.validation_fraction, splits.derived_seed(seed, splits.VALIDATION_STREAM),
        stratify, "validation")
  if not source.sized_by_num_examples:
    train = splits.subset(train, config.num_examples,
                          splits.derived_seed(seed, splits.SUBSET_STREAM))
  if (config.standardize and train.inputs.ndim == 2
      and np.issubdtype(train.inputs.dtype, np.floating)):
    train, validation, test = splits.standardize(train, validation, test)

  named = {"train": train, "validation": validation, "test": test}
  if source.num_classes is not None:
    for split_name, split in named.items():
      check_labels(split_name, split.labels, source.num_classes)
      if split.labels.dtype != np.int32:
        named[split_name] = Split(inputs=split.inputs, labels=split.labels.astype(np.int32))
  return Dataset(name=config.name, splits=named, num_classes=source.num_classes,
                 model_fields=dict(source.model_fields), metadata=dict(source.metadata))


def _stratify(source: Source) -> bool:
  """Held-out splits keep class proportions: for class labels, unless the source says no."""
  return source.num_classes is not None if source.stratify is None else source.stratify


def cross_validation_split(config: ml_collections.ConfigDict,
                           source: Source) -> tuple[Split, Split]:
  """`(train, test)` of fold `config.cv_fold` of `config.cv_folds`.

  A dataset published with folds (`source.folds`, e.g. MovieLens 100K's u1-u5) uses them.
  Otherwise the dataset must come without a test split (scikit-learn, synthetic): its
  examples are split by `splits.fold_indices` (StratifiedKFold for classification, seeded by
  `split_seed`). A fixed test split is refused: folding it into training would evaluate on
  examples the published benchmark keeps for testing, so the numbers would not compare.
  """
  if source.folds is not None:
    if len(source.folds) != config.cv_folds:
      raise ConfigError(f"dataset.cv_folds = {config.cv_folds}, but dataset {config.name!r} "
                        f"comes with {len(source.folds)} predefined folds: set "
                        f"dataset.cv_folds={len(source.folds)}.")
    pool = source.train if source.test is None else splits.concatenate(source.train, source.test)
    rest, held = splits.predefined_fold(len(pool), source.folds[config.cv_fold])
  elif source.test is not None:
    raise ConfigError(f"dataset.cv_folds = {config.cv_folds}, but dataset {config.name!r} has a "
                      "fixed test split, so it cannot be cross-validated: set "
                      "dataset.cv_folds=0, or cross-validate a dataset without a test split "
                      "(scikit-learn or synthetic data).")
  else:
    pool = source.train
    rest, held = splits.fold_indices(pool.labels, config.cv_folds, config.split_seed,
                                     stratify=_stratify(source))[config.cv_fold]
  # In the pool's order, as hold_out keeps it (KFold lists a fold's examples shuffled).
  return splits.take(pool, np.sort(rest)), splits.take(pool, np.sort(held))
