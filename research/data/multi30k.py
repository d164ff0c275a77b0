"""Multi30k (task 1): English-German Flickr30k image descriptions, for translation.

Raw files as the authors publish them (multi30k/dataset, data/task1/raw): one untokenised
sentence per line, line i of `SPLIT.en` translating line i of `SPLIT.de`, gzipped or not.
Splits: train (29,000 pairs), validation = `val` (1,014), test = `test_2016_flickr` (1,000),
the test set papers report BLEU on. The languages come from `dataset.source_language` /
`dataset.target_language` (de -> en by default); tokenising is shared with every parallel
corpus (research/data/parallel.py).
"""

from __future__ import annotations

import gzip
import logging
import os
import zlib

import ml_collections

from research.data.parallel import READERS, Sentences, check_pairs
from research.errors import ConfigError, DataError

log = logging.getLogger(__name__)

NAME = "multi30k"
FILES = {"train": "train", "validation": "val", "test": "test_2016_flickr"}
LANGUAGES = ("de", "en", "fr", "cs")
# Where the files are looked for when dataset.data_dir is ''. Module-level so tests can change it.
LOCAL_DIRS: tuple[str, ...] = ("/work/shared/datasets/multi30k",)
WHERE_TO_GET = ("download data/task1/raw/{train,val,test_2016_flickr}.{de,en}.gz from "
                "https://github.com/multi30k/dataset and set dataset.data_dir to their directory")


def _path(data_dir: str, stem: str, language: str) -> str | None:
  for candidate in (f"{stem}.{language}.gz", f"{stem}.{language}"):
    path = os.path.join(data_dir, candidate)
    if os.path.isfile(path):
      return path
  return None


def read_lines(path: str) -> list[str]:
  """The lines of a (gzipped) UTF-8 text file, without line ends; DataError if unreadable."""
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f"{NAME}: cannot read {path} ({e}): the file is corrupt or truncated; "
                    f"{WHERE_TO_GET}.") from e
  try:
    content = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b"\n") + 1
    raise DataError(f"{NAME}: {path} line {line} is not UTF-8 text ({e.reason}): the file is "
                    f"corrupt; {WHERE_TO_GET}.") from e
  return content.splitlines()


def read(config: ml_collections.ConfigDict) -> tuple[dict[str, Sentences], str]:
  """The raw sentence pairs of every split, and the directory they came from."""
  src, tgt = config.source_language, config.target_language
  for field, language in (("source_language", src), ("target_language", tgt)):
    if language not in LANGUAGES:
      raise ConfigError(f"dataset.{field} = {language!r}: Multi30k has {', '.join(LANGUAGES)} "
                      "(test_2016_flickr only de, en, fr): pick one of those.")
  dirs = [config.data_dir] if config.data_dir else list(LOCAL_DIRS)
  data_dir = next((d for d in dirs if _path(d, FILES["train"], src)), dirs[0])
  sentences = {}
  for split, stem in FILES.items():
    paths = [_path(data_dir, stem, language) for language in (src, tgt)]
    missing = [f"{stem}.{lang}[.gz]" for lang, p in zip((src, tgt), paths) if p is None]
    if missing:
      where = data_dir if os.path.isdir(data_dir) else f"{data_dir} (no such directory)"
      raise DataError(f"{NAME}: {where} lacks {', '.join(missing)} (dataset.data_dir); "
                      f"{WHERE_TO_GET}.")
    sentences[split] = check_pairs(read_lines(paths[0]), read_lines(paths[1]), paths[0],
                                   paths[1], WHERE_TO_GET)
  log.info("%s %s->%s from %s: %s", NAME, src, tgt, data_dir,
           ", ".join(f"{len(s.source)} {k}" for k, s in sentences.items()))
  return sentences, data_dir


READERS[NAME] = read
