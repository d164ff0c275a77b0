"""Transformer translation on Multi30k, German -> English: BLEU of beam search on test 2016.

A small pre-LN encoder-decoder (3 + 3 layers, d_model 512, 8 heads, MLP 2048, dropout 0.1,
shared 8,000-piece sentencepiece vocabulary on cased train text, shared and tied embeddings),
label smoothing 0.1, AdamW (betas 0.9 / 0.98, lr 5e-4, weight decay 1e-4, clip 1.0) with 1,000
warm-up steps and a cosine decay, batch 128 sentence pairs, 40 epochs (9,040 steps), for a GPU.
Every evaluation (validation every 5 epochs, then validation and test) decodes with beam 4
and length penalty 0.6 (`task.beam_size`, `task.length_penalty`; `--mode=evaluate --best
--config.task.beam_size=5` re-decodes a trained run); the best checkpoint is the one with the
best validation BLEU, sacrebleu's corpus BLEU of the detokenised output against the raw
references. Translate with a trained run: `python -m launch.translate --workdir=...`.

Variants: `cpu` (2 + 2 layers at width 128, 600 steps of batch 64 on train sentences cut at
their 95th length percentile, greedy decoding: minutes on two idle CPU cores, a low BLEU),
`tiny` (seconds; what the tests run, on their own small data dir).
"""

import ml_collections

from experiments._text import variants
from research.config import base_config

REFERENCE = dict(
    metric="test/bleu", value=35.0, goal=">=",
    source="small Transformers trained from scratch reach about 35-38 BLEU on Multi30k "
           "test 2016 de->en (../shared/datasets/multi30k/SOURCE.md: a literature lead, "
           "not a verified figure)")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  chosen = variants(arg, ("cpu", "tiny"))
  config = base_config()
  config.dataset.name = "multi30k"
  config.dataset.source_language = "de"
  config.dataset.target_language = "en"
  config.dataset.tokenizer = "subword"
  config.dataset.shared_vocabulary = True
  config.dataset.vocab_size = 8000
  config.dataset.lowercase = False
  config.dataset.max_length = 64
  config.model = ml_collections.ConfigDict(dict(
      name="seq2seq_transformer", d_model=512, num_heads=8, num_encoder_layers=3,
      num_decoder_layers=3, mlp_dim=2048, dropout_rate=0.1, max_length=64,
      share_embeddings=True, tie_output=True, activation="relu"))
  config.task = ml_collections.ConfigDict(dict(
      name="seq2seq", label_smoothing=0.1, top_k=5, beam_size=4, length_penalty=0.6,
      max_decode_length=0))
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 5e-4
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.98
  config.optimizer.weight_decay = 1e-4
  config.optimizer.clip_norm = 1.0
  config.schedule.name = "cosine"
  config.schedule.warmup_steps = 1000
  config.train.batch_size = 128
  config.train.num_epochs = 40.0
  config.train.eval_every_steps = 1130  # 5 epochs
  config.train.log_every_steps = 100
  config.train.eval_batch_size = 256
  config.train.steps_per_dispatch = 10
  if "cpu" in chosen:
    config.dataset.length_percentile = 95.0
    config.model.update(d_model=128, num_heads=4, num_encoder_layers=2, num_decoder_layers=2,
                        mlp_dim=512)
    config.task.beam_size = 1
    config.optimizer.learning_rate = 2e-3
    config.schedule.warmup_steps = 100
    config.train.batch_size = 64
    config.train.num_epochs = 0.0
    config.train.num_steps = 600
    config.train.eval_every_steps = 600
    config.train.eval_batch_size = 128
    config.train.steps_per_dispatch = 1  # an unrolled chunk compiles slowly on CPU
  if "tiny" in chosen:
    config.dataset.vocab_size = 200
    config.dataset.max_length = 24
    config.model.update(d_model=32, num_heads=4, num_encoder_layers=1, num_decoder_layers=1,
                        mlp_dim=64, dropout_rate=0.0, max_length=24)
    config.task.beam_size = 2
    config.schedule.warmup_steps = 2
    config.train.batch_size = 16
    config.train.num_epochs = 0.0
    config.train.num_steps = 12
    config.train.eval_every_steps = 12
    config.train.log_every_steps = 6
    config.train.eval_batch_size = 32
    config.train.steps_per_dispatch = 1
  return config
