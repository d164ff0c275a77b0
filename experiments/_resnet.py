"""The shared ResNet image-classification recipe (not an experiment itself).

The CIFAR ResNet-18 recipe that published re-implementations use to reach about 95% on
CIFAR-10 (e.g. kuangliu/pytorch-cifar: 95.4%): 3x3 stem, SGD with Nesterov momentum 0.9,
learning rate 0.1 at batch 128, weight decay 5e-4 on kernels only (not on BatchNorm scales or
biases), cosine decay after a short linear warmup, 200 epochs, random crop (pad 4) and
horizontal flip, bf16 compute with fp32 parameters.
"""

import ml_collections

from research.config import base_config


def resnet_config(dataset: str, num_epochs: float, crop_padding: int) -> ml_collections.ConfigDict:
  config = base_config()
  config.dataset.name = dataset
  config.dataset.validation_fraction = 0.1
  config.model = ml_collections.ConfigDict(dict(name="resnet", depth=18, stem="cifar", width=64))
  config.task.name = "multiclass"
  config.optimizer.name = "nesterov"
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 5e-4
  config.schedule.name = "cosine"
  config.schedule.warmup_steps = 700  # ~2 epochs of 45k examples at batch 128
  config.augment.random_crop_padding = crop_padding
  config.augment.horizontal_flip = True
  config.precision = "bfloat16"
  config.train.batch_size = 128
  config.train.eval_batch_size = 500
  config.train.num_epochs = num_epochs
  config.train.log_every_steps = 100
  return config


def shrink_for_tests(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`:tiny`: a narrow ResNet for a few steps on a few hundred examples (seconds on CPU)."""
  config.model.width = 4
  config.dataset.num_examples = 256
  config.precision = "float32"
  config.schedule.warmup_steps = 2
  config.train.batch_size = 32
  config.train.eval_batch_size = 64
  config.train.num_epochs = 0.0
  config.train.num_steps = 6
  config.train.eval_every_steps = 3
  config.train.log_every_steps = 3
  return config
