"""Shared pruning settings (not an experiment itself): the variant grammar and the sweep.

A pruned recipe's variant is comma- (or `+`-) separated: a number is the final sparsity
(`experiments/fashion_mnist_cnn_pruned.py:0.95,cpu`), other words are the base recipe's
variants. `get_sweep` is the accuracy-versus-sparsity grid that `launch.sweep` runs.
"""

from __future__ import annotations

from typing import Callable

import ml_collections

from experiments._text import variant_words

SPARSITIES = (0.0, 0.5, 0.8, 0.9, 0.95)


def split_variant(arg: str | None, default_sparsity: float) -> tuple[float, str]:
  """(the sparsity the variant names, else the default; the other words, comma-joined)."""
  sparsity, rest = default_sparsity, []
  for part in variant_words(arg):
    try:
      sparsity = float(part)
    except ValueError:
      rest.append(part)
  return sparsity, ",".join(rest)


def set_pruning(config: ml_collections.ConfigDict, sparsity: float, start: float, end: float,
                update_every: int) -> ml_collections.ConfigDict:
  """Gradual global magnitude pruning of the kernels (biases stay dense)."""
  prune = config.optimizer.prune
  prune.sparsity = sparsity
  prune.scope = "global"
  prune.start, prune.end, prune.update_every = start, end, update_every
  return config


def pruned_config(base: Callable[[str | None], ml_collections.ConfigDict],
                  arg: str | None) -> ml_collections.ConfigDict:
  """`base(variant)` pruned to 90% (or the variant's sparsity) along the ramp from 10% to
  60% of training, masks updated every 50 steps; `tiny` ramps over its first half."""
  sparsity, rest = split_variant(arg, 0.9)
  config = base(rest or None)
  if "tiny" in variant_words(rest):
    return set_pruning(config, sparsity, start=0.0, end=0.5, update_every=2)
  return set_pruning(config, sparsity, start=0.1, end=0.6, update_every=50)


def sparsity_sweep() -> dict:
  """Accuracy versus sparsity: one trial per sparsity of the grid."""
  return {"metric": "validation/accuracy", "mode": "max", "sampler": "grid",
          "num_trials": len(SPARSITIES),
          "params": {"optimizer.prune.sparsity": {"type": "choice",
                                                  "values": list(SPARSITIES)}}}
