"""DCGAN on MNIST (TFDS `mnist`); FID on the features of this framework's MNIST CNN.

Needs the feature classifier first (once):
  python -m launch.main --config=experiments/mnist_cnn.py --workdir=runs/mnist_cnn
Prepare the data once with `tfds build mnist --file_format=array_record`. Sample grids:
WORKDIR/samples/.

MNIST's training images are not on this machine, so the reference comes from a stand-in:
`mnist_cnn` trained on the 10,000 MNIST test images (90% train, 97.7% validation accuracy).
On its features an untrained generator scores test FID 1251-1270 (seeds 0-2, base_width 32
and 64; mean 1264), and `:cpu` trained 1,500 steps on the same 9,000 images reached 100.1
(validation FID 214 at step 250, 94 at 1,000). FIDs on another classifier differ in scale.
"""

import ml_collections

from experiments._dcgan import apply_variant, dcgan_config

REFERENCE = dict(
    metric="test/fid_mnist_classifier", value=316.0, goal="<=",
    source="measured here on a stand-in classifier (mnist_cnn trained on the MNIST test "
           "images): random-init generator FID = 1264 (mean of 6 inits); the goal is at most "
           "1/4 of it. Not comparable with Inception-FID")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return apply_variant(dcgan_config("mnist"), arg)
