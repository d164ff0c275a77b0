"""Shared text-classification recipes (not an experiment itself): SST-2 and IMDB.

`text_config` fills the dataset and task fields every text recipe shares; `apply_variant`
parses the variant argument, names joined by ',' or '+'
(`experiments/sst2_lstm.py:bidirectional,tiny`).
"""

from __future__ import annotations

import re

import ml_collections

from research.config import base_config


def text_config(dataset: str, vocab_size: int, max_length: int) -> ml_collections.ConfigDict:
  """Binary sentiment from word ids: one logit, sigmoid cross-entropy (the tutorials' loss)."""
  config = base_config()
  config.dataset.name = dataset
  config.dataset.tokenizer = "word"
  config.dataset.vocab_size = vocab_size
  config.dataset.max_length = max_length
  config.task.name = "binary"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  return config


def variant_words(arg: str | None) -> list[str]:
  """The variant names of `arg`, separated by ',' or '+'.

  '+' lets one list item name several variants where commas already separate the items:
  `launch.reproduce --only=sst2_bert_finetune:cpu+scratch,sst2_bert_finetune:cpu`.
  """
  return [a.strip() for a in re.split(r"[,+]", arg or "") if a.strip()]


def variants(arg: str | None, known: tuple[str, ...]) -> set[str]:
  """The variant names of `arg` (see `variant_words`), each checked against `known`."""
  names = set(variant_words(arg))
  unknown = names - set(known)
  if unknown:
    raise ValueError(f"unknown variant(s) {sorted(unknown)}: use a subset, joined by ',' or "
                     f"'+', of {', '.join(known)} (or none)")
  return names


def make_tiny(config: ml_collections.ConfigDict) -> None:
  """Seconds on a CPU, for tests: 2,000 train examples, a small vocabulary, 12 steps."""
  config.dataset.num_examples = 2000
  config.dataset.vocab_size = 2000
  config.train.batch_size = 32
  config.train.num_epochs = 0.0
  config.train.num_steps = 12
  config.train.eval_every_steps = 6
  config.train.log_every_steps = 6
  config.train.steps_per_dispatch = 1
