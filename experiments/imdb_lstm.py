"""LSTM on IMDB reviews (TFDS `imdb_reviews`): the `sst2_lstm` recipe on 25,000 movie reviews.

Embedding 100, LSTM 128, Adam 1e-3, batch 64, 5 epochs; word vocabulary capped at 25,000;
reviews truncated to their first 256 tokens. Users prepare TFDS `imdb_reviews` (no copy
exists on the offline machines). Variants (comma-separated): `bidirectional`, `gru`, `tiny`.
"""

import ml_collections

from experiments._text import make_tiny, text_config, variants

REFERENCE = dict(
    metric="test/accuracy", value=0.86, goal=">=",
    source="LSTM sentiment classifiers on IMDB: about 86-88% test accuracy (bentrevett/"
           "pytorch-sentiment-analysis, 'Upgraded Sentiment Analysis')")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  chosen = variants(arg, ("bidirectional", "gru", "tiny"))
  config = text_config("imdb", vocab_size=25000, max_length=256)
  config.model = ml_collections.ConfigDict(dict(
      name="rnn_classifier", embed_dim=100, hidden_size=128, num_layers=1,
      cell="gru" if "gru" in chosen else "lstm", bidirectional="bidirectional" in chosen,
      dropout_rate=0.0, unroll=1))
  config.train.batch_size = 64
  config.train.num_epochs = 5.0
  config.train.log_every_steps = 100
  if "tiny" in chosen:
    make_tiny(config)
    config.dataset.max_length = 64
    config.model.embed_dim = 16
    config.model.hidden_size = 16
  return config
