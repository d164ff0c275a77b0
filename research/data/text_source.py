"""Labelled texts -> a `Source` of fixed-length token ids, shared by the text datasets.

The validation split is carved here, before the tokeniser is built, rather than later by
`load_dataset`: the vocabulary (and a sentencepiece model) must come from the training
examples only. The carving uses the same seed stream and stratification as `load_dataset`
would, so `dataset.validation_fraction` and `dataset.split_seed` mean the same thing here.

Padding: the loop keeps each split on the device as one array, so each split is padded to a
single length (a multiple of 8); `config.train.length_buckets` then lets the train step run
each batch on fewer positions (research/training/batching.py). Train: the
`dataset.length_percentile` percentile of its lengths, capped by `dataset.max_length`; SST-2's
train phrases average 10 tokens, so a percentile below 100 cuts the padding the train step
computes on. Validation and test: their longest text, capped by `dataset.max_length` only, so
evaluation sees every text whole whatever the percentile.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import ml_collections
import numpy as np

from research.data import splits, text, tfds_source
from research.data.dataset import Split
from research.data.sources import Source
from research.errors import DataError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Texts:
  """A split before tokenising: `texts[i]` has class id `labels[i]`."""
  texts: Sequence[str]
  labels: np.ndarray

  def take(self, indices: np.ndarray) -> Texts:
    return Texts([self.texts[i] for i in indices], self.labels[indices])


def read_tfds_texts(tfds_name: str, split: str, data_dir: str, text_key: str,
                    label_key: str = "label") -> Texts:
  """Every (text, label) of a TFDS text split, texts decoded from UTF-8 bytes if need be."""
  source = tfds_source.open_split(tfds_name, split, data_dir)
  first = source[0]
  missing = [k for k in (text_key, label_key) if k not in first]
  if missing:
    raise DataError(f"TFDS dataset {tfds_name!r} has no field(s) {missing}; it has "
                    f"{sorted(first)}: the prepared copy is not the expected version.")
  texts, labels = [], np.empty(len(source), dtype=np.int64)
  for i in range(len(source)):
    example = first if i == 0 else source[i]
    value = example[text_key]
    value = value.item() if isinstance(value, np.ndarray) else value
    texts.append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
    labels[i] = int(example[label_key])
  return Texts(texts, labels)


def carve_validation(train: Texts, config: ml_collections.ConfigDict) -> tuple[Texts, Texts]:
  """(rest, validation): `validation_fraction` of train, seeded and stratified like load_dataset."""
  index = Split(inputs=np.arange(len(train.labels)), labels=np.asarray(train.labels))
  rest, held = splits.hold_out(
      index, config.validation_fraction,
      splits.derived_seed(config.split_seed, splits.VALIDATION_STREAM), True, "validation")
  return train.take(rest.inputs), train.take(held.inputs)


def text_source(name: str, config: ml_collections.ConfigDict, train: Texts, test: Texts,
                num_classes: int, label_names: Sequence[str],
                validation: Texts | None = None, cache_dir: str = "") -> Source:
  """Tokenises the splits with a tokeniser built on `train`, each padded to one length.

  `cache_dir` is where a sentencepiece model is cached when `config.cache_dir` is ''.
  The returned metadata holds the tokeniser, the padded lengths and the label names: what
  `workdir/dataset.json` needs for a trained model to classify new text.
  """
  if validation is None:
    train, validation = carve_validation(train, config)
  tokenizer = text.build_tokenizer(config.tokenizer, train.texts, config.vocab_size,
                                   config.lowercase, config.cache_dir or cache_dir, name,
                                   specials=(text.MASK,) if config.mask_token else ())
  made, lengths = {}, {}
  for split, part in (("train", train), ("validation", validation), ("test", test)):
    encoded = text.encode_all(tokenizer, part.texts)
    counts = np.array([len(ids) for ids in encoded])
    # Held-out texts are never cut below max_length: that would change what is evaluated.
    percentile = config.length_percentile if split == "train" else 100.0
    lengths[split] = text.choose_length(counts, config.max_length, percentile)
    log.info("%s %s: %d texts, mean %.1f %s tokens, %.1f%% truncated to %d", name, split,
             len(counts), counts.mean() if len(counts) else 0.0, config.tokenizer,
             100 * float(np.mean(counts > lengths[split])) if len(counts) else 0.0,
             lengths[split])
    made[split] = Split(inputs=text.pad(encoded, lengths[split]),
                        labels=np.asarray(part.labels, dtype=np.int32))
  metadata = {"dataset": name, "tokenizer": tokenizer.to_metadata(),
              "max_length": max(lengths.values()), "split_lengths": lengths,
              "label_names": list(label_names)}
  return Source(train=made["train"], validation=made["validation"], test=made["test"],
                num_classes=num_classes, model_fields={"vocab_size": tokenizer.vocab_size},
                metadata=metadata)
