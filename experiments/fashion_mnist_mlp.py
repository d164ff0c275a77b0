"""Fashion-MNIST: 784-500-10 ReLU MLP, Adam 1e-3, batch 64, 10 epochs.

Reads the IDX files from /usr/share/datasets/fashion-mnist
(apt-get install dataset-fashion-mnist) or TFDS `fashion_mnist`.
"""

import ml_collections

from experiments._mnist_family import apply_variant, mnist_family_config

REFERENCE = dict(
    metric="test/accuracy", value=0.885, goal=">=",
    source="Xiao et al. 2017 (arXiv:1708.07747) benchmark: MLPClassifier 87-88%; Keras MLPs about 88-89%")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return apply_variant(mnist_family_config("fashion_mnist", "mlp"), arg)
