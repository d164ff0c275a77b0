"""Tiny Shakespeare as fixed-length windows of token ids, for language modelling.

The text (1,115,394 characters, Karpathy's char-rnn `input.txt`) is read from a local file or
from TFDS `tiny_shakespeare`, and split by position as nanoGPT splits it: the first 90% is
train, the last 10% is held out. That tail is both the validation and the test split, so that
`test/loss` is the number nanoGPT reports as its validation loss (TFDS cuts the same tail into
halves, but the second half alone is measurably harder than the first, so neither half would
compare with published numbers). Best-checkpoint selection and early stopping therefore look at
the test text too: keep them off when reporting test numbers (the recipes do).

Each split becomes windows of `dataset.block_size + 1` tokens: inputs are the first
`block_size`, labels the same shifted by one. Training windows start every `dataset.stride`
tokens; held-out windows never overlap, so each held-out token is scored exactly once.

Two tokenisations, two dataset names:
  tiny_shakespeare        characters; the vocabulary is the sorted set of characters of the
                          whole text (65 for the real file), as in nanoGPT.
  tiny_shakespeare_bytes  UTF-8 bytes, a fixed vocabulary of 256 (for byte-level models such
                          as `gpt2_small`, with no GPT-2 BPE vocabulary offline).
The vocabulary goes into `Source.metadata` (saved as `workdir/dataset.json`), so sampling from
a checkpoint needs nothing but the workdir: `Codec.from_metadata` rebuilds the tokeniser. The
dataset fields of the classification text datasets (`tokenizer`, `vocab_size`, `max_length`)
do not apply here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import ml_collections
import numpy as np

from research.data.dataset import Split
from research.data.sources import Source, require_source
from research.errors import DataError

log = logging.getLogger(__name__)

FILE_NAME = "input.txt"
TFDS_NAME = "tiny_shakespeare"
# Where the file is looked for when dataset.data_dir is ''. Module-level so tests can change it.
LOCAL_DIRS: tuple[str, ...] = ("/work/shared/datasets/tiny_shakespeare",)
WHERE_TO_GET = ("download it from https://raw.githubusercontent.com/karpathy/char-rnn/master/"
                "data/tinyshakespeare/input.txt")
SPLIT_NAMES = ("train", "validation", "test")
CHAR, BYTE = "char", "byte"
DATASETS = {"tiny_shakespeare": CHAR, "tiny_shakespeare_bytes": BYTE}


@dataclasses.dataclass(frozen=True)
class Codec:
  """Text <-> token ids: characters of a vocabulary, or UTF-8 bytes."""

  kind: str
  vocab: tuple[str, ...] = ()  # kind 'char': id i is vocab[i]

  @property
  def vocab_size(self) -> int:
    return len(self.vocab) if self.kind == CHAR else 256

  @classmethod
  def from_metadata(cls, metadata: dict[str, Any], where: str = "dataset.json") -> "Codec":
    """The codec `metadata()` describes; DataError naming `where` if it is malformed."""
    kind = metadata.get("tokenizer")
    if kind == BYTE:
      return cls(BYTE)
    vocab = metadata.get("vocab")
    if kind != CHAR or not isinstance(vocab, list) or not vocab or any(
        not isinstance(c, str) or len(c) != 1 for c in vocab) or len(set(vocab)) != len(vocab):
      raise DataError(f"{where} does not describe a vocabulary (expected 'tokenizer': 'char' "
                      "with 'vocab', a list of distinct single characters, or 'tokenizer': "
                      "'byte'): it was not written by training on tiny_shakespeare, or was "
                      "edited. Restore it from the run that wrote the checkpoint.")
    return cls(CHAR, tuple(vocab))

  def metadata(self) -> dict[str, Any]:
    if self.kind == BYTE:
      return {"tokenizer": BYTE, "vocab_size": 256}
    return {"tokenizer": CHAR, "vocab": list(self.vocab)}

  def encode(self, text: str, what: str = "text") -> np.ndarray:
    """int32 ids of `text`; DataError listing the characters outside the vocabulary."""
    if self.kind == BYTE:
      return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    vocab_codes = np.array([ord(c) for c in self.vocab], np.int64)
    table = np.full(max(int(vocab_codes.max()), int(codes.max(initial=0))) + 1, -1, np.int32)
    table[vocab_codes] = np.arange(len(self.vocab), dtype=np.int32)
    ids = table[codes]
    if (ids < 0).any():
      unknown = sorted({chr(c) for c in np.unique(codes[ids < 0])})
      raise DataError(f"{what} has {len(unknown)} character(s) outside the vocabulary of "
                      f"{len(self.vocab)}: {', '.join(repr(c) for c in unknown[:10])}"
                      f"{', ...' if len(unknown) > 10 else ''}. Use only characters of the "
                      f"training text: {''.join(self.vocab)!r}.")
    return ids

  def decode(self, ids: Any) -> str:
    ids = np.asarray(ids).reshape(-1)
    if self.kind == BYTE:
      return ids.astype(np.uint8).tobytes().decode("utf-8", errors="replace")
    return "".join(self.vocab[i] for i in ids)


def position_split(text: str) -> dict[str, str]:
  """nanoGPT's split by position: the first 90% train, the last 10% validation and test."""
  i = int(len(text) * 0.9)
  return {"train": text[:i], "validation": text[i:], "test": text[i:]}


