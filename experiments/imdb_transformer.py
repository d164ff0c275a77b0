"""Transformer encoder on IMDB reviews (TFDS `imdb_reviews`): the `sst2_transformer` recipe.

d_model 512, 8 heads, 3 layers, MLP 2048, dropout 0.1, mean pooling, vocabulary 10,000,
Adam 1e-3 with 200 warm-up steps, batch 32, 2 epochs; reviews truncated to 256 tokens.
Users prepare TFDS `imdb_reviews`. Variants: `cls` ([CLS] pooling), `tiny`.
"""

import ml_collections

from experiments import sst2_transformer
from experiments._text import variants

REFERENCE = dict(
    metric="test/accuracy", value=0.85, goal=">=",
    source="small transformer classifiers trained from scratch on IMDB: about 85-88% test "
           "accuracy (e.g. the Keras 'Text classification with Transformer' example)")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variants(arg, ("cls", "tiny"))  # sst2_transformer's `cpu` is cut for SST-2's phrases
  config = sst2_transformer.get_config(arg)  # the same model, optimizer and variants
  config.dataset.name = "imdb"
  config.dataset.max_length = 64 if config.train.num_steps else 256  # `tiny` sets num_steps
  config.model.max_position = 512
  config.train.num_epochs = config.train.num_epochs and 2.0
  return config
