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

from research.data import mnist, sklearn_source, splits, synthetic
from research.data.config import default_dataset_config, resolve_dataset_config
from research.data.dataset import Dataset, Split, check_labels
from research.data.idx import read_idx
from research.data.sources import Loader, Source
from research.data.synthetic import synthetic_linear_params
from research.registry import Registry

__all__ = [
    "DATASETS", "Dataset", "Split", "check_labels", "default_dataset_config", "load_dataset",
    "read_idx", "synthetic_linear_params",
]

DATASETS: Registry[Loader] = Registry("dataset")

for _name in mnist.DATASETS:
  DATASETS.register(_name)(functools.partial(mnist.load, _name))
for _name in sklearn_source.DATASETS:
  DATASETS.register(_name)(functools.partial(sklearn_source.load, _name))
DATASETS.register("synthetic_linear")(synthetic.load_linear)
DATASETS.register("synthetic_classification")(synthetic.load_classification)


def load_dataset(config: ml_collections.ConfigDict | Mapping[str, Any]) -> Dataset:
  """Loads the dataset `config` names, with train/validation/test splits.

  `config` is `config.dataset`: only `name` is required (see `default_dataset_config` for the
  other fields). Processing shared by all datasets, in order: hold out `test_fraction` of the
  examples as test when the dataset has no test split, hold out `validation_fraction` of the
  remaining training examples as validation when it has no validation split (both seeded by
  `split_seed`, stratified by class for classification), keep `num_examples` training examples,
  standardise tabular features with train statistics, and check class ids are in range.
  """
  config = resolve_dataset_config(config)
  loader = DATASETS.get(config.name, "dataset.name")
  source = loader(config)
  stratify = source.num_classes is not None
  seed = config.split_seed

  train, test, validation = source.train, source.test, source.validation
  if test is None:
    train, test = splits.hold_out(train, config.test_fraction,
                                  splits.derived_seed(seed, splits.TEST_STREAM), stratify, "test")
  if validation is None:
    train, validation = splits.hold_out(
        train, config.validation_fraction, splits.derived_seed(seed, splits.VALIDATION_STREAM),
        stratify, "validation")
  if not source.sized_by_num_examples:
    train = splits.subset(train, config.num_examples,
                          splits.derived_seed(seed, splits.SUBSET_STREAM))
  if config.standardize and train.inputs.ndim == 2:
    train, validation, test = splits.standardize(train, validation, test)

  named = {"train": train, "validation": validation, "test": test}
  if source.num_classes is not None:
    for split_name, split in named.items():
      check_labels(split_name, split.labels, source.num_classes)
      if split.labels.dtype != np.int32:
        named[split_name] = Split(inputs=split.inputs, labels=split.labels.astype(np.int32))
  return Dataset(name=config.name, splits=named, num_classes=source.num_classes)
