"""The config schema every experiment starts from, and its validation.

`base_config()` holds every field with its default, so that any field can be set from
the command line (`--config.train.batch_size=128`) and a typo is caught as an unknown
key. Experiments copy it and change what their recipe needs.
"""

from __future__ import annotations

import ml_collections

from research.data.augment import default_augment_config, validate as validate_augment
from research.errors import ConfigError
from research.training.mesh import default_mesh_config
from research.training.transfer import default_init_from_config
from research.training.optimizers import default_optimizer_config, default_schedule_config

PRECISIONS = ("float32", "bfloat16")


def default_train_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      batch_size=64,
      num_epochs=1.0,              # used when num_steps == 0
      num_steps=0,
      eval_batch_size=0,           # 0: min(1000, split size)
      log_every_steps=100,
      eval_every_steps=0,          # 0: once per epoch
      checkpoint_every_steps=0,    # 0: at every evaluation
      keep_checkpoints=3,
      async_checkpoints=True,
      steps_per_dispatch=1,        # > 1: several steps per compiled call (lax.scan)
      # Token sequences: train batches of similar length, cut to the smallest of these
      # lengths that holds them (the padded length is always the last); () = off. See
      # research/training/batching.py.
      length_buckets=(),
      best_metric="",              # validation metric for the best checkpoint; '' = task's
      best_mode="",                # 'max' | 'min'; '' = task's
      early_stopping_patience=0,   # evaluations without improvement before stopping; 0 = off
      early_stopping_min_delta=0.0,
  ))


def base_config() -> ml_collections.ConfigDict:
  from research.compress.qat import default_qat_config
  from research.data import default_dataset_config  # the data package owns its schema
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = default_dataset_config()
  config.augment = default_augment_config()   # on-device train-time augmentation
  config.init_from = default_init_from_config()  # start from another run's weights
  config.model = ml_collections.ConfigDict({"name": ""})
  config.task = ml_collections.ConfigDict(dict(name="multiclass", label_smoothing=0.0, top_k=5))
  config.optimizer = default_optimizer_config()
  config.schedule = default_schedule_config()
  config.train = default_train_config()
  config.precision = "float32"     # 'bfloat16': bf16 compute, fp32 params and optimizer state
  config.qat = default_qat_config()  # quantisation-aware training (research/compress/qat.py)
  config.mesh = default_mesh_config()  # data / fsdp / model axis sizes, logical axis rules
  return config


def _positive(config: ml_collections.ConfigDict, path: str, allow_zero: bool = False) -> None:
  value = config
  for part in path.split("."):
    value = value[part]
  if value < 0 or (value == 0 and not allow_zero):
    bound = ">= 0" if allow_zero else "> 0"
    raise ConfigError(f"config.{path} must be {bound}, got {value}.")


def validate(config: ml_collections.ConfigDict) -> None:
  """Range checks that need no dataset; names are checked where they are looked up."""
  _positive(config, "train.batch_size")
  _positive(config, "optimizer.learning_rate")
  _positive(config, "train.steps_per_dispatch")
  _positive(config, "train.keep_checkpoints")
  for path in ("train.num_steps", "train.num_epochs", "train.log_every_steps",
               "train.eval_every_steps", "train.checkpoint_every_steps",
               "train.eval_batch_size", "train.early_stopping_patience",
               "optimizer.l1", "optimizer.l2", "optimizer.weight_decay", "optimizer.clip_norm",
               "task.label_smoothing"):
    _positive(config, path, allow_zero=True)
  if config.train.num_steps == 0 and config.train.num_epochs == 0:
    raise ConfigError("config.train.num_steps and config.train.num_epochs are both 0: "
                      "set one of them to the length of training.")
  validate_augment(config.augment)
  if config.precision not in PRECISIONS:
    raise ConfigError(f"config.precision must be one of {PRECISIONS}, got {config.precision!r}.")
  if config.train.best_mode not in ("", "max", "min"):
    raise ConfigError(f"config.train.best_mode must be 'max' or 'min', got {config.train.best_mode!r}.")
  if not config.model.name:
    raise ConfigError("config.model.name is empty: name a model (see research/models).")
  if not 0 <= config.task.label_smoothing < 1:
    raise ConfigError(f"config.task.label_smoothing must be in [0, 1), got {config.task.label_smoothing}.")
