"""Shared DCGAN recipe for 28x28 grey-scale datasets (not an experiment itself).

Radford et al. (2016): Adam 2e-4, beta1 0.5, batch 128, N(0, 0.02) init, BatchNorm in both
nets, LeakyReLU 0.2 in the discriminator, tanh output, one D and one G update per step with
the non-saturating loss. FID is measured on the penultimate features of a classifier this
framework trained on the same dataset (config.task.classifier_workdir), not on Inception.
"""

import ml_collections

from research.config import base_config
from research.tasks.classifier_features import CLASSIFIER_EXPERIMENTS


def dcgan_config(dataset: str) -> ml_collections.ConfigDict:
  config = base_config()
  config.dataset.name = dataset
  config.model = ml_collections.ConfigDict(dict(
      name="dcgan", image_shape=(28, 28, 1), latent_dim=100, base_width=64,
      discriminator_batchnorm=True, project_width=0, refine_kernel=0))
  config.task.name = "gan"
  # A classifier of the same dataset trained by this framework: its features define the FID.
  # Made by `python -m launch.main --config=experiments/<dataset>_cnn.py --workdir=<this>`.
  config.task.classifier_workdir = f"runs/{CLASSIFIER_EXPERIMENTS[dataset]}"
  config.task.classifier_best = False
  config.task.num_samples = 64   # images in each sample grid (samples/step_XXXXXX.png)
  config.task.sample_seed = 0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2e-4
  config.optimizer.b1 = 0.5
  config.train.batch_size = 128
  config.train.num_epochs = 20.0
  config.train.eval_every_steps = 1000
  config.train.log_every_steps = 200
  return config


def apply_variant(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """`:tiny` (tests: a few steps of a tiny net), `:cpu` (minutes on 2 CPU cores)."""
  if arg == "tiny":
    config.model.latent_dim = 16
    config.model.base_width = 8
    config.dataset.num_examples = 256
    config.task.num_samples = 16
    config.train.batch_size = 16
    config.train.num_epochs = 0.0
    config.train.num_steps = 4
    config.train.eval_every_steps = 2
    config.train.log_every_steps = 2
  elif arg == "cpu":
    config.model.base_width = 32
    config.train.batch_size = 64
    config.train.num_epochs = 0.0
    config.train.num_steps = 3000
    config.train.eval_every_steps = 250
    config.train.log_every_steps = 50
  elif arg:
    raise ValueError(f"unknown variant {arg!r}: use 'tiny', 'cpu' or none")
  return config
