"""Convolutional classifiers for small images: Keras MNIST CNN, LeNet-5, digits CNN.

These models mostly run on CPU, so two XLA:CPU weak spots are routed around: pooling
goes through the helpers in `layers.py` (`nn.max_pool`'s gradient, select-and-scatter,
is very slow there), and convolutions through `conv.conv_general_dilated` (a first layer
with one input channel runs tap by tap).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.models.conv import conv_general_dilated
from research.models.layers import (activation_fn, as_images, avg_pool_2x2,
                                    check_dropout_rate, check_sizes, flatten,
                                    max_pool_2x2, require_min_size)
from research.models.registry import MODELS


def _conv(features: int, kernel: int, padding: str, dtype: Any, name: str) -> nn.Conv:
  return nn.Conv(features, (kernel, kernel), padding=padding, dtype=dtype,
                 param_dtype=jnp.float32, conv_general_dilated=conv_general_dilated,
                 name=name)


def _dense(features: int, dtype: Any, name: str) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, name=name)


@MODELS.register('keras_cnn')
class KerasCNN(nn.Module):
  """The Keras MNIST example CNN, so results compare to the well-known baseline.

  Conv32 3x3 valid relu -> maxpool 2 -> Conv64 3x3 valid relu -> maxpool 2 ->
  Conv64 3x3 valid relu -> flatten -> Dense64 relu -> [dropout] -> Dense(out).
  With 28x28x1 inputs and 10 outputs it has 93,322 parameters, like Keras.
  """

  num_outputs: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    check_dropout_rate(self.dropout_rate)
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
    x = as_images(jnp.asarray(inputs, self.dtype), 'keras_cnn')
    require_min_size(x, 18, 'keras_cnn')
    x = nn.relu(_conv(32, 3, 'VALID', self.dtype, 'conv1')(x))
    x = max_pool_2x2(x)
    x = nn.relu(_conv(64, 3, 'VALID', self.dtype, 'conv2')(x))
    x = max_pool_2x2(x)
    x = nn.relu(_conv(64, 3, 'VALID', self.dtype, 'conv3')(x))
    x = flatten(x)
    x = nn.relu(_dense(64, self.dtype, 'dense1')(x))
    if self.dropout_rate > 0:
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return _dense(self.num_outputs, self.dtype, 'head')(x)


@MODELS.register('lenet5')
class LeNet5(nn.Module):
  """LeCun et al. (1998) LeNet-5, adapted to 28x28 inputs with a 'SAME' first conv.

  Conv6 5x5 same -> avgpool 2 -> Conv16 5x5 valid -> avgpool 2 -> Dense120 ->
  Dense84 -> [dropout] -> Dense(out), with `activation` after every hidden
  layer ('tanh' as in the paper, 'relu' as in most modern re-implementations).
  """

  num_outputs: int
  activation: str = 'tanh'
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    activation_fn(self.activation)
    check_dropout_rate(self.dropout_rate)
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
    act = activation_fn(self.activation)
    x = as_images(jnp.asarray(inputs, self.dtype), 'lenet5')
    require_min_size(x, 12, 'lenet5')
    x = act(_conv(6, 5, 'SAME', self.dtype, 'conv1')(x))
    x = avg_pool_2x2(x)
    x = act(_conv(16, 5, 'VALID', self.dtype, 'conv2')(x))
    x = avg_pool_2x2(x)
    x = flatten(x)
    x = act(_dense(120, self.dtype, 'dense1')(x))
    x = act(_dense(84, self.dtype, 'dense2')(x))
    if self.dropout_rate > 0:
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return _dense(self.num_outputs, self.dtype, 'head')(x)


@MODELS.register('small_cnn')
class SmallCNN(nn.Module):
  """A small CNN for 8x8 scikit-learn digits (also fine on 28x28 images).

  One 'SAME' 3x3 relu conv per entry of `features`, one 2x2 max pool, then
  Dense(`dense`) relu -> [dropout] -> Dense(out). Pooling only once keeps enough
  spatial resolution for 8x8 inputs.
  """

  num_outputs: int
  features: tuple[int, ...] = (32, 64)
  dense: int = 128
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    check_sizes(self.features, 'config.model.features')
    check_sizes((self.dense,), 'config.model.dense')
    check_dropout_rate(self.dropout_rate)
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
    x = as_images(jnp.asarray(inputs, self.dtype), 'small_cnn')
    require_min_size(x, 2, 'small_cnn')
    for i, features in enumerate(self.features):
      x = nn.relu(_conv(features, 3, 'SAME', self.dtype, f'conv{i + 1}')(x))
    x = max_pool_2x2(x)
    x = flatten(x)
    x = nn.relu(_dense(self.dense, self.dtype, 'dense1')(x))
    if self.dropout_rate > 0:
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return _dense(self.num_outputs, self.dtype, 'head')(x)
