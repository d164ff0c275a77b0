"""DCGAN on Fashion-MNIST; FID on the features of this framework's Fashion-MNIST CNN.

Needs the feature classifier first (once):
  python -m launch.main --config=experiments/fashion_mnist_cnn.py --workdir=runs/fashion_mnist_cnn
Reads the IDX files from /usr/share/datasets/fashion-mnist (apt-get install
dataset-fashion-mnist) or TFDS `fashion_mnist`. Sample grids: WORKDIR/samples/.

Measured here (classifier runs/reproduce/fashion_mnist_cnn/seed_0, 91.1% test accuracy): an
untrained generator scores test FID 385.6-389.6 (seeds 0-2, base_width 32 and 64; mean
386.9); `:cpu` (3,000 steps of batch 64) ends at test FID 30.2, its validation FID falling
at every evaluation (146 at step 250, 73 at 1,000, 45 at 2,000).
"""

import ml_collections

from experiments._dcgan import apply_variant, dcgan_config

REFERENCE = dict(
    metric="test/fid_fashion_mnist_classifier", value=96.0, goal="<=",
    source="measured here: random-init generator FID = 386.9 (test, mean of 6 inits); the goal "
           "is at most 1/4 of it. Features of this framework's Fashion-MNIST CNN: not "
           "comparable with Inception-FID")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return apply_variant(dcgan_config("fashion_mnist"), arg)
