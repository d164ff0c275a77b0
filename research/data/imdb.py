"""IMDB movie reviews (Maas et al. 2011): TFDS `imdb_reviews`, or the upstream `aclImdb` folder.

25,000 train and 25,000 test reviews, balanced positive / negative; validation is a seeded,
stratified `dataset.validation_fraction` slice of train. HTML line breaks (`<br />`), which
the reviews are full of, become spaces. No copy exists on these offline machines: the tests
use `tfds.testing.mock_data` and fake `aclImdb` files.

Local files (`source=local`): `dataset.data_dir` is the `aclImdb` folder of the upstream
tarball (https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz), with one review per
file in `train/pos`, `train/neg`, `test/pos`, `test/neg`.
"""

from __future__ import annotations

import logging
import os
import re

import ml_collections
import numpy as np

from research.data import text_source
from research.data.sources import Source, require_source
from research.data.text import default_cache_dir
from research.data.text_source import Texts
from research.errors import DataError

log = logging.getLogger(__name__)

NAME = "imdb"
TFDS_NAME = "imdb_reviews"
LABEL_NAMES = ("negative", "positive")
LABEL_DIRS = ("neg", "pos")  # Class id = position.
WHERE_TO_GET = ("prepare TFDS `imdb_reviews` (`tfds build imdb_reviews "
                "--file_format=array_record`) and set dataset.data_dir to its data dir, or "
                "unpack https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz and set "
                "dataset.source=local, dataset.data_dir=.../aclImdb")
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def clean(review: str) -> str:
  return _BREAK.sub(" ", review)


def read_folder(data_dir: str, split: str) -> Texts:
  """The reviews of `data_dir/split/{neg,pos}/*.txt`, in file-name order."""
  texts, labels = [], []
  for label, sub in enumerate(LABEL_DIRS):
    folder = os.path.join(data_dir, split, sub)
    if not os.path.isdir(folder):
      raise DataError(f"{NAME}: {folder} does not exist (dataset.data_dir, source=local must be "
                      f"the aclImdb folder with train/ and test/, each with neg/ and pos/). To "
                      f"get it, {WHERE_TO_GET}.")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".txt"))
    if not names:
      raise DataError(f"{NAME}: {folder} holds no .txt reviews: unpack the tarball again.")
    for file_name in names:
      path = os.path.join(folder, file_name)
      try:
        with open(path, encoding="utf-8") as f:
          texts.append(clean(f.read()))
      except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{NAME}: cannot read review {path} as UTF-8 text ({e}); the copy is "
                        "corrupt: unpack the tarball again.") from e
      labels.append(label)
  return Texts(texts, np.asarray(labels, dtype=np.int64))


def read_tfds(data_dir: str) -> dict[str, Texts]:
  try:  # Registers the builder's code; a prepared data dir is readable without it.
    import tensorflow_datasets.text.imdb  # noqa: F401
  except ImportError:
    pass
  log.info("%s: reading TFDS %r from %s", NAME, TFDS_NAME, data_dir or "the default dir")
  parts = {}
  for split in ("train", "test"):
    raw = text_source.read_tfds_texts(TFDS_NAME, split, data_dir, "text")
    parts[split] = Texts([clean(t) for t in raw.texts], raw.labels)
  return parts


def load(config: ml_collections.ConfigDict) -> Source:
  """IMDB from TFDS (`source` 'tfds' or 'auto') or an aclImdb folder (`source=local`)."""
  source = require_source(config, NAME, ("tfds", "local"))
  if source == "local":
    if not config.data_dir:
      raise DataError(f"{NAME}: dataset.source=local needs dataset.data_dir, the aclImdb "
                      f"folder. To get it, {WHERE_TO_GET}.")
    parts = {split: read_folder(config.data_dir, split) for split in ("train", "test")}
  else:
    parts = read_tfds(config.data_dir)
  return text_source.text_source(NAME, config, parts["train"], parts["test"], num_classes=2,
                                 label_names=LABEL_NAMES,
                                 cache_dir=default_cache_dir(config.data_dir))
