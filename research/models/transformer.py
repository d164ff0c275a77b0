"""Transformer encoder trunk and classifier, and the attention and pre-LN block they are built from.

`SelfAttention` and `TransformerBlock` take a key padding mask and a `causal` flag, so an
encoder (bidirectional, padded batches) and a decoder (causal) can share them. Attention
goes through `jax.nn.dot_product_attention`, which runs cuDNN's fused (flash) kernels on GPU
and XLA elsewhere; it has no dropout on the attention weights, so dropout applies to the
embeddings and to each residual branch. Initialisation follows GPT-2 / BERT: N(0, 0.02).
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.errors import ConfigError
from research.models.layers import activation_fn, check_dropout_rate
from research.models.registry import MODELS

PAD_ID = 0
POOLINGS = ("mean", "cls")
_INIT = nn.initializers.normal(0.02)


def _dense(features: int, dtype: Any, name: str) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, kernel_init=_INIT, name=name)


def _layer_norm(dtype: Any, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32, name=name)


class SelfAttention(nn.Module):
  """Multi-head self-attention over (batch, length, width).

  `mask`: optional (batch, length) bool, True for real tokens: no query attends to a padding
  key. `causal`: each position sees only itself and earlier positions.
  """

  num_heads: int
  causal: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    batch, length, width = x.shape
    head_dim = width // self.num_heads
    qkv = _dense(3 * width, self.dtype, "qkv")(x).reshape(
        batch, length, 3, self.num_heads, head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (batch, length, heads, head_dim)
    key_mask = None if mask is None else mask[:, None, None, :]  # (batch, 1, 1, keys)
    y = jax.nn.dot_product_attention(q, k, v, mask=key_mask, is_causal=self.causal)
    return _dense(width, self.dtype, "out")(y.reshape(batch, length, width))


class TransformerBlock(nn.Module):
  """Pre-LN block: x + drop(attn(LN(x))), then x + drop(MLP(LN(x)))."""

  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  activation: str = "gelu"
  causal: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    drop = nn.Dropout(self.dropout_rate, deterministic=not train)
    h = SelfAttention(self.num_heads, self.causal, self.dtype, name="attn")(
        _layer_norm(self.dtype, "ln1")(x), mask)
    x = x + drop(h)
    h = _dense(self.mlp_dim, self.dtype, "mlp_in")(_layer_norm(self.dtype, "ln2")(x))
    h = _dense(x.shape[-1], self.dtype, "mlp_out")(activation_fn(self.activation)(h))
    return x + drop(h)


class TransformerEncoder(nn.Module):
  """The encoder trunk: token ids (batch, length) -> hidden states, shared by every head.

  Token + learned position embeddings, `num_layers` pre-LN blocks attending only to real
  tokens, and a final LayerNorm. Not registered: a model adds a head in its own compact
  `__call__` after `self._encode(...)`. Every subclass keeps the trunk's parameter names
  (token_embed, cls, position_embed, block<i>, ln_final) at the top level, so a checkpoint
  of one head's model initialises another's trunk through `config.init_from` (a masked-LM
  pretraining run -> a classifier), and only the head is new.

  Attributes:
    num_outputs: the head's output width (from the task).
    vocab_size: filled in from the dataset's vocabulary.
    d_model, num_heads, num_layers, mlp_dim: width, attention heads (d_model must divide by
      them), depth, and the MLP's hidden width.
    dropout_rate: on the embeddings and each residual branch (train only).
    pooling: 'mean' (average over real tokens) or 'cls' (a learned token prepended to each
      sequence, BERT-style, whose final state is read).
    max_position: position embeddings available; sequences (+1 with 'cls') may not be longer.
    activation: the MLP's activation (see research.models.layers.ACTIVATIONS).
  """

  num_outputs: int
  vocab_size: int
  d_model: int = 512
  num_heads: int = 8
  num_layers: int = 3
  mlp_dim: int = 2048
  dropout_rate: float = 0.1
  pooling: str = "mean"
  max_position: int = 512
  activation: str = "gelu"
  dtype: Any = jnp.float32

  registered_name: ClassVar[str] = "transformer_encoder"  # for error messages

  def __post_init__(self) -> None:
    for field in ("vocab_size", "d_model", "num_heads", "num_layers", "mlp_dim", "max_position"):
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"config.model.{field} must be a positive integer; got {value!r}.")
    if self.d_model % self.num_heads:
      raise ConfigError(f"config.model.d_model={self.d_model} is not divisible by "
                        f"config.model.num_heads={self.num_heads}: pick a multiple of the heads.")
    if self.pooling not in POOLINGS:
      raise ConfigError(f"config.model.pooling = {self.pooling!r}; use 'mean' or 'cls'.")
    activation_fn(self.activation)
    check_dropout_rate(self.dropout_rate)
    super().__post_init__()

  def _encode(self, inputs: jax.Array, train: bool) -> tuple[jax.Array, jax.Array, nn.Embed]:
    """(hidden states (batch, length [+1 with 'cls'], d_model), their real-token mask, the
    token embedding module). Call only from a subclass's compact `__call__`: the trunk's
    layers are created in that module, under the names above."""
    if inputs.ndim != 2 or not jnp.issubdtype(inputs.dtype, jnp.integer):
      raise ConfigError(f"model {self.registered_name!r} needs token ids of shape (batch, "
                        f"length); got {inputs.dtype} {tuple(inputs.shape)}. Use a text dataset.")
    mask = inputs != PAD_ID
    embed = nn.Embed(self.vocab_size, self.d_model, dtype=self.dtype, param_dtype=jnp.float32,
                     embedding_init=_INIT, name="token_embed")
    x = embed(inputs)
    if self.pooling == "cls":
      cls = self.param("cls", _INIT, (1, 1, self.d_model), jnp.float32)
      x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (len(x), 1, self.d_model)),
                           x], axis=1)
      mask = jnp.concatenate([jnp.ones((len(x), 1), bool), mask], axis=1)
    length = x.shape[1]
    if length > self.max_position:
      raise ConfigError(f"model {self.registered_name!r} got {length} positions, more than "
                        f"config.model.max_position={self.max_position}: raise it or lower "
                        "dataset.max_length.")
    positions = self.param("position_embed", _INIT, (self.max_position, self.d_model),
                           jnp.float32)
    x = x + positions[:length].astype(self.dtype)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    for i in range(self.num_layers):
      x = TransformerBlock(self.num_heads, self.mlp_dim, self.dropout_rate, self.activation,
                           dtype=self.dtype, name=f"block{i}")(x, mask, train)
    return _layer_norm(self.dtype, "ln_final")(x), mask, embed


@MODELS.register("transformer_classifier")
class TransformerClassifier(TransformerEncoder):
  """Token ids (batch, length) -> logits (batch, num_outputs).

  The `TransformerEncoder` trunk (see its attributes), then pooling (mean over real tokens,
  or the [CLS] state) and a linear head named 'head'.
  """

  registered_name: ClassVar[str] = "transformer_classifier"

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
    x, mask, _ = self._encode(inputs, train)
    if self.pooling == "cls":
      pooled = x[:, 0]
    else:
      weights = mask[..., None].astype(x.dtype)
      pooled = (x * weights).sum(1) / jnp.maximum(weights.sum(1), 1)
    return _dense(self.num_outputs, self.dtype, "head")(pooled)
