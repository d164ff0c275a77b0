"""ResNet-18 (3x3 stem) on Fashion-MNIST's 28x28x1 images: the CIFAR recipe, same code.

Measured on the real data (Debian's dataset-fashion-mnist, or TFDS `fashion_mnist`). The full
recipe is sized for a GPU; `:cpu` is a quarter-width ResNet-18 on 12k examples for 3 epochs,
which runs in minutes on 2 CPU cores.
"""

import ml_collections

from experiments._resnet import resnet_config, shrink_for_tests

REFERENCE = dict(
    metric="test/accuracy", value=0.945, goal=">=",
    source="ResNet-18 on Fashion-MNIST: 94-95% (Zhong et al. 2020, random erasing paper, "
           "Table 2: ResNet-18 baseline 94.7%; Fashion-MNIST benchmark page ~94.9%)")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: '' (30 epochs, GPU), 'cpu' (width 16, 12k examples, 3 epochs), 'tiny'."""
  config = resnet_config("fashion_mnist", num_epochs=30.0, crop_padding=2)
  config.schedule.warmup_steps = 800
  if arg == "cpu":
    config.model.width = 16
    config.dataset.num_examples = 12000
    config.precision = "float32"
    config.schedule.warmup_steps = 100
    config.train.num_epochs = 3.0
  elif arg == "tiny":
    shrink_for_tests(config)
  elif arg:
    raise ValueError(f"unknown variant {arg!r}: use 'cpu', 'tiny' or none")
  return config
