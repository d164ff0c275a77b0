"""MNIST and Fashion-MNIST: upstream IDX files in a local directory, or TFDS.

Both come as 60k train + 10k test 28x28 grey-scale images in 10 classes, in the same four-file
IDX layout. `source='auto'` prefers local files (they need neither network nor a TFDS build)
and falls back to TFDS.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import ml_collections

from research.data import idx, tfds_source
from research.data.dataset import Split
from research.data.sources import Source, require_source
from research.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
# Upstream file names, per split.
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclasses.dataclass(frozen=True)
class MnistLike:
  tfds_name: str
  where_to_get: str  # How to obtain the four IDX files, for error messages.


DATASETS = {
    "mnist": MnistLike(
        tfds_name="mnist",
        where_to_get="download them from https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion_mnist": MnistLike(
        tfds_name="fashion_mnist",
        where_to_get=("`apt-get install dataset-fashion-mnist` puts them in "
                      "/usr/share/datasets/fashion-mnist, or download them from "
                      "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")),
}

# Directories where system packages install a dataset's IDX files; used when dataset.data_dir
# is ''. Module-level so tests can point it at fake files.
LOCAL_DIRS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
}


def file_names() -> list[str]:
  return [name for pair in FILES.values() for name in pair]


def missing_files(data_dir: str) -> list[str]:
  """The upstream files (names) that `data_dir` lacks; all of them if it does not exist."""
  return [n for n in file_names() if not os.path.isfile(os.path.join(data_dir, n))]


def read_local(name: str, data_dir: str) -> Source:
  """Reads the four IDX files of `name` from `data_dir`.

  Missing files are all listed in one error, so a user fixes them in one go.
  """
  info = DATASETS[name]
  missing = missing_files(data_dir)
  if missing:
    status = "" if os.path.isdir(data_dir) else " (the directory does not exist)"
    raise DataError(
        f"{name}: {data_dir}{status} lacks {', '.join(missing)} (dataset.data_dir, "
        f"source=local). To get the files, {info.where_to_get}; or read the dataset "
        "through TFDS with dataset.source=tfds.")
  log.info("%s: reading IDX files from %s", name, data_dir)
  splits = {}
  for split, (images_file, labels_file) in FILES.items():
    images, labels = idx.read_images_and_labels(
        os.path.join(data_dir, images_file), os.path.join(data_dir, labels_file),
        IMAGE_SHAPE, NUM_CLASSES, split_name=split)
    splits[split] = Split(inputs=images, labels=labels)
  return Source(train=splits["train"], test=splits["test"], num_classes=NUM_CLASSES)


def read_tfds(name: str, data_dir: str) -> Source:
  tfds_name = DATASETS[name].tfds_name
  log.info("%s: reading TFDS dataset %r from %s", name, tfds_name, data_dir or "default dir")
  splits = {}
  for split in FILES:
    images, labels = tfds_source.read_split(tfds_name, split, data_dir)
    splits[split] = Split(inputs=images, labels=labels)
  return Source(train=splits["train"], test=splits["test"], num_classes=NUM_CLASSES)


def load(name: str, config: ml_collections.ConfigDict) -> Source:
  """Loads `name` ('mnist' or 'fashion_mnist') from the source `config.source` selects.

  local: IDX files in `config.data_dir` ('' = the well-known install directory, if any).
  tfds: TFDS, with `config.data_dir` as its data dir ('' = TFDS default).
  auto: local when the directory holds all four files, else TFDS.
  """
  source = require_source(config, name, ("local", "tfds"))
  if source == "tfds":
    return read_tfds(name, config.data_dir)
  candidates = [config.data_dir] if config.data_dir else list(LOCAL_DIRS.get(name, ()))
  if source == "local":
    if not candidates:
      raise DataError(f"{name}: dataset.source=local needs dataset.data_dir, the directory with "
                      f"{', '.join(file_names())}. To get the files, "
                      f"{DATASETS[name].where_to_get}.")
    return read_local(name, candidates[0])
  for data_dir in candidates:  # source == 'auto'
    if not missing_files(data_dir):
      return read_local(name, data_dir)
  try:
    return read_tfds(name, config.data_dir)
  except DataError as e:
    local = "; ".join(f"{d} lacks {', '.join(missing_files(d))}" for d in candidates)
    raise DataError(
        f"{name}: found no local IDX files ({local or 'dataset.data_dir is not set'}); to use "
        f"local files, {DATASETS[name].where_to_get}, and set dataset.data_dir. Reading from "
        f"TFDS instead failed: {e}") from e


# MNIST's real test images, as a small dataset of their own (`mnist_t10k`): the only MNIST
# files on machines without network access, used for small-budget transfer learning. Read
# from dataset.data_dir, else from the offline copy beside the repository, else TFDS's test
# split. The examples have no fixed splits: test and validation are held out by load_dataset.
T10K_NAME = "mnist_t10k"
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T10K_DIRS: tuple[str, ...] = (os.path.join(_REPO_ROOT, "..", "shared", "datasets", "mnist"),)


def load_t10k(config: ml_collections.ConfigDict) -> Source:
  source = require_source(config, T10K_NAME, ("local", "tfds"))
  if source == "tfds":
    images, labels = tfds_source.read_split("mnist", "test", config.data_dir)
    return Source(train=Split(inputs=images, labels=labels), num_classes=NUM_CLASSES)
  images_file, labels_file = FILES["test"]
  candidates = [config.data_dir] if config.data_dir else list(T10K_DIRS)
  for data_dir in candidates:
    if all(os.path.isfile(os.path.join(data_dir, f)) for f in FILES["test"]):
      images, labels = idx.read_images_and_labels(
          os.path.join(data_dir, images_file), os.path.join(data_dir, labels_file),
          IMAGE_SHAPE, NUM_CLASSES, split_name="t10k")
      return Source(train=Split(inputs=images, labels=labels), num_classes=NUM_CLASSES)
  if source == "local":
    raise DataError(f"{T10K_NAME}: {' or '.join(candidates)} lacks {images_file} and "
                    f"{labels_file} (dataset.data_dir): "
                    f"{DATASETS['mnist'].where_to_get}.")
  images, labels = tfds_source.read_split("mnist", "test", config.data_dir)
  return Source(train=Split(inputs=images, labels=labels), num_classes=NUM_CLASSES)
