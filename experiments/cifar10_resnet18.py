"""ResNet-18 (3x3 stem) on CIFAR-10 with the standard SGD + cosine + crop/flip recipe.

CIFAR-10 is not on these machines: users with TFDS `cifar10` (or the upstream python batches
in dataset.data_dir) run it in one command; tests run `:tiny` on TFDS mock data.
"""

import ml_collections

from experiments._resnet import resnet_config, shrink_for_tests

REFERENCE = dict(
    metric="test/accuracy", value=0.94, goal=">=",
    source="published CIFAR-10 ResNet-18 recipes reach about 95% (kuangliu/pytorch-cifar "
           "95.44%, 200 epochs); the bound allows for seeds and our 10% validation hold-out")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: '' (200 epochs), 'short' (30 epochs, ~93%), 'tiny' (tests)."""
  config = resnet_config("cifar10", num_epochs=200.0, crop_padding=4)
  if arg == "short":
    config.train.num_epochs = 30.0
  elif arg == "tiny":
    shrink_for_tests(config)
  elif arg:
    raise ValueError(f"unknown variant {arg!r}: use 'short', 'tiny' or none")
  return config
