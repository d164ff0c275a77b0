"""The `config.dataset` fields, their defaults, and their validation.

Every field has a default so an experiment can give only `name`. Unknown fields are rejected
(with the closest known field suggested) because a misspelt `validaton_fraction` would
otherwise be ignored silently and the run would use the default.
"""

from __future__ import annotations

from collections.abc import Mapping
import numbers
from typing import Any

import ml_collections

from research.errors import ConfigError
from research.registry import unknown_name_message

SOURCES = ("auto", "tfds", "local", "sklearn", "synthetic")
TOKENIZERS = ("word", "char", "subword")


def default_dataset_config() -> ml_collections.ConfigDict:
  """The dataset config with every field at its default."""
  config = ml_collections.ConfigDict()
  # Registered dataset name, e.g. 'mnist', 'fashion_mnist', 'wine', 'synthetic_linear'.
  config.name = ""
  # Where to read it from: 'auto' picks local files when present, else TFDS (MNIST family);
  # scikit-learn and synthetic datasets have a single source, so 'auto' means that one.
  config.source = "auto"
  # Directory of local raw files (source='local'/'auto') or the TFDS data dir (source='tfds');
  # '' = the dataset's well-known local directory if it has one, and TFDS's default data dir.
  config.data_dir = ""
  # Fraction of the training examples held out as the validation split, for datasets that have
  # none. Stratified by class for classification, so rare classes appear in both.
  config.validation_fraction = 0.1
  # Fraction of all examples held out as the test split, for datasets that have none
  # (scikit-learn's and synthetic ones). Taken before the validation split.
  config.test_fraction = 0.2
  # Seed of the held-out splits (and of synthetic data). Separate from the training seed so
  # that runs with different training seeds are evaluated on the same examples.
  config.split_seed = 0
  # Standardise tabular (N, F) float features to zero mean, unit variance per feature, with
  # statistics fit on the train split only (fitting on all splits would leak test data).
  # Images are left in their stored range.
  config.standardize = True
  # Synthetic data: total number of examples (0 = 1000). Other datasets: keep a seeded random
  # subset of this many training examples (0 = all), for quick runs; held-out splits stay whole.
  config.num_examples = 0
  # Synthetic data: std of the Gaussian noise added to regression targets, or the fraction of
  # classification labels flipped at random.
  config.noise = 0.1
  # Synthetic data: number of input features.
  config.num_features = 8
  # k-fold cross-validation: 0 = off; k >= 2 splits the dataset's examples into k folds
  # (stratified by class for classification, seeded by split_seed) and fold `cv_fold` is the
  # test split, replacing the `test_fraction` hold-out; validation is still carved from the
  # rest. Only for datasets without a fixed test split, or with predefined folds.
  config.cv_folds = 0
  # Which fold (0 .. cv_folds - 1) is the test split. `launch.main --mode=cross_validate`
  # sets it for each of its runs.
  config.cv_fold = 0
  # Text datasets (SST-2, IMDB): how text becomes token ids (see research/data/text.py).
  # 'word' (lower-cased words and punctuation), 'char', or 'subword' (a sentencepiece unigram
  # model trained on the train text and cached: see cache_dir).
  config.tokenizer = "word"
  # Vocabulary size cap, <pad> (id 0) and <unk> (id 1) included: the most frequent train
  # tokens are kept. The model's vocab_size is the size actually built, filled in from here.
  config.vocab_size = 20000
  # Longest token sequence kept (longer texts are truncated at the end). Each split is
  # padded to one length so compiled shapes stay fixed, rounded up to a multiple of 8: for
  # train the `length_percentile` percentile of its lengths, for validation / test their
  # longest text, each capped at max_length.
  config.max_length = 256
  config.length_percentile = 100.0
  # Lower-case text before tokenising.
  config.lowercase = True
  # Reserve a <mask> token at id 2 (after <pad>, <unk>) for masked-LM pretraining (task
  # 'masked_lm'). A run fine-tuned from such a run must set it too: the vocabularies must agree.
  config.mask_token = False
  # Where a trained sentencepiece model is cached; '' = data_dir if writable, else
  # ~/.cache/research (or $XDG_CACHE_HOME/research).
  config.cache_dir = ""
  # Language modelling on one long text (tiny_shakespeare): tokens of context per example.
  # Each example is a window of block_size + 1 tokens: inputs are its first block_size,
  # labels the same shifted by one. Also the model's context length (its `block_size`).
  config.block_size = 256
  # Tokens between the starts of consecutive training windows (0 = block_size, no overlap).
  # Smaller strides give more, overlapping examples (block_size * 8 / stride bytes per token
  # of text). Validation and test windows never overlap, so each token is scored once.
  config.stride = 0
  # Translation (multi30k): translate source_language -> target_language, with one
  # tokeniser trained on both sides' train text (shared_vocabulary, so embeddings can be
  # shared) or one per language. max_length caps source and target tokens alike.
  config.source_language = "de"
  config.target_language = "en"
  config.shared_vocabulary = True
  return config


