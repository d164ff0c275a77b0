"""MovieLens 100K: upstream ml-100k files in a local directory, or TFDS `movielens/100k-ratings`.

Two datasets are read from the same 100,000 ratings (943 users, 1,682 movies):

- `movielens_100k`: explicit ratings 1-5. Inputs are (N, 2) int32 [user, item] indices (the
  upstream 1-based ids minus one), labels the float32 ratings. Locally, u1.base / u1.test are
  train / test, and the official five folds u1.test ... u5.test (disjoint; together all
  ratings) drive cross-validation through `Source.folds`. TFDS ships the ratings without the
  fold files, so there test and folds are seeded random splits (`dataset.split_seed`).
- `movielens_100k_implicit`: leave-one-out implicit feedback (He et al., NCF, 2017). Each
  user's latest rating is the test positive and the one before it the validation positive;
  every other rating is a training positive (inputs (N, 2), label 1). A validation or test row
  is (101,) int32 [user, positive item, 99 items the user never rated], sampled with
  `dataset.split_seed`, so every run ranks the same candidates.

Files are validated line by line: a malformed line, a rating outside 1-5 or an id outside the
counts of u.info is a DataError naming file:line. Model sizes (`num_users`, `num_items`, and the
training ratings' `global_mean`) reach the model through `Source.model_fields`; the item titles
go to `workdir/dataset.json` for `launch/recommend.py`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import ml_collections
import numpy as np

from research.data import splits
from research.data.dataset import Split
from research.data.sources import Source, require_source
from research.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DATASETS = ("movielens_100k", "movielens_100k_implicit")
TFDS_NAME = "movielens/100k-ratings"
WHERE_TO_GET = ("download https://files.grouplens.org/datasets/movielens/ml-100k.zip and unzip it "
                "(the files are in ml-100k/), or read the ratings through TFDS with "
                f"dataset.source=tfds (`tfds build {TFDS_NAME} --file_format=array_record`)")
MIN_RATING, MAX_RATING = 1, 5
NUM_FOLDS = 5
NUM_EVAL_NEGATIVES = 99
# Streams of `splits.derived_seed` for the evaluation negatives and the order of ratings made
# in the same second (0-2: the test, validation and subset hold-outs).
NEGATIVES_STREAM = 3
TIES_STREAM = 4
# Column order of a ratings array (and of u.data / uN.base / uN.test lines).
USER, ITEM, RATING, TIMESTAMP = range(4)

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Where the files are looked for when dataset.data_dir is '': the shared offline copy beside
# the repository. Module-level so tests can point it at fake files.
LOCAL_DIRS: tuple[str, ...] = (
    os.path.normpath(os.path.join(_REPO, "..", "shared", "datasets", "movielens_100k")),
    "/work/shared/datasets/movielens_100k",
)


# ---------------------------------------------------------------------------------------------
# Local files.


def read_info(path: str) -> tuple[int, int]:
  """(num_users, num_items) from u.info ('943 users', '1682 items', '100000 ratings')."""
  counts: dict[str, int] = {}
  with open(path, encoding="latin-1") as f:
    for number, line in enumerate(f, 1):
      fields = line.split()
      if not fields:
        continue
      if len(fields) != 2 or not fields[0].isdigit():
        raise DataError(f"{path}:{number}: expected '<count> <what>' (e.g. '943 users'), got "
                        f"{line.strip()!r}: the file is corrupt; re-download it.")
      counts[fields[1]] = int(fields[0])
  missing = [k for k in ("users", "items") if not counts.get(k)]
  if missing:
    raise DataError(f"{path} gives no (or zero) count of {' and '.join(missing)}; it should "
                    "read '943 users' and '1682 items': re-download it.")
  return counts["users"], counts["items"]


def read_ratings(path: str, num_users: int, num_items: int) -> np.ndarray:
  """(N, 4) int64 [user, item, rating, timestamp] of a tab-separated ratings file, checked.

  Every line must hold four integers, with the user in [1, num_users], the item in
  [1, num_items] (u.info's counts) and the rating in [1, 5]; the first offending line is named.
  """
  with open(path, encoding="latin-1") as f:
    lines = f.read().rstrip().split("\n")
  if lines == [""]:
    raise DataError(f"{path} is empty: re-download it.")
  rows = [line.split() for line in lines]
  for number, fields in enumerate(rows, 1):
    if len(fields) != 4:
      raise _bad_line(path, number, lines, "expected 4 tab-separated fields "
                      "(user, item, rating, timestamp)")
  try:
    ratings = np.array(rows, dtype=np.int64)
  except ValueError:  # not all integers: find the first such line
    for number, fields in enumerate(rows, 1):
      if not all(_is_int(v) for v in fields):
        raise _bad_line(path, number, lines, "every field must be an integer") from None
    raise
  for column, low, high, what, why in (
      (USER, 1, num_users, "user id", f" (u.info: {num_users} users)"),
      (ITEM, 1, num_items, "item id", f" (u.info: {num_items} items)"),
      (RATING, MIN_RATING, MAX_RATING, "rating", "")):
    bad = np.flatnonzero((ratings[:, column] < low) | (ratings[:, column] > high))
    if bad.size:
      raise _bad_line(path, int(bad[0]) + 1, lines,
                      f"{what} {ratings[bad[0], column]} is outside {low}-{high}{why}")
  return ratings


def _is_int(text: str) -> bool:
  try:
    int(text)
    return True
  except ValueError:
    return False


def _bad_line(path: str, number: int, lines: list[str], problem: str) -> DataError:
  return DataError(f"{path}:{number}: {problem}, got {lines[number - 1]!r}. The file is corrupt "
                   f"or not a MovieLens 100K ratings file: re-download it ({WHERE_TO_GET}).")


def read_titles(path: str, num_items: int) -> list[str]:
  """Movie titles by item index from u.item ('id|title|date|...'); [] when there is no u.item."""
  if not os.path.isfile(path):
    return []
  titles = [""] * num_items
  with open(path, encoding="latin-1") as f:
    for number, line in enumerate(f, 1):
      fields = line.rstrip("\n").split("|")
      if line.strip() and (len(fields) < 2 or not fields[0].isdigit()
                           or not 1 <= int(fields[0]) <= num_items):
        raise DataError(f"{path}:{number}: expected 'item id|title|...' with an id in "
                        f"1-{num_items}, got {line.strip()[:80]!r}: re-download it.")
      if line.strip():
        titles[int(fields[0]) - 1] = fields[1]
  return titles


def required_files(name: str, cv: bool) -> list[str]:
  if name == "movielens_100k_implicit":
    return ["u.info", "u.data"]
  return ["u.info", "u1.base", "u1.test"] + (
      [f"u{k}.test" for k in range(2, NUM_FOLDS + 1)] if cv else [])


def missing_files(data_dir: str, name: str, cv: bool) -> list[str]:
  return [f for f in required_files(name, cv) if not os.path.isfile(os.path.join(data_dir, f))]


def official_folds(pool: np.ndarray, data_dir: str, num_users: int,
                   num_items: int) -> tuple[np.ndarray, ...]:
  """Indices into `pool` (u1.base then u1.test) of the ratings of u1.test ... u5.test.

  A rating is identified by its (user, item) pair, unique in MovieLens 100K. The folds must
  partition the pool, or they are not the files that belong with u1.base / u1.test.
  """
  keys = pool[:, USER] * (num_items + 1) + pool[:, ITEM]
  order = np.argsort(keys)
  if np.any(np.diff(keys[order]) == 0):
    raise DataError(f"{data_dir}: u1.base and u1.test rate some (user, item) pair twice; "
                    "MovieLens 100K rates each pair once: re-download the files.")
  folds = []
  for k in range(1, NUM_FOLDS + 1):
    path = os.path.join(data_dir, f"u{k}.test")
    ratings = read_ratings(path, num_users, num_items)
    fold_keys = ratings[:, USER] * (num_items + 1) + ratings[:, ITEM]
    at = np.searchsorted(keys[order], fold_keys).clip(0, len(keys) - 1)
    unknown = np.flatnonzero(keys[order][at] != fold_keys)
    if unknown.size:
      raise DataError(f"{path}:{unknown[0] + 1}: the rating of user {ratings[unknown[0], USER]} "
                      f"for item {ratings[unknown[0], ITEM]} is in neither u1.base nor u1.test: "
                      "the fold files come from different downloads; re-download them together.")
    folds.append(order[at])
  sizes = sum(len(f) for f in folds)
  if sizes != len(pool) or len(np.unique(np.concatenate(folds))) != len(pool):
    raise DataError(f"{data_dir}: u1.test ... u{NUM_FOLDS}.test do not partition the "
                    f"{len(pool)} ratings of u1.base + u1.test (they hold {sizes}, with "
                    "overlaps or gaps): re-download the files together.")
  return tuple(folds)


# ---------------------------------------------------------------------------------------------
# TFDS.


def read_tfds(data_dir: str) -> tuple[np.ndarray, int, int, list[str]]:
  """(ratings (N, 4), num_users, num_items, titles) of TFDS `movielens/100k-ratings`.

  Read with `tfds.data_source` (no TensorFlow needed) and never downloaded. TFDS has no u.info,
  so the counts are the largest ids; every example is checked like a line of a local file.
  """
  import tensorflow_datasets as tfds  # ~1 s to import; only TFDS users pay it.
  from tensorflow_datasets.core import constants
  try:  # registers the builder, which tfds does not import by default without TensorFlow
    import tensorflow_datasets.structured.movielens  # noqa: F401
  except ImportError:  # a prepared data dir is still readable without the builder class
    pass

  where = data_dir or f"the default TFDS data dir {constants.DATA_DIR}"
  try:
    source = tfds.data_source(TFDS_NAME, split="train", data_dir=data_dir or None, download=False)
    num_examples = len(source)
  except (KeyError, NotImplementedError, OSError) as e:
    detail = str(e).strip("'\"").splitlines()[0] if str(e) else type(e).__name__
    raise DataError(
        f"TFDS dataset {TFDS_NAME!r} cannot be read from {where} ({detail}). It is never "
        f"downloaded here: prepare it on a machine with network access (`tfds build "
        f"{TFDS_NAME} --file_format=array_record`) and set dataset.data_dir to its data dir, "
        "or use the upstream files with dataset.source=local and dataset.data_dir=DIR.") from e
  if not num_examples:
    raise DataError(f"TFDS dataset {TFDS_NAME!r} in {where} is empty: rebuild it.")
  ratings = np.empty((num_examples, 4), dtype=np.int64)
  titles: dict[int, str] = {}
  for i in range(num_examples):
    example = source[i]
    try:
      user, item = int(example["user_id"]), int(example["movie_id"])
      rating, timestamp = float(example["user_rating"]), int(example["timestamp"])
    except (KeyError, TypeError, ValueError) as e:
      raise DataError(f"TFDS dataset {TFDS_NAME!r} example {i}: no integer user_id / movie_id, "
                      f"rating or timestamp ({type(e).__name__}: {e}): rebuild the dataset.") from e
    if user < 1 or item < 1 or rating != round(rating) or not MIN_RATING <= rating <= MAX_RATING:
      raise DataError(f"TFDS dataset {TFDS_NAME!r} example {i}: user {user}, item {item}, "
                      f"rating {rating}: ids must be >= 1 and ratings whole numbers in "
                      f"{MIN_RATING}-{MAX_RATING}: rebuild the dataset.")
    ratings[i] = (user, item, int(rating), timestamp)
    title = example.get("movie_title", b"")
    titles[item] = title.decode("utf-8", "replace") if isinstance(title, bytes) else str(title)
  num_users, num_items = int(ratings[:, USER].max()), int(ratings[:, ITEM].max())
  return ratings, num_users, num_items, [titles.get(i, "") for i in range(1, num_items + 1)]


# ---------------------------------------------------------------------------------------------
# Splits of the two datasets.


def rating_split(ratings: np.ndarray) -> Split:
  """(N, 2) int32 0-based [user, item] indices and float32 ratings."""
  return Split(inputs=(ratings[:, [USER, ITEM]] - 1).astype(np.int32),
               labels=ratings[:, RATING].astype(np.float32))


def leave_one_out(ratings: np.ndarray, num_users: int, num_items: int, seed: int,
                  num_negatives: int = NUM_EVAL_NEGATIVES) -> tuple[Split, Split, Split]:
  """(train, validation, test) of the NCF protocol, as 0-based indices.

  Per user, ratings are ordered by time: the last is the test positive, the one before it the
  validation positive, the rest are training positives. Ties in time are common (44% of
  MovieLens 100K users rated their last two movies in the same second) and are broken by a
  `seed`ed random order of the items: breaking them by item id would make the test items the
  highest ids, which are the least popular movies, and the file order differs between local
  files and TFDS. Users with fewer than 3 ratings (none in MovieLens 100K) are only trained
  on. Each evaluation row gets `num_negatives` distinct items the user never rated (in any
  split), drawn with `seed`.
  """
  tie_break = np.random.default_rng(splits.derived_seed(seed, TIES_STREAM)).permutation(
      num_items + 1)[ratings[:, ITEM]]
  r = ratings[np.lexsort((tie_break, ratings[:, TIMESTAMP], ratings[:, USER]))]
  users = r[:, USER]
  ends = np.flatnonzero(np.r_[users[1:] != users[:-1], True])  # last row of each user
  starts = np.r_[0, ends[:-1] + 1]
  evaluated = ends - starts + 1 >= 3
  test_rows, val_rows = ends[evaluated], ends[evaluated] - 1
  in_train = np.ones(len(r), bool)
  in_train[test_rows] = in_train[val_rows] = False
  rated = np.zeros((num_users + 1, num_items + 1), bool)
  rated[r[:, USER], r[:, ITEM]] = True
  rng = np.random.default_rng(splits.derived_seed(seed, NEGATIVES_STREAM))

  def eval_split(rows: np.ndarray) -> Split:
    inputs = np.empty((len(rows), 2 + num_negatives), np.int64)
    for j, row in enumerate(rows):
      user = r[row, USER]
      unrated = np.flatnonzero(~rated[user, 1:]) + 1
      if len(unrated) < num_negatives:
        raise DataError(f"MovieLens user {user} rated {num_items - len(unrated)} of {num_items} "
                        f"items, leaving fewer than {num_negatives} unrated items to rank "
                        "against: the ratings file is corrupt.")
      inputs[j, :2] = r[row, USER], r[row, ITEM]
      inputs[j, 2:] = rng.choice(unrated, num_negatives, replace=False)
    return Split(inputs=(inputs - 1).astype(np.int32), labels=np.ones(len(rows), np.float32))

  train = Split(inputs=(r[in_train][:, [USER, ITEM]] - 1).astype(np.int32),
                labels=np.ones(int(in_train.sum()), np.float32))
  return train, eval_split(val_rows), eval_split(test_rows)


def _metadata(name: str, num_users: int, num_items: int, titles: list[str]) -> dict[str, Any]:
  return {"name": name, "num_users": num_users, "num_items": num_items,
          # Model indices are the upstream ids minus this (MovieLens ids start at 1).
          "id_base": 1, "item_titles": titles}


def explicit_source(config: ml_collections.ConfigDict, ratings: np.ndarray | None,
                    test: np.ndarray | None, folds: tuple[np.ndarray, ...] | None,
                    num_users: int, num_items: int, titles: list[str]) -> Source:
  """The rating dataset: `ratings` is the train part (with `test`), or all ratings (TFDS).

  Without `test` (TFDS), the test split or the cross-validation folds are seeded random ones,
  made here rather than in `load_dataset` so `global_mean` is the mean of exactly the
  training ratings (the mean of a test fold would leak it into the model).
  """
  name = "movielens_100k"
  pool = ratings if test is None else np.concatenate([ratings, test])
  if test is None and not config.cv_folds:
    train, held = splits.hold_out(rating_split(ratings), config.test_fraction,
                                  splits.derived_seed(config.split_seed, splits.TEST_STREAM),
                                  stratify=False, what="test")
    source = Source(train=train, test=held, num_classes=None, stratify=False)
    mean = float(train.labels.mean())
  else:
    if test is None:
      folds = tuple(held for _, held in splits.fold_indices(
          pool[:, RATING], config.cv_folds, config.split_seed, stratify=False))
    if config.cv_folds:
      if config.cv_folds != len(folds):
        raise ConfigError(f"dataset.cv_folds = {config.cv_folds}, but {name} comes with "
                          f"{len(folds)} official folds (u1-u{len(folds)}): set "
                          f"dataset.cv_folds={len(folds)}.")
      kept = np.ones(len(pool), bool)
      kept[folds[config.cv_fold]] = False
      mean = float(pool[kept, RATING].mean())
    else:
      mean = float(ratings[:, RATING].mean())
    source = Source(train=rating_split(ratings),
                    test=None if test is None else rating_split(test),
                    num_classes=None, stratify=False, folds=folds)
  return dataclasses.replace(
      source, model_fields={"num_users": num_users, "num_items": num_items, "global_mean": mean},
      metadata=_metadata(name, num_users, num_items, titles))


def implicit_source(config: ml_collections.ConfigDict, ratings: np.ndarray, num_users: int,
                    num_items: int, titles: list[str]) -> Source:
  train, validation, test = leave_one_out(ratings, num_users, num_items, config.split_seed)
  metadata = _metadata("movielens_100k_implicit", num_users, num_items, titles)
  metadata["protocol"] = (f"leave-one-out by time; {NUM_EVAL_NEGATIVES} sampled unrated items "
                          "per validation / test row")
  return Source(train=train, validation=validation, test=test, num_classes=None, stratify=False,
                model_fields={"num_users": num_users, "num_items": num_items},
                metadata=metadata)


# ---------------------------------------------------------------------------------------------
# The loader.


def read_local(name: str, config: ml_collections.ConfigDict, data_dir: str) -> Source:
  cv = bool(config.cv_folds)
  missing = missing_files(data_dir, name, cv)
  if missing:
    status = "" if os.path.isdir(data_dir) else " (the directory does not exist)"
    raise DataError(f"{name}: {data_dir}{status} lacks {', '.join(missing)} (dataset.data_dir, "
                    f"source=local). To get the files, {WHERE_TO_GET}.")
  log.info("%s: reading MovieLens 100K files from %s", name, data_dir)
  path = lambda f: os.path.join(data_dir, f)  # noqa: E731
  num_users, num_items = read_info(path("u.info"))
  titles = read_titles(path("u.item"), num_items)
  if name == "movielens_100k_implicit":
    return implicit_source(config, read_ratings(path("u.data"), num_users, num_items),
                           num_users, num_items, titles)
  train = read_ratings(path("u1.base"), num_users, num_items)
  test = read_ratings(path("u1.test"), num_users, num_items)
  folds = (official_folds(np.concatenate([train, test]), data_dir, num_users, num_items)
           if cv else None)
  return explicit_source(config, train, test, folds, num_users, num_items, titles)


def read_from_tfds(name: str, config: ml_collections.ConfigDict) -> Source:
  log.info("%s: reading TFDS dataset %r from %s", name, TFDS_NAME,
           config.data_dir or "default dir")
  ratings, num_users, num_items, titles = read_tfds(config.data_dir)
  if name == "movielens_100k_implicit":
    return implicit_source(config, ratings, num_users, num_items, titles)
  return explicit_source(config, ratings, None, None, num_users, num_items, titles)


def load(name: str, config: ml_collections.ConfigDict) -> Source:
  """Loads `name` (see `DATASETS`) from the source `config.source` selects.

  local: the ml-100k files in `config.data_dir` ('' = the shared offline copy, `LOCAL_DIRS`).
  tfds: TFDS `movielens/100k-ratings`, with `config.data_dir` as its data dir.
  auto: local when a directory holds the files, else TFDS.
  """
  source = require_source(config, name, ("local", "tfds"))
  if source == "tfds":
    return read_from_tfds(name, config)
  cv = bool(config.cv_folds)
  candidates = [config.data_dir] if config.data_dir else list(LOCAL_DIRS)
  found = [d for d in candidates if not missing_files(d, name, cv)]
  if found:
    return read_local(name, config, found[0])
  if source == "local":
    if not candidates:
      raise DataError(f"{name}: dataset.source=local needs dataset.data_dir, the directory "
                      f"with {', '.join(required_files(name, cv))}. To get the files, "
                      f"{WHERE_TO_GET}.")
    return read_local(name, config, candidates[0])  # raises, naming the missing files
  try:
    return read_from_tfds(name, config)
  except DataError as e:
    local = "; ".join(f"{d} lacks {', '.join(missing_files(d, name, cv))}" for d in candidates)
    raise DataError(f"{name}: found no local MovieLens 100K files "
                    f"({local or 'dataset.data_dir is not set'}); to use local files, "
                    f"{WHERE_TO_GET}, and set dataset.data_dir. Reading from TFDS instead "
                    f"failed: {e}") from e
