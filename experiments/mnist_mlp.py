"""MNIST: 784-500-10 ReLU MLP, Adam 1e-3, batch 64, 10 epochs.

Users run it on TFDS `mnist`; MNIST's training images are not on these machines.
"""

import ml_collections

from experiments._mnist_family import apply_variant, mnist_family_config

REFERENCE = dict(
    metric="test/accuracy", value=0.98, goal=">=",
    source="784-500-10 MLP with Adam, 10 epochs: about 98% (LeCun et al. 1998 report 98.4-98.5% for 500-300 nets)")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return apply_variant(mnist_family_config("mnist", "mlp"), arg)
