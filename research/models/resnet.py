"""ResNets (He et al., 2016): the ImageNet family (18-152) and the CIFAR family (6n+2).

BatchNorm statistics live in the `batch_stats` collection: the task applies the model with
that collection mutable while training and frozen while evaluating, so the model itself stays
pure. Parameters are float32; `dtype` is the compute dtype (bf16 under mixed precision).

- `resnet`: depth 18/34 (basic blocks) or 50/101/152 (bottlenecks), widths 64-512.
  stem='cifar' is the 3x3 stride-1 stem without max-pool used by CIFAR ResNet-18 recipes
  (32x32 inputs keep 4x4 maps before pooling); stem='imagenet' is the 7x7/2 conv + 3x3/2 pool.
- `cifar_resnet`: the paper's CIFAR-10 networks, depth 6n+2 (20, 32, 44, 56, 110), widths
  16-32-64, with the parameter-free option-A shortcut (subsample + zero-pad channels) the
  paper uses, so ResNet-20 has its 0.27M parameters.

Stem convolutions go through `research.models.conv.conv_general_dilated`, which runs a
single-channel (Fashion-MNIST) stem tap by tap on CPU and is `lax.conv_general_dilated`
otherwise.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.errors import ConfigError
from research.models.conv import conv_general_dilated
from research.models.layers import as_images
from research.models.registry import MODELS

_IMAGENET_STAGES = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
                    50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
                    152: ("bottleneck", (3, 8, 36, 3))}


class _Block(nn.Module):
  """A residual block: basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 with 4x expansion)."""
  features: int
  strides: int
  kind: str
  shortcut: str  # 'projection' (1x1 conv + BN when shapes change) or 'pad' (option A)
  zero_init_residual: bool
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32)
    last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    s = (self.strides, self.strides)
    if self.kind == "basic":
      out_features = self.features
      y = nn.relu(norm()(conv(self.features, (3, 3), s, padding=1)(x)))
      y = norm(scale_init=last_scale)(conv(self.features, (3, 3), padding=1)(y))
    else:
      out_features = 4 * self.features
      y = nn.relu(norm()(conv(self.features, (1, 1))(x)))
      y = nn.relu(norm()(conv(self.features, (3, 3), s, padding=1)(y)))
      y = norm(scale_init=last_scale)(conv(out_features, (1, 1))(y))
    residual = x
    if x.shape[-1] != out_features or self.strides != 1:
      if self.shortcut == "pad":
        residual = x[:, ::self.strides, ::self.strides, :]
        extra = out_features - x.shape[-1]
        residual = jnp.pad(residual, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
      else:
        residual = norm()(conv(out_features, (1, 1), s, name="shortcut_conv")(x))
    return nn.relu(y + residual.astype(y.dtype))


def _stages(x: jax.Array, train: bool, kind: str, stage_sizes: tuple[int, ...],
            widths: tuple[int, ...], shortcut: str, zero_init_residual: bool, dtype: Any,
            parent: nn.Module) -> jax.Array:
  for i, (num_blocks, width) in enumerate(zip(stage_sizes, widths)):
    for j in range(num_blocks):
      strides = 2 if i > 0 and j == 0 else 1
      x = _Block(width, strides, kind, shortcut, zero_init_residual, dtype,
                 name=f"stage{i + 1}_block{j + 1}", parent=parent)(x, train)
  return x


def _head(x: jax.Array, num_outputs: int, dtype: Any) -> jax.Array:
  x = jnp.mean(x, axis=(1, 2))
  return nn.Dense(num_outputs, dtype=dtype, param_dtype=jnp.float32, name="head")(x)


@MODELS.register("resnet")
class ResNet(nn.Module):
  """ImageNet-family ResNet; `stem='cifar'` for 32x32 (or 28x28) images."""

  num_outputs: int
  depth: int = 18
  stem: str = "cifar"
  width: int = 64
  zero_init_residual: bool = False
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    if self.depth not in _IMAGENET_STAGES:
      raise ConfigError(f"config.model.depth = {self.depth} is not a ResNet depth; use one of "
                        f"{sorted(_IMAGENET_STAGES)} (or model 'cifar_resnet' for 6n+2).")
    if self.stem not in ("cifar", "imagenet"):
      raise ConfigError(f"config.model.stem = {self.stem!r}: use 'cifar' or 'imagenet'.")
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
    x = as_images(jnp.asarray(inputs, self.dtype), "resnet")
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32)
    if self.stem == "cifar":
      x = nn.relu(norm(name="stem_bn")(conv(self.width, (3, 3), padding=1,
                                            conv_general_dilated=conv_general_dilated,
                                            name="stem_conv")(x)))
    else:
      x = conv(self.width, (7, 7), (2, 2), padding=3, conv_general_dilated=conv_general_dilated,
               name="stem_conv")(x)
      x = nn.relu(norm(name="stem_bn")(x))
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    kind, stage_sizes = _IMAGENET_STAGES[self.depth]
    widths = tuple(self.width * 2 ** i for i in range(4))
    x = _stages(x, train, kind, stage_sizes, widths, "projection", self.zero_init_residual,
                self.dtype, self)
    return _head(x, self.num_outputs, self.dtype)


@MODELS.register("cifar_resnet")
class CifarResNet(nn.Module):
  """The CIFAR-10 ResNets of He et al. (2016), section 4.2: depth 6n+2, widths 16-32-64."""

  num_outputs: int
  depth: int = 20
  width: int = 16
  zero_init_residual: bool = False
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    if self.depth < 8 or (self.depth - 2) % 6:
      raise ConfigError(f"config.model.depth = {self.depth} is not 6n+2 (20, 32, 44, 56, 110).")
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
    x = as_images(jnp.asarray(inputs, self.dtype), "cifar_resnet")
    x = nn.Conv(self.width, (3, 3), padding=1, use_bias=False, dtype=self.dtype,
                param_dtype=jnp.float32, conv_general_dilated=conv_general_dilated,
                name="stem_conv")(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                             dtype=self.dtype, param_dtype=jnp.float32, name="stem_bn")(x))
    n = (self.depth - 2) // 6
    widths = (self.width, 2 * self.width, 4 * self.width)
    x = _stages(x, train, "basic", (n, n, n), widths, "pad", self.zero_init_residual,
                self.dtype, self)
    return _head(x, self.num_outputs, self.dtype)
