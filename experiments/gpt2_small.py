"""GPT-2 small (the 124M architecture, context 1024) on Tiny Shakespeare bytes: a speed workload.

The GPT-2 124M architecture (biases, tied embeddings, GELU) with nanoGPT's GPT-2 training
settings: AdamW lr 6e-4, betas 0.9/0.95, weight decay 0.1, clipping at 1.0, warmup then
cosine decay to 6e-5, bf16 compute. The GPT-2 BPE vocabulary cannot be fetched offline, so
tokens are UTF-8 bytes (vocabulary 256): 86.0M parameters instead of 124.4M, the same
transformer blocks and position embeddings with a 256-row instead of a 50257-row token
embedding (so the logits matmul is smaller too). It is for measuring training throughput on
a GPU, not for a result: 1M bytes of text are far too few for this size, so it has no
REFERENCE.
"""

import ml_collections

from experiments._gpt import gpt_config

# A throughput workload: no published number applies to it (see the docstring).
REFERENCE = None


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = gpt_config("tiny_shakespeare_bytes", block_size=1024, stride=128,
                      learning_rate=6e-4, b2=0.95, num_layers=12, num_heads=12, width=768,
                      mlp_ratio=4, dropout_rate=0.0, use_bias=True, tie_embeddings=True)
  config.precision = "bfloat16"
  config.train.batch_size = 16
  config.train.num_epochs = 0.0
  config.train.num_steps = 1000
  config.train.eval_every_steps = 250
  config.train.log_every_steps = 50
  config.train.eval_batch_size = 8
  config.train.steps_per_dispatch = 10
  if arg == "tiny":  # seconds on a CPU: the same code path with a toy size, for tests
    config.dataset.block_size = 32
    config.dataset.stride = 32
    config.dataset.num_examples = 512
    config.model.update(num_layers=2, num_heads=2, width=32)
    config.precision = "float32"
    config.schedule.warmup_steps = 2
    config.train.batch_size = 8
    config.train.num_steps = 10
    config.train.eval_every_steps = 10
    config.train.log_every_steps = 10
    config.train.eval_batch_size = 256
    config.train.steps_per_dispatch = 1
  elif arg:
    raise ValueError(f"unknown variant {arg!r}: use 'tiny' or none")
  return config
