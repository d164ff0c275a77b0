"""Transfer learning: the Keras CNN pretrained on Fashion-MNIST, fine-tuned on 100 real MNIST
digits, against the same CNN trained from scratch on the same 100 digits and budget.

Data: MNIST's real test images (`mnist_t10k`, 10k digits): 50% held out as test, 10% of the
rest as validation, 100 of the remainder to train on. The source run is `fashion_mnist_cnn`'s
checkpoint, made by `python -m launch.reproduce --only=fashion_mnist_cnn --seeds=1` (or set
`--config.init_from.workdir` to any fashion_mnist_cnn workdir). Its convolutions transfer; the
dense layers (64 clothing features and the head) are re-initialised. Measured on seed 0:
keeping the pretrained dense1 as well hurt (0.686 vs 0.779 from scratch), and with 500 digits
the gain vanishes (0.932 vs 0.931): pretraining on another domain helps only when data is scarce.

Variants: '' fine-tunes everything, the pretrained convolutions at 0.1x the learning rate;
'frozen' trains only the dense layers on frozen pretrained convolutions; 'scratch' is the
baseline without pretraining.
"""

import ml_collections

from research.config import base_config

REFERENCE = dict(
    metric="test/accuracy", value=0.79, goal=">=",
    source="measured here: the same CNN from scratch on the same 100 digits and budget reaches "
           "0.779 (`mnist_transfer.py:scratch`, seed 0); fine-tuning must beat it")

PRETRAINED = "runs/reproduce/fashion_mnist_cnn/seed_0"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = base_config()
  config.dataset.name = "mnist_t10k"
  config.dataset.test_fraction = 0.5
  config.dataset.num_examples = 100
  config.model = ml_collections.ConfigDict(dict(name="keras_cnn", dropout_rate=0.0))
  config.task.name = "multiclass"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.train.batch_size = 32
  config.train.num_epochs = 30.0
  config.train.log_every_steps = 30
  config.train.steps_per_dispatch = 5
  config.init_from.workdir = PRETRAINED
  config.init_from.exclude = ("head", "dense1")
  if arg in ("", None):
    config.optimizer.scale_lr = ("conv",)
    config.optimizer.scale_lr_factor = 0.1
  elif arg == "frozen":
    config.optimizer.freeze = ("conv",)
  elif arg == "scratch":
    config.init_from.workdir = ""
    config.init_from.exclude = ()
  elif arg != "tiny":
    raise ValueError(f"unknown variant {arg!r}: use 'frozen', 'scratch', 'tiny' or none")
  if arg == "tiny":  # tests point init_from at their own tiny source run
    config.dataset.num_examples = 64
    config.train.num_epochs = 0.0
    config.train.num_steps = 4
    config.train.eval_every_steps = 2
    config.train.log_every_steps = 2
    config.train.steps_per_dispatch = 1
    config.optimizer.freeze = ("conv",)
  return config