def resolve_dataset_config(config: Mapping[str, Any] | ml_collections.ConfigDict,
                           prefix: str = "dataset") -> ml_collections.ConfigDict:
  """Returns the defaults overridden by `config`, after checking every field's type and range.

  Raises ConfigError naming the field (as `dataset.<field>`) and saying what values are allowed.
  """
  resolved = default_dataset_config()
  if isinstance(config, ml_collections.ConfigDict):
    items = config.to_dict().items()
  elif isinstance(config, Mapping):
    items = config.items()
  else:
    raise ConfigError(f"{prefix} must be a ConfigDict with at least a 'name' field, "
                      f"got {type(config).__name__}.")
  for key, value in items:
    field = f"{prefix}.{key}"
    if key not in resolved:
      raise ConfigError(unknown_name_message(f"{prefix} config field", key, sorted(resolved),
                                             field))
    default = resolved[key]
    resolved[key] = _check_type(field, value, default)

  def fail(key: str, requirement: str) -> ConfigError:
    return ConfigError(f"{prefix}.{key} = {resolved[key]!r} is invalid: {requirement}.")

  if not resolved.name:
    raise fail("name", "set it to a dataset name, e.g. 'mnist'")
  if resolved.source not in SOURCES:
    raise ConfigError(unknown_name_message("dataset source", resolved.source, list(SOURCES),
                                           f"{prefix}.source"))
  for key in ("validation_fraction", "test_fraction"):
    if not 0.0 <= resolved[key] < 1.0:
      raise fail(key, "it must be in [0, 1)")
  if resolved.split_seed < 0:
    raise fail("split_seed", "it must be >= 0")
  if resolved.num_examples < 0:
    raise fail("num_examples", "it must be >= 0 (0 = all)")
  if resolved.noise < 0:
    raise fail("noise", "it must be >= 0")
  if resolved.num_features < 1:
    raise fail("num_features", "it must be >= 1")
  if resolved.cv_folds < 0 or resolved.cv_folds == 1:
    raise fail("cv_folds", "it must be 0 (no cross-validation) or a number of folds >= 2")
  if resolved.cv_folds and not 0 <= resolved.cv_fold < resolved.cv_folds:
    raise fail("cv_fold", f"it must be in [0, {resolved.cv_folds}) since "
                          f"{prefix}.cv_folds = {resolved.cv_folds}")
  if resolved.tokenizer not in TOKENIZERS:
    raise ConfigError(unknown_name_message("tokenizer", resolved.tokenizer, list(TOKENIZERS),
                                           f"{prefix}.tokenizer"))
  if resolved.vocab_size < 3:
    raise fail("vocab_size", "it must be >= 3 (<pad>, <unk> and at least one token)")
  if resolved.max_length <= 0:
    raise fail("max_length", "it must be >= 1 (tokens kept per example)")
  if not 0.0 < resolved.length_percentile <= 100.0:
    raise fail("length_percentile", "it must be in (0, 100]")
  if resolved.block_size < 1:
    raise fail("block_size", "it must be >= 1 (tokens of context per example)")
  if resolved.stride < 0:
    raise fail("stride", "it must be >= 0 (0 = block_size: windows that do not overlap)")
  if not resolved.cv_folds and resolved.cv_fold:
    raise fail("cv_fold", f"cross-validation is off ({prefix}.cv_folds = 0); set "
                          f"{prefix}.cv_folds to the number of folds, or leave cv_fold at 0")
  return resolved


def _check_type(field: str, value: Any, default: Any) -> Any:
  """Returns `value` as the type of `default`, or raises ConfigError if it is not one.

  Ints are accepted for floats (`noise=0`), but bools are not accepted as numbers: `True` as a
  fraction is always a mistake.
  """
  if isinstance(default, bool):
    ok, want = isinstance(value, bool), "a bool"
  elif isinstance(default, int):
    ok, want = isinstance(value, numbers.Integral) and not isinstance(value, bool), "an int"
  elif isinstance(default, float):
    ok, want = isinstance(value, numbers.Real) and not isinstance(value, bool), "a number"
  else:
    ok, want = isinstance(value, str), "a string"
  if not ok:
    raise ConfigError(f"{field} must be {want}, got {value!r} ({type(value).__name__}).")
  return type(default)(value)
