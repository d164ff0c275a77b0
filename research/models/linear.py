"""A single dense layer: linear, logistic and softmax regression.

These are one model: the task's loss (MSE, sigmoid BCE, softmax CE) is what makes
them different, so the aliases exist only so configs read naturally.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.models.layers import flatten
from research.models.registry import MODELS


@MODELS.register('softmax_regression')
@MODELS.register('logistic_regression')
@MODELS.register('linear_regression')
@MODELS.register('linear')
class Linear(nn.Module):
  """y = W x + b on flattened inputs; returns raw outputs (logits / predictions)."""

  num_outputs: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
    del train  # No dropout or batch statistics; kept for the common signature.
    x = flatten(jnp.asarray(inputs, self.dtype))
    return nn.Dense(self.num_outputs, dtype=self.dtype, param_dtype=jnp.float32,
                    name='dense')(x)
