"""Character-level GPT on Tiny Shakespeare: nanoGPT's "baby GPT" recipe (10.7M parameters).

6 layers, 6 heads, width 384, context 256, dropout 0.2, no biases; AdamW (lr 1e-3, betas
0.9/0.99, weight decay 0.1 on matrices and embeddings), gradient clipping at 1.0, 100
warmup steps then cosine decay to 1e-4, batch 64, 5000 steps; as nanoGPT's
config/train_shakespeare_char.py. Training windows start every 8 characters (nanoGPT draws
random offsets). Sample from the trained run with `python -m launch.sample --workdir=...`.
"""

import ml_collections

from experiments._gpt import gpt_config

# The test split is nanoGPT's validation text (the last 10%), so test/loss is its number.
REFERENCE = dict(
    metric="test/loss", value=1.50, goal="<=",
    source="nanoGPT (Karpathy), config/train_shakespeare_char.py: val loss 1.4697 on the "
           "last 10% of Tiny Shakespeare (GPU, 5000 steps)")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = gpt_config("tiny_shakespeare", block_size=256, stride=8, learning_rate=1e-3,
                      b2=0.99, num_layers=6, num_heads=6, width=384, mlp_ratio=4,
                      dropout_rate=0.2, use_bias=False, tie_embeddings=True)
  config.train.batch_size = 64
  config.train.num_epochs = 0.0
  config.train.num_steps = 5000
  config.train.eval_every_steps = 250
  config.train.log_every_steps = 50
  config.train.eval_batch_size = 64
  config.train.steps_per_dispatch = 10
  if arg == "cpu":
    # nanoGPT's "on a laptop" settings (4 layers, 4 heads, width 128, context 64, no
    # dropout), with batch 16 and lr 2e-3: minutes on 2 CPU cores, validation loss ~1.8.
    config.dataset.block_size = 64
    config.dataset.stride = 4
    config.model.update(num_layers=4, num_heads=4, width=128, dropout_rate=0.0)
    config.optimizer.learning_rate = 2e-3
    config.schedule.alpha = 0.05  # still decays to 1e-4
    config.train.batch_size = 16
    config.train.num_steps = 1500
    config.train.eval_every_steps = 250
    config.train.eval_batch_size = 256
    config.train.steps_per_dispatch = 1  # an unrolled chunk takes a minute to compile on CPU
  elif arg == "tiny":  # seconds: for tests
    config.dataset.block_size = 32
    config.dataset.stride = 16
    config.dataset.num_examples = 2000
    config.model.update(num_layers=2, num_heads=2, width=32, dropout_rate=0.1)
    config.schedule.warmup_steps = 2
    config.train.batch_size = 16
    config.train.num_steps = 20
    config.train.eval_every_steps = 10
    config.train.log_every_steps = 10
    config.train.eval_batch_size = 256
    config.train.steps_per_dispatch = 1
  elif arg:
    raise ValueError(f"unknown variant {arg!r}: use 'cpu', 'tiny' or none")
  return config
