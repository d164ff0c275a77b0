"""Quantisation-aware training: the forward pass sees the weights `launch.quantize` will store.

With `config.qat.bits = N` every forward pass (training and evaluation) runs on the weights
rounded exactly as post-training quantisation rounds them (`quantize.quantize_array`:
symmetric, one scale per output channel, `2**(N-1) - 1` levels), while the optimizer keeps
and updates float32 weights. Rounding has no useful gradient, so the backward pass treats it
as the identity (the straight-through estimator, Bengio et al. 2013; Jacob et al. 2018): the
network learns weights that still work once rounded. The validation metrics of a QAT run are
therefore those of its quantised model, and `launch.quantize --bits=N` of its checkpoint
reproduces them.

Fine-tune a trained float run this way (`config.init_from`) where post-training rounding to
few bits costs accuracy: 4 bits and below, rarely 8.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from research.compress.quantize import channel_axis, levels, round_per_channel
from research.errors import ConfigError
from research.training.transfer import path_name


def default_qat_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(bits=0))  # 0: off; 2-8: weights rounded to N bits


def qat_bits(config: ml_collections.ConfigDict) -> int:
  """config.qat.bits, checked (0 when the config has no qat section)."""
  bits = config.get("qat", {}).get("bits", 0)
  if bits == 0:
    return 0
  try:
    levels(bits)
  except ValueError:
    raise ConfigError(f"config.qat.bits must be 0 (off) or an integer in [2, 8], got "
                      f"{bits!r}.") from None
  return bits


def fake_quantize(params: Any, bits: int) -> Any:
  """`params` with every quantised tensor rounded to `bits`; gradients pass straight through."""

  def one(path, w):
    axis = channel_axis(path_name(path), w.ndim)
    if axis is None:
      return w
    q, scale = round_per_channel(w, axis, bits, jnp)
    return w + jax.lax.stop_gradient(q * scale - w)

  return jax.tree_util.tree_map_with_path(one, params)
