"""A multi-layer perceptron on flattened inputs."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.models.layers import (activation_fn, check_dropout_rate, check_sizes,
                                    flatten)
from research.models.registry import MODELS


@MODELS.register('mlp')
class MLP(nn.Module):
  """Dense -> activation -> dropout, per hidden size, then a linear head.

  Attributes:
    hidden_sizes: widths of the hidden layers; () gives a linear model.
    activation: one of `research.models.layers.ACTIVATIONS`.
    dropout_rate: dropout after each hidden activation, only when train=True.
  """

  num_outputs: int
  hidden_sizes: tuple[int, ...]
  activation: str = 'relu'
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    # Validate at construction so a bad config fails before any compilation.
    activation_fn(self.activation)
    check_sizes(self.hidden_sizes, 'config.model.hidden_sizes')
    check_dropout_rate(self.dropout_rate)
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
    act = activation_fn(self.activation)
    x = flatten(jnp.asarray(inputs, self.dtype))
    for i, size in enumerate(self.hidden_sizes):
      x = nn.Dense(size, dtype=self.dtype, param_dtype=jnp.float32,
                   name=f'dense{i}')(x)
      x = act(x)
      if self.dropout_rate > 0:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_outputs, dtype=self.dtype, param_dtype=jnp.float32,
                    name='head')(x)
