"""SST-2 (binary Stanford Sentiment Treebank, as in GLUE): local tsv files or TFDS `glue/sst2`.

Splits: test is the official dev set (872 sentences), which is what papers report as "SST-2
dev accuracy" (GLUE's test labels are hidden); validation is a seeded, stratified
`dataset.validation_fraction` slice of the 67,349 train phrases; train is the rest.

Local files: `train.tsv` and `dev.tsv` in `dataset.data_dir`, each with a header row naming a
`label` column and a `sentence` (GLUE) or `content` column, in either order, so both GLUE's
own files and copies that put the label first read the same. A `test.tsv` is ignored.
"""

from __future__ import annotations

import logging
import os

import ml_collections
import numpy as np

from research.data import text_source
from research.data.text import default_cache_dir
from research.data.sources import Source, require_source
from research.data.text_source import Texts
from research.errors import DataError

log = logging.getLogger(__name__)

NAME = "sst2"
TFDS_NAME = "glue/sst2"
LABEL_NAMES = ("negative", "positive")
FILES = {"train": "train.tsv", "test": "dev.tsv"}  # Our split -> the upstream file.
TEXT_COLUMNS = ("sentence", "content", "text")
WHERE_TO_GET = ("download SST-2.zip from https://dl.fbaipublicfiles.com/glue/data/SST-2.zip "
                "(GLUE) and unzip it")
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Well-known local copies, used when dataset.data_dir is ''. Module-level so tests can change it.
LOCAL_DIRS: tuple[str, ...] = (
    "/work/shared/datasets/sst2",
    os.path.normpath(os.path.join(_REPO_ROOT, "..", "shared", "datasets", "sst2")),
)


def read_tsv(path: str) -> Texts:
  """The (sentence, label) rows of one SST-2 tsv file, every line checked.

  Raises DataError naming the file, the line and what is wrong: a missing header column, a
  row with the wrong number of tab-separated fields, or a label other than 0 / 1.
  """
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise DataError(f"{NAME}: cannot read {path} ({e.strerror}); {WHERE_TO_GET}.") from e
  try:
    content = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b"\n") + 1
    raise DataError(f"{NAME}: {path} line {line} is not UTF-8 text ({e.reason}); the file is "
                    f"corrupt: {WHERE_TO_GET} again.") from e
  lines = content.splitlines()
  if not lines or not lines[0].strip():
    raise DataError(f"{NAME}: {path} is empty; it needs a header row (label<TAB>sentence) and "
                    f"one row per example: {WHERE_TO_GET} again.")
  header = [h.strip().lower() for h in lines[0].split("\t")]
  text_column = next((c for c in TEXT_COLUMNS if c in header), None)
  if "label" not in header or text_column is None:
    raise DataError(f"{NAME}: {path} has header {lines[0]!r}; expected tab-separated columns "
                    f"'label' and 'sentence' (or 'content'). GLUE's test.tsv has no labels and "
                    f"cannot be read as {os.path.basename(path)}: {WHERE_TO_GET}.")
  label_at, text_at, width = header.index("label"), header.index(text_column), len(header)
  texts, labels = [], []
  for number, line in enumerate(lines[1:], start=2):
    if not line.strip():
      continue
    fields = line.split("\t")
    if len(fields) != width:
      raise DataError(f"{NAME}: {path} line {number} has {len(fields)} tab-separated fields, "
                      f"expected {width} ({', '.join(header)}): {line[:80]!r}. Fix the line or "
                      f"{WHERE_TO_GET} again.")
    label = fields[label_at].strip()
    if label not in ("0", "1"):
      raise DataError(f"{NAME}: {path} line {number} has label {label!r}; SST-2 labels are 0 "
                      f"(negative) or 1 (positive). Fix the line or {WHERE_TO_GET} again.")
    texts.append(fields[text_at])
    labels.append(int(label))
  if not texts:
    raise DataError(f"{NAME}: {path} has a header but no examples: {WHERE_TO_GET} again.")
  return Texts(texts, np.asarray(labels, dtype=np.int64))


def missing_files(data_dir: str) -> list[str]:
  return [f for f in FILES.values() if not os.path.isfile(os.path.join(data_dir, f))]


def read_local(data_dir: str) -> dict[str, Texts]:
  missing = missing_files(data_dir)
  if missing:
    status = "" if os.path.isdir(data_dir) else " (the directory does not exist)"
    raise DataError(f"{NAME}: {data_dir}{status} lacks {', '.join(missing)} (dataset.data_dir, "
                    f"source=local). To get them, {WHERE_TO_GET}; or read SST-2 through TFDS "
                    "with dataset.source=tfds.")
  log.info("%s: reading tsv files from %s", NAME, data_dir)
  return {split: read_tsv(os.path.join(data_dir, f)) for split, f in FILES.items()}


def read_tfds(data_dir: str) -> dict[str, Texts]:
  try:  # Registers the builder's code; a prepared data dir is readable without it.
    import tensorflow_datasets.text.glue  # noqa: F401
  except ImportError:
    pass
  log.info("%s: reading TFDS %r from %s", NAME, TFDS_NAME, data_dir or "the default dir")
  # GLUE's test labels are hidden (-1): its validation split is our test split.
  return {"train": text_source.read_tfds_texts(TFDS_NAME, "train", data_dir, "sentence"),
          "test": text_source.read_tfds_texts(TFDS_NAME, "validation", data_dir, "sentence")}


def load(config: ml_collections.ConfigDict) -> Source:
  """SST-2 from `config.source`: 'local' tsv files, 'tfds', or 'auto' (local when present)."""
  source = require_source(config, NAME, ("local", "tfds"))
  candidates = [config.data_dir] if config.data_dir else list(LOCAL_DIRS)
  if source == "tfds":
    parts, cache_dir = read_tfds(config.data_dir), config.data_dir
  elif source == "local":
    parts, cache_dir = read_local(candidates[0]), candidates[0]
  else:
    local = next((d for d in candidates if not missing_files(d)), None)
    if local is not None:
      parts, cache_dir = read_local(local), local
    else:
      try:
        parts, cache_dir = read_tfds(config.data_dir), config.data_dir
      except DataError as e:
        where = "; ".join(f"{d} lacks {', '.join(missing_files(d))}" for d in candidates)
        raise DataError(f"{NAME}: found no local tsv files ({where}); to use local files, "
                        f"{WHERE_TO_GET} and set dataset.data_dir. Reading from TFDS instead "
                        f"failed: {e}") from e
  return text_source.text_source(NAME, config, parts["train"], parts["test"], num_classes=2,
                                 label_names=LABEL_NAMES, cache_dir=default_cache_dir(cache_dir))
