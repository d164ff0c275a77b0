"""Entry points: main (train / evaluate / seeds / cross-validation), sweep, reproduce, bench.

Importing this package sets one XLA:CPU default before JAX starts (every entry point is a
module of this package, so it runs first): XLA:CPU in jaxlib 0.10 hands convolutions to
YNNPACK, whose convolution kernels ran the Keras MNIST CNN step at 20 ms on 2 cores where
XLA's own ran it at 11 ms (BENCHMARKS.md). A value the user put in XLA_FLAGS wins; jaxlib
versions not measured are left alone, since XLA aborts on a flag it does not know.
"""

import importlib.metadata
import os

_CPU_CONV_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def _set_xla_cpu_defaults() -> None:
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_experimental_ynn_fusion_type" in flags:
    return
  try:
    jaxlib = importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    return
  if jaxlib.startswith("0.10."):
    os.environ["XLA_FLAGS"] = f"{flags} {_CPU_CONV_FLAG}".strip()


_set_xla_cpu_defaults()
