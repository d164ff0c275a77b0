"""Transformer encoder on IMDB reviews (TFDS `imdb_reviews`): the `sst2_transformer` recipe.

d_model 512, 8 heads, 3 layers, MLP 2048, dropout 0.1, mean pooling, vocabulary 10,000,
Adam 1e-3 with 200 warm-up steps, batch 32, 2 epochs; reviews truncated to 256 tokens.
Users prepare TFDS `imdb_reviews`. Variants: `cls` ([CLS] pooling), `tiny`.
"""

import ml_collections

from experiments._text import make_tiny, text_config, variants

REFERENCE = dict(
    metric="test/accuracy", value=0.85, goal=">=",
    source="small transformer classifiers trained from scratch on IMDB: about 85-88% test "
           "accuracy (e.g. the Keras 'Text classification with Transformer' example)")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  chosen = variants(arg, ("cls", "tiny"))
  config = text_config("imdb", vocab_size=10000, max_length=256)
  config.model = ml_collections.ConfigDict(dict(
      name="transformer_classifier", d_model=512, num_heads=8, num_layers=3, mlp_dim=2048,
      dropout_rate=0.1, pooling="cls" if "cls" in chosen else "mean", max_position=512,
      activation="gelu"))
  config.schedule.name = "constant"
  config.schedule.warmup_steps = 200
  config.train.batch_size = 32
  config.train.num_epochs = 2.0
  config.train.log_every_steps = 100
  if "tiny" in chosen:
    make_tiny(config)
    config.dataset.max_length = 64
    config.model.update(d_model=32, num_heads=4, num_layers=1, mlp_dim=64)
    config.schedule.warmup_steps = 2
  return config
