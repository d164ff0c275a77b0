"""Reads a TFDS split into numpy arrays through `tfds.data_source`, which needs no TensorFlow.

Never downloads: a launch on a machine without network access would otherwise hang or fail deep
inside TFDS. A dataset that is not prepared raises DataError saying how to provide it instead.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from research.errors import DataError


def open_split(name: str, split: str, data_dir: str = "") -> Any:
  """The random-access `tfds.data_source` of one non-empty split, or a DataError saying how to
  prepare it. `data_dir` '' means TFDS's default data dir."""
  import tensorflow_datasets as tfds  # Imported here: it takes ~1 s and most datasets don't use it.
  from tensorflow_datasets.core import constants

  where = data_dir or f"the default TFDS data dir {constants.DATA_DIR}"
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
    num_examples = len(source)
    first = source[0] if num_examples else None
  except (KeyError, NotImplementedError, OSError) as e:
    # KeyError: no splits (not prepared); NotImplementedError: prepared as TFRecord, which has no
    # random access; OSError: files missing or unreadable.
    root = data_dir or constants.DATA_DIR
    if os.path.isdir(os.path.join(root, name)):  # Something is there: TFDS's reason matters.
      detail = str(e).strip("'\"").splitlines()[0] if str(e) else type(e).__name__
      problem = f"cannot be read from {where} ({detail})"
    else:  # TFDS's own message would be about file formats; the dataset just isn't there.
      problem = f"is not prepared in {where} (no {os.path.join(root, name)})"
    raise DataError(
        f"TFDS dataset {name!r} (split {split!r}) {problem}. It is never downloaded here: "
        f"prepare it in array_record format on a machine with network access (`tfds build "
        f"{name} --file_format=array_record`) and set dataset.data_dir to its data dir, or use "
        "local raw files with dataset.source=local and dataset.data_dir=DIR.") from e
  if first is None:
    raise DataError(f"TFDS dataset {name!r} split {split!r} in {where} is empty: rebuild it.")
  return source


def read_split(name: str, split: str, data_dir: str = "",
               input_key: str = "image", label_key: str = "label") -> tuple[np.ndarray, np.ndarray]:
  """Returns (inputs, labels) of TFDS dataset `name`, split `split`, decoding every example.

  Decoding everything up front is fine for the small datasets this framework holds in memory
  (MNIST: 70k examples). `data_dir` '' means TFDS's default data dir.
  """
  source = open_split(name, split, data_dir)
  num_examples = len(source)
  first = source[0]
  missing = [k for k in (input_key, label_key) if k not in first]
  if missing:
    raise DataError(f"TFDS dataset {name!r} has no field(s) {missing}; it has {sorted(first)}.")
  inputs = np.empty((num_examples, *np.shape(first[input_key])),
                    dtype=np.asarray(first[input_key]).dtype)
  labels = np.empty((num_examples,), dtype=np.int32)
  for i in range(num_examples):
    example = first if i == 0 else source[i]
    inputs[i] = example[input_key]
    labels[i] = example[label_key]
  return inputs, labels
