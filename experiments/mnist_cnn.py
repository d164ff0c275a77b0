"""MNIST: the Keras MNIST CNN, Adam 1e-3, batch 64, 5 epochs.

Users run it on TFDS `mnist`; MNIST's training images are not on these machines.
"""

import ml_collections

from experiments._mnist_family import apply_variant, mnist_family_config

REFERENCE = dict(
    metric="test/accuracy", value=0.99, goal=">=",
    source="Keras MNIST convnet example (keras.io/examples/vision/mnist_convnet): about 99%")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return apply_variant(mnist_family_config("mnist", "cnn"), arg)
