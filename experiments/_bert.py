"""Shared by the BERT-style SST-2 recipes (not an experiment itself): data and encoder trunk.

Pretraining (`sst2_bert`) and fine-tuning (`sst2_bert_finetune`) must build the same
vocabulary from the same train text, and the same trunk, or the pretrained embeddings and
blocks cannot be carried over; both start from `bert_config`, which fixes both. The model
config fits `bert_mlm` and `transformer_classifier` alike: only `model.name` differs.
"""

from __future__ import annotations

import ml_collections

from experiments._text import make_tiny, text_config

SIZES = ("cpu", "tiny")  # variants that change the data and the trunk: pretrain and fine-tune agree
PRETRAIN_EXPERIMENT = "sst2_bert"


def pretrained_workdir(chosen: set[str]) -> str:
  """Where `launch.reproduce` puts seed 0 of the pretraining run of the same size."""
  size = next((s for s in SIZES if s in chosen), "")
  return f"runs/reproduce/{PRETRAIN_EXPERIMENT}{'.' + size if size else ''}/seed_0"


def bert_config(chosen: set[str]) -> ml_collections.ConfigDict:
  """SST-2 word ids with a <mask> token, and the BERT-style trunk, at the chosen size.

  Default: the tutorial-sized encoder (4 layers, d_model 256, 4 heads, MLP 1024) with BERT's
  [CLS] token. `cpu`: 2 layers of width 128, train phrases cut to 24 tokens, a 2%
  validation slice (minutes on two CPU cores). `tiny`: seconds, for tests.
  """
  config = text_config("sst2", vocab_size=10000, max_length=64)
  config.dataset.mask_token = True
  config.model = ml_collections.ConfigDict(dict(
      name="", d_model=256, num_heads=4, num_layers=4, mlp_dim=1024, dropout_rate=0.1,
      pooling="cls", max_position=128, activation="gelu"))
  config.schedule.name = "cosine"
  if "cpu" in chosen:
    # As sst2_transformer:cpu: train phrases cut at their 90th length percentile (24
    # tokens); dev sentences stay whole.
    config.dataset.length_percentile = 90.0
    config.dataset.validation_fraction = 0.02
    config.model.update(d_model=128, num_heads=4, num_layers=2, mlp_dim=512)
  if "tiny" in chosen:
    make_tiny(config)
    config.model.update(d_model=32, num_heads=4, num_layers=1, mlp_dim=64, max_position=72)
  return config