def windows(tokens: np.ndarray, block_size: int, stride: int) -> Split:
  """Windows of block_size + 1 tokens every `stride` tokens: (N, block) inputs and labels."""
  starts = np.arange(0, len(tokens) - block_size, stride)
  view = np.lib.stride_tricks.sliding_window_view(tokens, block_size + 1)[starts]
  return Split(inputs=np.ascontiguousarray(view[:, :-1], np.int32),
               labels=np.ascontiguousarray(view[:, 1:], np.int32))


def read_local(path: str) -> str:
  """The UTF-8 text of `path`, or a DataError naming the file and the fix."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise DataError(f"tiny_shakespeare: cannot read {path} ({e.strerror}; dataset.data_dir, "
                    f"source=local). To get the file, {WHERE_TO_GET}.") from e
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(f"tiny_shakespeare: {path} is not UTF-8 text (byte {e.start} is "
                    f"{raw[e.start:e.start + 1]!r}): it is corrupt or another file; "
                    f"{WHERE_TO_GET}.") from None
  if "\x00" in text:
    raise DataError(f"tiny_shakespeare: {path} contains NUL bytes, so it is a binary file, "
                    f"not the text: {WHERE_TO_GET}.")
  return text


def read_tfds(data_dir: str) -> dict[str, str]:
  """TFDS's train text, and its validation + test texts joined as the held-out tail.

  TFDS cuts the text at the same 90% mark (then halves the tail), so both sources give the
  same splits. Never downloads.
  """
  import tensorflow_datasets as tfds  # ~1 s to import; only this path needs it
  from tensorflow_datasets.core import constants

  texts = {}
  for split in SPLIT_NAMES:
    try:
      source = tfds.data_source(TFDS_NAME, split=split, data_dir=data_dir or None,
                                download=False)
      examples = [source[i] for i in range(len(source))]
    except (KeyError, NotImplementedError, OSError) as e:
      where = data_dir or f"the default TFDS data dir {constants.DATA_DIR}"
      raise DataError(
          f"TFDS dataset {TFDS_NAME!r} (split {split!r}) cannot be read from {where} "
          f"({type(e).__name__}). It is never downloaded here: prepare it with `tfds build "
          f"{TFDS_NAME} --file_format=array_record` and set dataset.data_dir to its data dir, "
          f"or use the local file (dataset.source=local, dataset.data_dir=DIR with "
          f"{FILE_NAME}).") from e
    if not examples or any("text" not in ex for ex in examples):
      raise DataError(f"TFDS dataset {TFDS_NAME!r} split {split!r} has no 'text' example: "
                      "rebuild it.")
    texts[split] = "".join(_as_str(ex["text"]) for ex in examples)
  tail = texts["validation"] + texts["test"]
  return {"train": texts["train"], "validation": tail, "test": tail}


def _as_str(value: Any) -> str:
  value = value.item() if isinstance(value, np.ndarray) else value
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _local_path(config: ml_collections.ConfigDict) -> str | None:
  """The input.txt to read, or None when no candidate directory holds one."""
  dirs = [config.data_dir] if config.data_dir else list(LOCAL_DIRS)
  for d in dirs:
    if os.path.isfile(os.path.join(d, FILE_NAME)):
      return os.path.join(d, FILE_NAME)
  return None


def read_texts(name: str, config: ml_collections.ConfigDict) -> dict[str, str]:
  """Train / validation / test text from the source `config.source` selects.

  local: `config.data_dir`/input.txt ('' = the well-known local directory). tfds: TFDS with
  `config.data_dir` as its data dir. auto: the local file when there is one, else TFDS.
  """
  source = require_source(config, name, ("local", "tfds"))
  if source == "tfds":
    return read_tfds(config.data_dir)
  path = _local_path(config)
  if path is not None:
    log.info("%s: reading %s", name, path)
    return position_split(read_local(path))
  dirs = [config.data_dir] if config.data_dir else list(LOCAL_DIRS)
  missing = f"no {FILE_NAME} in {' or '.join(dirs)}"
  if source == "local":
    raise DataError(f"{name}: {missing} (dataset.data_dir, source=local). To get the file, "
                    f"{WHERE_TO_GET}, and set dataset.data_dir to its directory.")
  try:
    return read_tfds(config.data_dir)
  except DataError as e:
    raise DataError(f"{name}: {missing}; to use the local file, {WHERE_TO_GET}, and set "
                    f"dataset.data_dir. Reading from TFDS instead failed: {e}") from e


def load(name: str, config: ml_collections.ConfigDict) -> Source:
  """Windows of every split, the vocabulary, and the model sizes only the data knows."""
  texts = read_texts(name, config)
  if DATASETS[name] == BYTE:
    codec = Codec(BYTE)
  else:
    codec = Codec(CHAR, tuple(sorted(set("".join(texts.values())))))
  block = config.block_size
  strides = {"train": config.stride or block, "validation": block, "test": block}
  splits = {}
  for split, text in texts.items():
    tokens = codec.encode(text, f"{name} {split} text")
    if len(tokens) <= block:
      raise DataError(f"{name}: the {split} split has {len(tokens)} tokens, too few for one "
                      f"example of dataset.block_size + 1 = {block + 1}: lower "
                      "dataset.block_size, or use the whole text.")
    splits[split] = windows(tokens, block, strides[split])
  log.info("%s: %s windows of %d tokens, vocabulary %d", name,
           " / ".join(f"{len(s)} {n}" for n, s in splits.items()), block, codec.vocab_size)
  return Source(train=splits["train"], validation=splits["validation"], test=splits["test"],
                num_classes=codec.vocab_size, stratify=False,
                model_fields={"vocab_size": codec.vocab_size, "block_size": block},
                metadata={**codec.metadata(), "block_size": block})
