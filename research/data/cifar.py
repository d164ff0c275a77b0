"""CIFAR-10: the upstream python-batch files in a local directory, or TFDS `cifar10`.

50k train + 10k test 32x32x3 colour images in 10 classes, kept as uint8 (30 MB + 3 MB) so they
live on the device as bytes and are scaled to [0, 1] inside the compiled step. The upstream
archive (`cifar-10-python.tar.gz`) unpacks to `cifar-10-batches-py/` with `data_batch_1..5`
and `test_batch`: pickled dicts whose `data` is (N, 3072) uint8 in channel-major (CHW) order.
`source='auto'` prefers those files and falls back to TFDS.
"""

from __future__ import annotations

import logging
import os
import pickle

import ml_collections
import numpy as np

from research.data import tfds_source
from research.data.dataset import Split, check_labels
from research.data.sources import Source, require_source
from research.errors import DataError

log = logging.getLogger(__name__)

NAME = "cifar10"
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
WHERE_TO_GET = ("download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and unpack "
                "it (it holds cifar-10-batches-py/), or prepare TFDS 'cifar10'")


def batches_dir(data_dir: str) -> str:
  """`data_dir` itself or its `cifar-10-batches-py` subdirectory, whichever holds the files."""
  nested = os.path.join(data_dir, "cifar-10-batches-py")
  return nested if os.path.isdir(nested) else data_dir


def missing_files(data_dir: str) -> list[str]:
  root = batches_dir(data_dir)
  return [f for f in TRAIN_FILES + TEST_FILES if not os.path.isfile(os.path.join(root, f))]


def read_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
  """(images (N, 32, 32, 3) uint8, labels (N,) int32) of one python-batch file, validated."""
  try:
    with open(path, "rb") as f:
      batch = pickle.load(f, encoding="bytes")
  except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
    raise DataError(f"{path} is not a readable CIFAR-10 batch file ({e}); it is truncated or "
                    f"corrupt: {WHERE_TO_GET}.") from e
  if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
    raise DataError(f"{path} is not a CIFAR-10 batch (expected a dict with 'data' and 'labels'"
                    f"): {WHERE_TO_GET}.")
  data = np.asarray(batch[b"data"])
  labels = np.asarray(batch[b"labels"], dtype=np.int64)
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != np.prod(IMAGE_SHAPE):
    raise DataError(f"{path}: 'data' has shape {data.shape} and dtype {data.dtype}, expected "
                    f"(N, 3072) uint8: the file is corrupt or from another dataset.")
  if len(labels) != len(data):
    raise DataError(f"{path}: {len(data)} images but {len(labels)} labels: the file is corrupt.")
  check_labels(os.path.basename(path), labels, NUM_CLASSES, source=path)
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW -> HWC
  return np.ascontiguousarray(images), labels.astype(np.int32)


def read_local(data_dir: str) -> Source:
  missing = missing_files(data_dir)
  if missing:
    where = data_dir if os.path.isdir(data_dir) else f"{data_dir} (the directory does not exist)"
    raise DataError(f"{NAME}: {where} lacks {', '.join(missing)} (dataset.data_dir): "
                    f"{WHERE_TO_GET}.")
  root = batches_dir(data_dir)
  log.info("%s: reading python batches from %s", NAME, root)
  splits = {}
  for split, files in (("train", TRAIN_FILES), ("test", TEST_FILES)):
    parts = [read_batch(os.path.join(root, f)) for f in files]
    splits[split] = Split(inputs=np.concatenate([p[0] for p in parts]),
                          labels=np.concatenate([p[1] for p in parts]))
  return Source(train=splits["train"], test=splits["test"], num_classes=NUM_CLASSES)


def read_tfds(data_dir: str) -> Source:
  splits = {split: Split(*tfds_source.read_split(NAME, split, data_dir))
            for split in ("train", "test")}
  return Source(train=splits["train"], test=splits["test"], num_classes=NUM_CLASSES)


def load(config: ml_collections.ConfigDict) -> Source:
  """local: python batches in `config.data_dir`; tfds: TFDS `cifar10`; auto: local if complete."""
  source = require_source(config, NAME, ("local", "tfds"))
  if source == "tfds":
    return read_tfds(config.data_dir)
  if source == "local":
    if not config.data_dir:
      raise DataError(f"{NAME}: dataset.source=local needs dataset.data_dir, the directory with "
                      f"{', '.join(TRAIN_FILES + TEST_FILES)}: {WHERE_TO_GET}.")
    return read_local(config.data_dir)
  if config.data_dir and not missing_files(config.data_dir):
    return read_local(config.data_dir)
  try:
    return read_tfds(config.data_dir)
  except DataError as e:
    local = (f"{config.data_dir} lacks {', '.join(missing_files(config.data_dir))}"
             if config.data_dir else "dataset.data_dir is not set")
    raise DataError(f"{NAME}: found no local python batches ({local}); reading TFDS 'cifar10' "
                    f"instead failed: {e}") from e
