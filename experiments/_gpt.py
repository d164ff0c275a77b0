"""Shared GPT language-model recipe (not an experiment itself): nanoGPT's training settings.

AdamW (beta1 0.9, weight decay 0.1), gradient clipping at 1.0, 100 warm-up steps then a
cosine decay to 10% of the peak rate, trained for a number of steps; the experiments set
the data, the model size, the rate and beta2.
"""

import ml_collections

from research.config import base_config


def gpt_config(dataset: str, block_size: int, stride: int, learning_rate: float, b2: float,
               **model: object) -> ml_collections.ConfigDict:
  config = base_config()
  config.dataset.name = dataset
  config.dataset.block_size = block_size
  config.dataset.stride = stride
  # remat: recompute each block's activations in the backward pass (memory for compute).
  config.model = ml_collections.ConfigDict(dict(name="gpt", remat=False, **model))
  config.task.name = "language_model"
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = learning_rate
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = b2
  config.optimizer.weight_decay = 0.1
  config.optimizer.clip_norm = 1.0
  config.schedule.name = "cosine"
  config.schedule.warmup_steps = 100
  config.schedule.alpha = 0.1  # decays to 10% of the peak rate (nanoGPT's min_lr)
  config.train.num_epochs = 0.0
  return config
