"""Tokenisers: text -> token ids, built from the train split only, and saved with the run.

Three kinds, one interface (`encode`, `decode`, `vocab_size`, `to_metadata`):

- `WordTokenizer`: lower-cased words and punctuation; the `vocab_size - 2` most frequent train
  tokens, ties broken alphabetically so the vocabulary is a pure function of the train text.
- `CharTokenizer`: the same over characters.
- `SubwordTokenizer`: a sentencepiece unigram model trained on the train text. Training takes
  seconds to minutes, so the model is cached under a directory keyed by a digest of the text
  and settings (a changed text or setting never reuses a stale model).

Every kind reserves id 0 for <pad> and id 1 for <unk>, so models can derive the padding mask
as `ids != 0` and unseen tokens never index outside the embedding. Asked for (`specials`, e.g.
`dataset.mask_token` for masked-LM pretraining), more reserved tokens follow at ids 2, 3, ...:
<mask> is then id 2 (`MASK_ID`) whatever the text, and no text ever encodes to it.
`to_metadata()` is a JSON dict (the vocabulary itself, or the sentencepiece model as base64)
that the loop writes to `workdir/dataset.json`; `from_metadata` rebuilds the identical
tokeniser from it, so a trained workdir needs nothing else to encode new text.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import io
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from research.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
MASK = "<mask>"  # BERT's [MASK]: reserved only when asked (`specials=(MASK,)`), then at MASK_ID
MASK_ID = 2
KINDS = ("word", "char", "subword")
# Words with inner apostrophes stay whole ("don't", "n't", "'s"); other punctuation is a token.
_WORD_RE = re.compile(r"\w+(?:'\w+)*|'\w+|[^\w\s]")


class Tokenizer(Protocol):
  """What the text pipeline and a trained workdir need from a tokeniser."""

  vocab_size: int

  def encode(self, text: str) -> list[int]: ...

  def decode(self, ids: Iterable[int]) -> str: ...

  def to_metadata(self) -> dict[str, Any]: ...


def _normalise(text: str, lowercase: bool) -> str:
  return text.lower() if lowercase else text


class _VocabTokenizer:
  """Shared by the word and character tokenisers: a fixed list of tokens, <pad> and <unk> first."""

  kind = ""
  joiner = ""

  def __init__(self, vocab: Sequence[str], lowercase: bool = True):
    if list(vocab[:2]) != [PAD, UNK] or len(set(vocab)) != len(vocab):
      raise DataError(f"a {self.kind} vocabulary must start with {PAD!r}, {UNK!r} and hold each "
                      "token once; the saved vocabulary (dataset.json) is corrupt: retrain.")
    self.vocab = list(vocab)
    self.lowercase = lowercase
    self.ids = {token: i for i, token in enumerate(self.vocab)}

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)

  @staticmethod
  def split(text: str) -> list[str]:
    raise NotImplementedError

  @classmethod
  def build(cls, texts: Iterable[str], max_size: int, lowercase: bool = True,
            specials: Sequence[str] = ()) -> _VocabTokenizer:
    """The most frequent tokens of `texts` (ties: alphabetical) after <pad>, <unk> and the
    reserved `specials`, `max_size` tokens in all."""
    reserved = [PAD, UNK] + list(specials)
    counts = collections.Counter()
    for text in texts:
      counts.update(cls.split(_normalise(text, lowercase)))
    for token in reserved:
      counts.pop(token, None)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_size - len(reserved)]
    return cls(reserved + [token for token, _ in ranked], lowercase)

  def encode(self, text: str) -> list[int]:
    get = self.ids.get
    return [get(token, UNK_ID) for token in self.split(_normalise(text, self.lowercase))]

  def decode(self, ids: Iterable[int]) -> str:
    return self.joiner.join(self.vocab[i] for i in ids if i != PAD_ID)

  def to_metadata(self) -> dict[str, Any]:
    return {"kind": self.kind, "lowercase": self.lowercase, "vocab": self.vocab}


class WordTokenizer(_VocabTokenizer):
  kind = "word"
  joiner = " "

  @staticmethod
  def split(text: str) -> list[str]:
    return _WORD_RE.findall(text)


class CharTokenizer(_VocabTokenizer):
  kind = "char"

  @staticmethod
  def split(text: str) -> list[str]:
    return list(text)


class SubwordTokenizer:
  """A sentencepiece model (serialized proto) with <pad> = 0, <unk> = 1 and no BOS/EOS."""

  kind = "subword"

  def __init__(self, model_proto: bytes, lowercase: bool = True):
    import sentencepiece as spm
    self.model_proto = model_proto
    self.lowercase = lowercase
    self.processor = spm.SentencePieceProcessor()
    try:
      self.processor.LoadFromSerializedProto(model_proto)
    except (RuntimeError, OSError) as e:
      raise DataError(f"not a sentencepiece model ({e}): delete the cached .model file or the "
                      "workdir's dataset.json and rebuild it.") from e
    if self.processor.pad_id() != PAD_ID or self.processor.unk_id() != UNK_ID:
      raise DataError(f"sentencepiece model has pad id {self.processor.pad_id()} and unk id "
                      f"{self.processor.unk_id()}; this framework needs {PAD_ID} and {UNK_ID}: "
                      "delete the model file so it is retrained.")

  @property
  def vocab_size(self) -> int:
    return int(self.processor.GetPieceSize())

  def encode(self, text: str) -> list[int]:
    return self.processor.EncodeAsIds(_normalise(text, self.lowercase))

  def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
    return self.processor.Encode([_normalise(t, self.lowercase) for t in texts])

  def decode(self, ids: Iterable[int]) -> str:
    return self.processor.DecodeIds([int(i) for i in ids if i != PAD_ID])

  def to_metadata(self) -> dict[str, Any]:
    return {"kind": self.kind, "lowercase": self.lowercase,
            "sentencepiece_model": base64.b64encode(self.model_proto).decode("ascii")}


def default_cache_dir(data_dir: str = "") -> str:
  """`data_dir` when it is a writable directory, else ~/.cache/research ($XDG_CACHE_HOME).

  A directory without write permission bits counts as read-only even for root (whom
  `os.access` always allows), so a shared read-only dataset copy is never written to.
  """
  if (data_dir and os.path.isdir(data_dir) and os.access(data_dir, os.W_OK)
      and os.stat(data_dir).st_mode & 0o222):
    return data_dir
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "research")


def train_subword(texts: Sequence[str], vocab_size: int, lowercase: bool, cache_dir: str,
                  name: str, specials: Sequence[str] = ()) -> SubwordTokenizer:
  """A unigram sentencepiece model of `texts`, from `cache_dir/sentencepiece/` when present.

  The file name carries a digest of the texts and settings, so it is found again only for the
  same train text. `vocab_size` is a soft limit: a tiny corpus gets the pieces it has.
  `specials` become control pieces right after <pad> and <unk> (ids 2, 3, ...): reserved
  ids that no text encodes to.
  """
  import sentencepiece as spm
  texts = [_normalise(t, lowercase) for t in texts]
  settings = f"{vocab_size}|{lowercase}|unigram|v1" + (f"|{'|'.join(specials)}" if specials else "")
  digest = hashlib.sha256(settings.encode())
  for text in texts:
    digest.update(text.encode("utf-8") + b"\n")
  directory = os.path.join(cache_dir, "sentencepiece")
  path = os.path.join(directory, f"{name.replace('/', '_')}_{vocab_size}_"
                                 f"{digest.hexdigest()[:16]}.model")
  if os.path.isfile(path):
    with open(path, "rb") as f:
      proto = f.read()
    try:
      return SubwordTokenizer(proto, lowercase)
    except DataError as e:
      log.warning("cached sentencepiece model %s is unreadable (%s): retraining it.", path, e)
  log.info("%s: training a %d-piece sentencepiece model on %d train texts", name, vocab_size,
           len(texts))
  model = io.BytesIO()
  spm.SentencePieceTrainer.Train(
      sentence_iterator=iter([t for t in texts if t.strip()]), model_writer=model,
      vocab_size=vocab_size, model_type="unigram", pad_id=PAD_ID, unk_id=UNK_ID, bos_id=-1,
      eos_id=-1, hard_vocab_limit=False, character_coverage=1.0, num_threads=1,
      control_symbols=list(specials),
      input_sentence_size=1_000_000, shuffle_input_sentence=False, minloglevel=2)
  proto = model.getvalue()
  try:
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, delete=False, suffix=".tmp") as f:
      f.write(proto)
    os.replace(f.name, path)
  except OSError as e:  # A read-only cache costs a retrain next time, nothing else.
    log.warning("cannot cache the sentencepiece model in %s (%s); set dataset.cache_dir to a "
                "writable directory to avoid retraining it.", directory, e)
  return SubwordTokenizer(proto, lowercase)


def build_tokenizer(kind: str, texts: Sequence[str], vocab_size: int, lowercase: bool = True,
                    cache_dir: str = "", name: str = "text",
                    specials: Sequence[str] = ()) -> Tokenizer:
  """The tokeniser `kind` ('word', 'char', 'subword') fit on the train `texts`, with the
  reserved `specials` (e.g. `(MASK,)`) at ids 2, 3, ... after <pad> and <unk>."""
  if kind == "word":
    return WordTokenizer.build(texts, vocab_size, lowercase, specials)
  if kind == "char":
    return CharTokenizer.build(texts, vocab_size, lowercase, specials)
  if kind == "subword":
    return train_subword(texts, vocab_size, lowercase, cache_dir or default_cache_dir(), name,
                         specials)
  raise ConfigError(f"dataset.tokenizer = {kind!r} is not one of {', '.join(KINDS)}.")


def from_metadata(metadata: dict[str, Any]) -> Tokenizer:
  """The tokeniser `to_metadata()` described (e.g. `dataset.json["tokenizer"]` of a workdir)."""
  kind = metadata.get("kind")
  lowercase = bool(metadata.get("lowercase", True))
  try:
    if kind == "word":
      return WordTokenizer(metadata["vocab"], lowercase)
    if kind == "char":
      return CharTokenizer(metadata["vocab"], lowercase)
    if kind == "subword":
      return SubwordTokenizer(base64.b64decode(metadata["sentencepiece_model"]), lowercase)
  except (KeyError, ValueError) as e:
    raise DataError(f"the saved {kind} tokenizer (dataset.json) lacks or mangles {e}: it is "
                    "corrupt; retrain, or copy dataset.json from the run that made it.") from e
  raise DataError(f"unknown tokenizer kind {kind!r} in the saved metadata (dataset.json); "
                  f"expected one of {', '.join(KINDS)}.")


def encode_all(tokenizer: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
  """Token ids of every text (sentencepiece encodes a batch in C++)."""
  if isinstance(tokenizer, SubwordTokenizer):
    return tokenizer.encode_many(texts)
  return [tokenizer.encode(t) for t in texts]


def choose_length(lengths: Sequence[int], max_length: int, percentile: float = 100.0) -> int:
  """The padded length: the `percentile` of `lengths` rounded up to a multiple of 8, capped.

  One length for every split keeps the compiled step's shapes fixed; taking it from the train
  lengths rather than always `max_length` keeps short-text datasets (SST-2 phrases) from
  spending most of their compute on padding.
  """
  if max_length <= 0:
    raise ConfigError(f"dataset.max_length = {max_length} is invalid: it must be >= 1.")
  longest = math.ceil(float(np.percentile(lengths, percentile))) if len(lengths) else 1
  return int(min(max_length, max(8, -(-longest // 8) * 8)))


def pad(sequences: Sequence[Sequence[int]], length: int) -> np.ndarray:
  """(N, length) int32 ids: each sequence truncated at the end or right-padded with PAD_ID."""
  ids = np.full((len(sequences), length), PAD_ID, dtype=np.int32)
  for i, seq in enumerate(sequences):
    seq = seq[:length]
    ids[i, :len(seq)] = seq
  return ids
