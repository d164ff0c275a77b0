"""GPT: a decoder-only transformer language model (GPT-2 / nanoGPT layout), with a KV cache.

Token + learned position embeddings, `num_layers` pre-LayerNorm blocks of causal
self-attention and a GELU MLP (GPT-2's tanh approximation), a final LayerNorm, and logits
from the token embedding matrix (weight tying). Initialisation follows GPT-2: N(0, 0.02)
everywhere, residual projections N(0, 0.02 / sqrt(2 * num_layers)). Attention goes through
`jax.nn.dot_product_attention`, which picks cuDNN's fused kernels on GPU; it has no dropout
on the attention weights, so dropout applies to the embeddings and to each residual branch
(nanoGPT's `resid_dropout`), not to the attention matrix.

Generation: `apply(..., decode=True, mutable=['cache'])` appends the given tokens' keys and
values to a per-layer cache of `block_size` positions (the 'cache' collection, made by
`init_cache`) and returns logits for those tokens only; a prompt is fed once, then one token
per step. `research.generate` runs that loop compiled.

Scaling out: every weight names its axes with Flax logical axis names ('vocab', 'embed',
'heads', 'mlp'); `config.mesh.rules` maps them to mesh axes (FSDP over 'fsdp',
tensor parallelism over 'model', see research/training/mesh.py), so this file holds no
device logic. `remat=True` recomputes each block's activations in the backward pass
(`nn.remat`): less activation memory for about one more forward pass, same numbers.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.errors import ConfigError
from research.models.layers import check_dropout_rate
from research.models.registry import MODELS

_INIT_STD = 0.02


def _dense(features: int, use_bias: bool, dtype: Any, std: float, name: str,
           axes: tuple[str, str]) -> nn.Dense:
  """A Dense layer whose kernel has logical axes `axes` (input, output); its bias the output's."""
  return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
                  kernel_init=nn.with_logical_partitioning(nn.initializers.normal(std), axes),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[1:]),
                  name=name)


