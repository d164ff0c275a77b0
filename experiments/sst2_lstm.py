"""LSTM on SST-2: embedding 100, LSTM 128, Adam 1e-3, batch 64 (the classic sentiment tutorial).

Word vocabulary from the train phrases (capped at 25,000: SST-2 has about 13,800 words);
the head reads the final hidden state. Test = the official SST-2 dev set; validation = 10%
of the train phrases. Variants (comma-separated): `bidirectional` (a forward and a backward
LSTM, both final states read), `gru` (GRU cells), `tiny` (seconds; what the tests run).
"""

import ml_collections

from experiments._text import make_tiny, text_config, variants

REFERENCE = dict(
    metric="test/accuracy", value=0.80, goal=">=",
    source="from-scratch LSTM / CNN classifiers reach about 80-85% SST-2 dev accuracy "
           "(../shared/datasets/sst2/SOURCE.md; BERT-base fine-tuned: about 93%)")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  chosen = variants(arg, ("bidirectional", "gru", "tiny"))
  config = text_config("sst2", vocab_size=25000, max_length=64)
  config.model = ml_collections.ConfigDict(dict(
      name="rnn_classifier", embed_dim=100, hidden_size=128, num_layers=1,
      cell="gru" if "gru" in chosen else "lstm", bidirectional="bidirectional" in chosen,
      dropout_rate=0.0, unroll=1))
  config.train.batch_size = 64
  config.train.num_epochs = 2.0
  config.train.log_every_steps = 100
  if "tiny" in chosen:
    make_tiny(config)
    config.model.embed_dim = 16
    config.model.hidden_size = 16
  return config


def get_sweep(arg: str | None = None) -> dict:
  """The sequence-model sweep: learning rate x hidden size x bidirectional x dropout, by TPE
  with median pruning on validation accuracy (evaluated twice per epoch)."""
  return {
      "metric": "validation/accuracy", "mode": "max", "sampler": "tpe", "pruner": "median",
      "num_trials": 4 if arg and "tiny" in arg else 24,
      "params": {
          "optimizer.learning_rate": {"type": "loguniform", "low": 3e-4, "high": 3e-3},
          "model.hidden_size": {"type": "choice", "values": [64, 128, 256]},
          "model.bidirectional": {"type": "choice", "values": [False, True]},
          "model.dropout_rate": {"type": "uniform", "low": 0.0, "high": 0.5},
      },
  }
