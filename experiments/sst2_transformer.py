"""Transformer encoder on SST-2: d_model 512, 8 heads, 3 layers, vocab 10,000, Adam 1e-3, batch 32.

The classic from-scratch transformer classifier recipe: token + learned position embeddings,
pre-LN blocks (MLP 2048, dropout 0.1), mean pooling over real tokens, a linear head; Adam
1e-3 with a linear warm-up (a pre-LN transformer at this rate without one may diverge early).
Test = the official SST-2 dev set; validation = 10% of the train phrases. Variants: `cls`
(BERT-style [CLS] pooling), `cpu` (the same model for 1,500 steps, about 0.7 epoch,
with a cosine decay, train phrases cut to 24 tokens and a 2% validation slice: a full epoch
takes about an hour on two CPU cores), `tiny` (seconds; what the tests run).
"""

import ml_collections

from experiments._text import make_tiny, text_config, variants

REFERENCE = dict(
    metric="test/accuracy", value=0.80, goal=">=",
    source="from-scratch classifiers reach about 80-85% SST-2 dev accuracy "
           "(../shared/datasets/sst2/SOURCE.md); a small transformer without pre-training "
           "sits at the low end")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  chosen = variants(arg, ("cls", "cpu", "tiny"))
  config = text_config("sst2", vocab_size=10000, max_length=64)
  config.model = ml_collections.ConfigDict(dict(
      name="transformer_classifier", d_model=512, num_heads=8, num_layers=3, mlp_dim=2048,
      dropout_rate=0.1, pooling="cls" if "cls" in chosen else "mean", max_position=128,
      activation="gelu"))
  config.schedule.name = "constant"
  config.schedule.warmup_steps = 200
  config.train.batch_size = 32
  config.train.num_epochs = 1.0
  config.train.log_every_steps = 100
  if "cpu" in chosen:
    # Train phrases cut at their 90th length percentile (24 tokens, from 56): SST-2's train
    # split also holds every sub-phrase of a long sentence. Dev sentences stay whole.
    config.dataset.length_percentile = 90.0
    config.dataset.validation_fraction = 0.02
    config.train.num_epochs = 0.0
    config.train.num_steps = 1500
    config.train.eval_every_steps = 500
    config.schedule.name = "cosine"
    config.schedule.warmup_steps = 100
  if "tiny" in chosen:
    make_tiny(config)
    config.model.update(d_model=32, num_heads=4, num_layers=1, mlp_dim=64)
    config.schedule.warmup_steps = 2
  return config