class CausalSelfAttention(nn.Module):
  """Multi-head causal self-attention; with `decode`, over the cache plus the new tokens."""

  num_heads: int
  block_size: int
  use_bias: bool
  residual_std: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, batch: int, decode: bool = False) -> jax.Array:
    """x: (batch * length, width), rows in (batch, length) order."""
    width = x.shape[-1]
    length, head_dim = x.shape[0] // batch, width // self.num_heads
    # One fused projection with an explicit heads axis: tensor parallelism splits it by whole
    # heads (each device computes its heads' q, k, v and attention with no communication,
    # Megatron-style); the same values as a (width, 3 * width) kernel in (3, heads, head_dim)
    # column order.
    qkv = nn.DenseGeneral(
        (3, self.num_heads, head_dim), use_bias=self.use_bias, dtype=self.dtype,
        param_dtype=jnp.float32, name="qkv",
        kernel_init=nn.with_logical_partitioning(nn.initializers.normal(_INIT_STD),
                                                 ("embed", None, "heads", None)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None, "heads", None)))(x)
    qkv = qkv.reshape(batch, length, 3, self.num_heads, head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (batch, length, heads, head_dim)
    if decode and self.has_variable("cache", "key"):
      k, v, mask = self._extend_cache(k, v)
      y = jax.nn.dot_product_attention(q, k, v, mask=mask)
    else:
      if decode:  # `init_cache`: create the cache; the output is not used.
        self._extend_cache(k, v)
      y = jax.nn.dot_product_attention(q, k, v, is_causal=True)
    return _dense(width, self.use_bias, self.dtype, self.residual_std, "proj",
                  ("heads", "embed"))(y.reshape(batch * length, width))

  def _extend_cache(self, k: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Writes k, v at the cache index; returns all cached keys/values and the causal mask."""
    batch, length, heads, head_dim = k.shape
    shape = (batch, self.block_size, heads, head_dim)
    cached_k = self.variable("cache", "key", jnp.zeros, shape, k.dtype)
    cached_v = self.variable("cache", "value", jnp.zeros, shape, v.dtype)
    index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
    start = index.value
    cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k, (0, start, 0, 0))
    cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v, (0, start, 0, 0))
    index.value = start + length
    # Query i (at position start + i) sees cached positions 0 .. start + i.
    visible = (jnp.arange(self.block_size)[None, :]
               <= start + jnp.arange(length)[:, None])
    return cached_k.value, cached_v.value, visible[None, None]


class Block(nn.Module):
  """x + attn(LN(x)), then x + MLP(LN(x)), each branch with dropout."""

  num_heads: int
  block_size: int
  mlp_ratio: int
  dropout_rate: float
  use_bias: bool
  residual_std: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, batch: int, train: bool, decode: bool) -> jax.Array:
    width = x.shape[-1]
    norm = lambda name: nn.LayerNorm(epsilon=1e-5, use_bias=self.use_bias, dtype=self.dtype,
                                     param_dtype=jnp.float32, name=name)
    drop = nn.Dropout(self.dropout_rate, deterministic=not train)
    h = CausalSelfAttention(self.num_heads, self.block_size, self.use_bias, self.residual_std,
                            self.dtype, name="attn")(norm("ln1")(x), batch, decode)
    x = x + drop(h)
    h = _dense(self.mlp_ratio * width, self.use_bias, self.dtype, _INIT_STD, "fc",
               ("embed", "mlp"))(norm("ln2")(x))
    h = _dense(width, self.use_bias, self.dtype, self.residual_std, "fc_proj",
               ("mlp", "embed"))(nn.gelu(h, approximate=True))
    return x + drop(h)


@MODELS.register("gpt")
class GPT(nn.Module):
  """Decoder-only transformer LM: token ids (batch, length) -> logits (batch, length, vocab).

  Attributes:
    vocab_size, block_size: filled in from the dataset (its vocabulary and context length).
    num_layers, num_heads, width: depth, attention heads, model width (nanoGPT's n_layer,
      n_head, n_embd); width must be divisible by num_heads.
    mlp_ratio: MLP hidden width / width.
    dropout_rate: dropout on the embeddings and each residual branch, only when train=True.
    use_bias: biases in Dense and LayerNorm layers (GPT-2: yes; nanoGPT's default: no).
    tie_embeddings: logits from the token embedding matrix (GPT-2), else a separate head.
    remat: recompute each block's activations during the backward pass (nn.remat).
  """

  num_outputs: int
  vocab_size: int
  block_size: int
  num_layers: int = 6
  num_heads: int = 6
  width: int = 384
  mlp_ratio: int = 4
  dropout_rate: float = 0.0
  use_bias: bool = False
  tie_embeddings: bool = True
  remat: bool = False
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    for field in ("vocab_size", "block_size", "num_layers", "num_heads", "width", "mlp_ratio"):
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"config.model.{field} must be a positive integer; got {value!r}.")
    if self.width % self.num_heads:
      raise ConfigError(f"config.model.width={self.width} is not divisible by "
                        f"config.model.num_heads={self.num_heads}: pick a width that is a "
                        "multiple of the number of heads.")
    if self.tie_embeddings and self.num_outputs != self.vocab_size:
      raise ConfigError(f"model 'gpt' ties its output to the token embeddings, so it predicts "
                        f"the {self.vocab_size} tokens of the vocabulary, but the task wants "
                        f"{self.num_outputs} outputs: use config.task.name='language_model' or "
                        "set config.model.tie_embeddings=False.")
    if not isinstance(self.remat, bool):
      raise ConfigError(f"config.model.remat must be True or False; got {self.remat!r}.")
    check_dropout_rate(self.dropout_rate)
    super().__post_init__()

  @nn.compact
  def __call__(self, tokens: jax.Array, train: bool = False, decode: bool = False) -> jax.Array:
    batch, length = tokens.shape
    if length > self.block_size:
      raise ConfigError(f"model 'gpt' got sequences of {length} tokens, more than its "
                        f"block_size of {self.block_size} (dataset.block_size).")
    embed = nn.Embed(self.vocab_size, self.width, dtype=self.dtype, param_dtype=jnp.float32,
                     embedding_init=nn.with_logical_partitioning(
                         nn.initializers.normal(_INIT_STD), ("vocab", "embed")),
                     name="token_embed")
    positions = jnp.arange(length)
    if decode:
      offset = self.variable("cache", "position", lambda: jnp.zeros((), jnp.int32))
      positions = positions + offset.value
      if self.is_mutable_collection("cache"):
        offset.value = offset.value + length
    position_embed = self.param(
        "position_embed",
        nn.with_logical_partitioning(nn.initializers.normal(_INIT_STD), (None, "embed")),
        (self.block_size, self.width), jnp.float32)
    x = embed(tokens) + jnp.take(position_embed, positions, axis=0).astype(self.dtype)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    # Rows of (batch * length, width) from here on: XLA:CPU runs the weight gradients of 2-D
    # matmuls about twice as fast as those of (batch, length, width) ones (measured).
    x = x.reshape(batch * length, self.width)
    residual_std = _INIT_STD / math.sqrt(2 * self.num_layers)
    # Decoding computes no gradients: nothing to rematerialise.
    block = nn.remat(Block, static_argnums=(2, 3, 4)) if self.remat and not decode else Block
    for i in range(self.num_layers):
      x = block(self.num_heads, self.block_size, self.mlp_ratio, self.dropout_rate,
                self.use_bias, residual_std, self.dtype, name=f"block{i}")(x, batch, train,
                                                                        decode)
    x = nn.LayerNorm(epsilon=1e-5, use_bias=self.use_bias, dtype=self.dtype,
                     param_dtype=jnp.float32, name="ln_f")(x)
    if self.tie_embeddings:
      logits = embed.attend(x)
    else:
      logits = _dense(self.num_outputs, False, self.dtype, _INIT_STD, "head",
                      ("embed", "vocab"))(x)
    return logits.reshape(batch, length, -1)

  def init_cache(self, batch_size: int) -> dict[str, Any]:
    """An empty KV cache (zeros, index 0) for `batch_size` sequences; no parameters made."""
    tokens = jnp.zeros((batch_size, 1), jnp.int32)
    shapes = jax.eval_shape(lambda: self.init(jax.random.key(0), tokens, decode=True))
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["cache"])
