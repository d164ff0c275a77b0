"""Fashion-MNIST Keras CNN with gradual magnitude pruning (Zhu & Gupta 2017) to 90% sparsity.

The fashion_mnist_cnn recipe (Adam 1e-3, batch 64, 10 epochs, cosine decay); the kernels'
smallest weights (ranked over all layers together) are zeroed along the cubic ramp from 10%
to 60% of training, the masks updated every 50 steps, and the network fine-tunes with its
masks fixed for the remaining 40%. result.json reports the sparsity reached. Variants
(comma-separated): a number sets the final sparsity (`:0.95`), `cpu` (12,000 training
images), `tiny` (tests). The accuracy-versus-sparsity table, then each trial's test accuracy
with float32 and int8 weights:

  python -m launch.sweep --config=experiments/fashion_mnist_cnn_pruned.py:cpu \
      --sweep_dir=runs/sweeps/fashion_mnist_cnn_pruned
  python -m launch.quantize --workdir=runs/sweeps/fashion_mnist_cnn_pruned/trials/000N

Measured on `:cpu` (12,000 images, 10 epochs, seed 0, 2 shared CPU cores, 3.5-4.5 min each):

  sparsity  validation  test     test int8  int8 .npz gzipped  per layer (conv1-3, dense1, head)
  0         0.8842      0.8738   0.8735     92,234 B           -
  0.5       0.8812      0.8690   0.8693     68,019 B           0.09 0.38 0.53 0.54 0.21
  0.8       0.8728      0.8625   0.8621     38,048 B           0.14 0.64 0.83 0.86 0.38
  0.9       0.8562      0.8492   0.8491     23,969 B           0.18 0.76 0.93 0.95 0.48
  0.95      0.8323      0.8243   0.8244     15,759 B           0.24 0.87 0.97 0.98 0.60

(float32 .npz: 375,970 B; int8: 98,942 B uncompressed whatever the sparsity.)
"""

import ml_collections

from experiments import fashion_mnist_cnn
from experiments._pruning import pruned_config, sparsity_sweep

REFERENCE = dict(
    metric="test/accuracy", value=0.88, goal=">=",
    source="the dense recipe's 0.911 (fashion_mnist_cnn) less the cost of 90% sparsity measured "
           "here on :cpu (12k images, one seed): 0.849 pruned vs 0.874 dense test accuracy; Zhu "
           "& Gupta 2017 (arXiv:1710.01878) lose 1-2 points at 90% on larger models")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return pruned_config(fashion_mnist_cnn.get_config, arg)


def get_sweep(arg: str | None = None) -> dict:
  return sparsity_sweep()
