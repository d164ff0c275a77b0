"""Parallel text (sentence i of one language translates sentence i of the other) -> token ids.

A translation dataset registers a reader (`READERS[name]`) that returns, for each split, the
raw source and target sentences; everything after that is shared here:

- Tokenisers are built on the train split only: one for both languages (`shared_vocabulary`,
  so a model may share its embeddings) or one per language, of `dataset.tokenizer`'s kind
  (sentencepiece 'subword' for translation; cached in the data dir). Each reserves EOS
  (`</s>`, id 2) after <pad> (0) and <unk> (1). Targets end with EOS; the decoder starts
  from <pad> (id 0, as T5 does), so no BOS is needed.
- Each split is padded to one length (`text.choose_length`: train at the
  `length_percentile` of its lengths, held-out splits at their longest, all capped by
  `max_length`), so the loop compiles one step per split shape.
- `Split.inputs` are source ids (N, S), `Split.labels` target ids (N, T): the loop stays a
  generic (inputs, labels) loop.
- BLEU needs the raw reference sentences, which the arrays do not hold: `reference_texts`
  maps each held-out label row back to its raw sentence, so the seq2seq task can score
  detokenised output against the untouched references. `corpus()` is cached, so the task
  and the loader share one read of the files.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Sequence
from typing import Any, Callable

import ml_collections
import numpy as np

from research.data import text
from research.data.config import resolve_dataset_config
from research.data.dataset import Split
from research.data.sources import Source
from research.errors import ConfigError, DataError

log = logging.getLogger(__name__)

EOS = "</s>"
EOS_ID = 2  # text.PAD_ID, text.UNK_ID, then the first reserved special
DECODER_START_ID = text.PAD_ID
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Sentences:
  """One split of raw parallel text: `source[i]` translates to `target[i]`."""
  source: list[str]
  target: list[str]


# name -> reader(config.dataset) -> ({split: Sentences}, the directory read, where a
# sentencepiece model is cached unless dataset.cache_dir says otherwise). Translation
# datasets register their reader here.
Reader = Callable[[ml_collections.ConfigDict], tuple[dict[str, Sentences], str]]
READERS: dict[str, Reader] = {}


def check_pairs(source: Sequence[str], target: Sequence[str], source_file: str,
                target_file: str, fix: str) -> Sentences:
  """Sentences, or DataError when the two files do not hold the same number of lines."""
  if len(source) != len(target):
    raise DataError(f"{source_file} has {len(source)} lines but {target_file} has "
                    f"{len(target)}: line i of one must translate line i of the other, so the "
                    f"files are truncated or do not belong together; {fix}.")
  if not source:
    raise DataError(f"{source_file} and {target_file} are empty; {fix}.")
  return Sentences(list(source), list(target))


@dataclasses.dataclass(frozen=True, eq=False)
class Corpus:
  """A tokenised parallel corpus: tokenisers, raw sentences and padded id arrays per split."""
  name: str
  source_tokenizer: text.Tokenizer
  target_tokenizer: text.Tokenizer
  shared_vocabulary: bool
  sentences: dict[str, Sentences]
  splits: dict[str, Split]

  def metadata(self) -> dict[str, Any]:
    """What translating with a trained model needs: `workdir/dataset.json`."""
    lengths = {k: [int(s.inputs.shape[1]), int(s.labels.shape[1])] for k, s in self.splits.items()}
    return {"dataset": self.name, "task": "translation",
            "source_tokenizer": self.source_tokenizer.to_metadata(),
            "target_tokenizer": self.target_tokenizer.to_metadata(),
            "shared_vocabulary": self.shared_vocabulary, "eos_id": EOS_ID,
            "decoder_start_id": DECODER_START_ID,
            "max_source_length": max(v[0] for v in lengths.values()),
            "max_target_length": max(v[1] for v in lengths.values()),
            "split_lengths": lengths}

  def reference_texts(self) -> dict[bytes, str]:
    """Held-out label rows (padding trimmed) -> the raw target sentence they encode."""
    table: dict[bytes, str] = {}
    for split in ("validation", "test"):
      for row, sentence in zip(self.splits[split].labels, self.sentences[split].target):
        table.setdefault(label_key(row), sentence)
    return table


def label_key(row: np.ndarray) -> bytes:
  """A target row without its trailing padding, as a dictionary key."""
  return np.trim_zeros(np.asarray(row, np.int32), "b").tobytes()


def until_eos(ids: Sequence[int]) -> list[int]:
  """The tokens before the first EOS (padding dropped): what detokenising should see."""
  out = []
  for i in np.asarray(ids).tolist():
    if i == EOS_ID:
      break
    if i != text.PAD_ID:
      out.append(i)
  return out


def encode_targets(tokenizer: text.Tokenizer, sentences: Sequence[str], length: int) -> np.ndarray:
  """(N, length) target ids, each ending with EOS (cut at length - 1 tokens if need be)."""
  return text.pad([ids[:length - 1] + [EOS_ID] for ids in text.encode_all(tokenizer, sentences)],
                  length)


def _tokenizers(name: str, config: ml_collections.ConfigDict, train: Sentences,
                data_dir: str) -> tuple[text.Tokenizer, text.Tokenizer]:
  build = functools.partial(text.build_tokenizer, config.tokenizer, vocab_size=config.vocab_size,
                            lowercase=config.lowercase,
                            cache_dir=config.cache_dir or text.default_cache_dir(data_dir),
                            specials=(EOS,))
  src, tgt = config.source_language, config.target_language
  if config.shared_vocabulary:
    shared = build(train.source + train.target, name=f"{name}_{src}{tgt}")
    return shared, shared
  return build(train.source, name=f"{name}_{src}"), build(train.target, name=f"{name}_{tgt}")


def _lengths(tokenizer: text.Tokenizer, sentences: Sequence[str], extra: int) -> np.ndarray:
  return np.array([len(ids) + extra for ids in text.encode_all(tokenizer, sentences)])


@functools.lru_cache(maxsize=2)
def _corpus(name: str, config_json: str) -> Corpus:
  config = ml_collections.ConfigDict(json.loads(config_json))
  if config.source_language == config.target_language:
    raise ConfigError(f"dataset.source_language and dataset.target_language are both "
                      f"{config.source_language!r}: translate between two languages, e.g. "
                      "source_language='de', target_language='en'.")
  sentences, data_dir = READERS[name](config)
  source_tok, target_tok = _tokenizers(name, config, sentences["train"], data_dir)
  splits = {}
  for split in SPLITS:
    part = sentences[split]
    percentile = config.length_percentile if split == "train" else 100.0
    src_counts = _lengths(source_tok, part.source, 0)
    tgt_counts = _lengths(target_tok, part.target, 1)
    src_len = text.choose_length(src_counts, config.max_length, percentile)
    tgt_len = text.choose_length(tgt_counts, config.max_length, percentile)
    log.info("%s %s: %d pairs, %.1f%% of sources cut to %d tokens, %.1f%% of targets to %d",
             name, split, len(part.source), 100 * np.mean(src_counts > src_len), src_len,
             100 * np.mean(tgt_counts > tgt_len), tgt_len)
    splits[split] = Split(inputs=text.pad(text.encode_all(source_tok, part.source), src_len),
                          labels=encode_targets(target_tok, part.target, tgt_len))
  return Corpus(name, source_tok, target_tok, bool(config.shared_vocabulary), sentences, splits)


def corpus(dataset_config: ml_collections.ConfigDict | dict[str, Any]) -> Corpus:
  """The tokenised corpus `dataset_config` names (cached: loader and task share it)."""
  config = resolve_dataset_config(dataset_config)
  if config.name not in READERS:
    raise ConfigError(f"dataset.name = {config.name!r} is not a parallel-text dataset; "
                      f"the seq2seq task needs one of: {', '.join(sorted(READERS))}.")
  return _corpus(config.name, json.dumps(config.to_dict(), sort_keys=True))


def load(config: ml_collections.ConfigDict) -> Source:
  """The `Source` of a registered parallel corpus: source ids in, target ids out."""
  made = corpus(config)
  vocab = {"source_vocab_size": made.source_tokenizer.vocab_size,
           "target_vocab_size": made.target_tokenizer.vocab_size}
  return Source(train=made.splits["train"], validation=made.splits["validation"],
                test=made.splits["test"], num_classes=vocab["target_vocab_size"],
                stratify=False, model_fields=vocab, metadata=made.metadata())
