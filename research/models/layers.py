"""Small shared pieces of the model zoo: activation lookup, input reshaping, pooling.

The pooling helpers exist for speed, not novelty: on XLA:CPU the gradient of
`lax.reduce_window` max (`nn.max_pool`) lowers to select-and-scatter, which is
many times slower than the strided-view formulation used here. The two give
identical values and gradients, which `tests/test_models.py` checks.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.errors import ConfigError

Activation = Callable[[jax.Array], jax.Array]

ACTIVATIONS: dict[str, Activation] = {
  'relu': nn.relu,
  'leaky_relu': nn.leaky_relu,
  'elu': nn.elu,
  'gelu': nn.gelu,
  'tanh': jnp.tanh,
  'sigmoid': nn.sigmoid,
  'silu': nn.silu,
}


def activation_fn(name: str, field: str = 'config.model.activation') -> Activation:
  """Looks up an activation by name, so configs can say `activation = 'gelu'`.

  Raises a ConfigError that names the config field and the valid names, because
  a typo here is a user mistake, not a bug.
  """
  if name not in ACTIVATIONS:
    raise ConfigError(
        f'unknown activation {name!r} ({field}). '
        f'Valid activations: {", ".join(sorted(ACTIVATIONS))}.')
  return ACTIVATIONS[name]


def flatten(x: jax.Array) -> jax.Array:
  """(B, ...) -> (B, prod(...)), so dense models accept features and images alike."""
  return x.reshape((x.shape[0], -1))


def as_images(x: jax.Array, model: str) -> jax.Array:
  """Brings inputs to (B, H, W, C) for the conv models.

  Accepts (B, H, W, C), (B, H, W) (a channel axis is added) and (B, F) with F a
  perfect square (e.g. scikit-learn digits as 64 features -> 8x8x1), so the same
  dataset can feed a dense or a conv model without a separate preprocessing knob.
  """
  if x.ndim == 4:
    return x
  if x.ndim == 3:
    return x[..., None]
  if x.ndim == 2:
    side = math.isqrt(x.shape[1])
    if side * side == x.shape[1]:
      return x.reshape((x.shape[0], side, side, 1))
  raise ConfigError(
      f'model {model!r} (config.model.name) needs image inputs of shape '
      f'(batch, height, width, channels), (batch, height, width) or '
      f'(batch, side*side); got shape {tuple(x.shape)}. Use a dense model '
      f'(e.g. "mlp") for these inputs.')


def require_min_size(x: jax.Array, min_size: int, model: str) -> None:
  """Fails early with a readable message if images are too small for a conv stack.

  Without this, a too-small image surfaces as an opaque negative-dimension error
  from deep inside XLA.
  """
  h, w = x.shape[1], x.shape[2]
  if h < min_size or w < min_size:
    raise ConfigError(
        f'model {model!r} (config.model.name) needs images of at least '
        f'{min_size}x{min_size}; got {h}x{w}.')


def check_dropout_rate(rate: float, field: str = 'config.model.dropout_rate') -> None:
  """Rejects rates outside [0, 1): 1.0 would zero everything and divide by zero."""
  if not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
    raise ConfigError(f'{field} must be a number in [0, 1); got {rate!r}.')


def check_sizes(sizes: Any, field: str) -> None:
  """Rejects layer-size lists that are not a sequence of positive integers."""
  if not isinstance(sizes, (tuple, list)) or any(
      isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in sizes):
    raise ConfigError(
        f'{field} must be a sequence of positive integers; got {sizes!r}.')


def _crop_even(x: jax.Array) -> jax.Array:
  """Drops a trailing odd row/column, as 2x2 stride-2 'VALID' pooling does."""
  h, w = x.shape[1], x.shape[2]
  return x[:, : h - h % 2, : w - w % 2, :]


def _quarters(x: jax.Array) -> tuple[jax.Array, ...]:
  """The four entries of each 2x2 window, in row-major order, as strided views."""
  return x[:, 0::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2]


@jax.custom_vjp
def _max_pool_even(x: jax.Array) -> jax.Array:
  a, b, c, d = _quarters(x)
  return jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))


def _max_pool_forward(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The max, and which window entry (0-3, row-major) gave it: the first of any ties, as
  select-and-scatter picks it.

  The winner comes from an argmax, a reduce: XLA fuses elementwise producers into each
  of their consumers and recomputes them there, but computes a reduce once, so the
  backward pass reads the winners instead of recomputing every window's comparison
  (and the activations behind it) for each of the window's four entries.
  """
  winner = jnp.argmax(jnp.stack(_quarters(x), axis=-1), axis=-1).astype(jnp.int8)
  # The max itself through jnp.maximum, which keeps a NaN (so a non-finite loss shows).
  return _max_pool_even(x), winner


def _max_pool_backward(winner: jax.Array, cotangent: jax.Array) -> tuple[jax.Array]:
  b, h, w, c = cotangent.shape
  entry = (2 * jnp.arange(2, dtype=jnp.int8)[:, None] + jnp.arange(2, dtype=jnp.int8)).reshape(
      2, 1, 2, 1)
  grad = jnp.where(winner[:, :, None, :, None, :] == entry, cotangent[:, :, None, :, None, :],
                   jnp.zeros((), cotangent.dtype))
  return (grad.reshape(b, 2 * h, 2 * w, c),)


_max_pool_even.defvjp(_max_pool_forward, _max_pool_backward)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 stride-2 'VALID' max pooling over (B, H, W, C), fast on XLA:CPU.

  Same values and gradients as `nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID')`,
  ties included (the first entry of a window in row-major order takes the gradient), but
  `nn.max_pool`'s gradient lowers to select-and-scatter, which XLA:CPU runs very slowly. Here
  the forward pass is three elementwise maxima of strided views and also records each
  window's winner (one int8 per output); the backward pass routes the gradient to it in one
  elementwise loop. Keras CNN on 2 cores, batch 64, relu + pool forward and backward: 0.3 ms
  after conv1 against 1.6 ms as reshape + max (whose autodiff gradient recounts the
  maxima) and 22 ms as `nn.max_pool`.
  """
  return _max_pool_even(_crop_even(x))


def avg_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 stride-2 'VALID' average pooling via reshape + mean (see max_pool_2x2)."""
  x = _crop_even(x)
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
