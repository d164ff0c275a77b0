"""LSTM on IMDB reviews (TFDS `imdb_reviews`): the `sst2_lstm` recipe on 25,000 movie reviews.

Embedding 100, LSTM 128, Adam 1e-3, batch 64, 5 epochs; word vocabulary capped at 25,000;
reviews truncated to their first 256 tokens. Users prepare TFDS `imdb_reviews` (no copy
exists on the offline machines). Variants (comma-separated): `bidirectional`, `gru`, `tiny`.
"""

import ml_collections

from experiments import sst2_lstm

REFERENCE = dict(
    metric="test/accuracy", value=0.86, goal=">=",
    source="LSTM sentiment classifiers on IMDB: about 86-88% test accuracy (bentrevett/"
           "pytorch-sentiment-analysis, 'Upgraded Sentiment Analysis')")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = sst2_lstm.get_config(arg)  # the same model, optimizer and variants
  config.dataset.name = "imdb"
  config.dataset.max_length = 64 if config.train.num_steps else 256  # `tiny` sets num_steps
  config.train.num_epochs = config.train.num_epochs and 5.0
  return config
