"""Encoder-decoder Transformer for translation (Vaswani et al. 2017, pre-LN), with a KV cache.

Encoder: token + learned position embeddings and `num_encoder_layers` pre-LN blocks
(`transformer.TransformerBlock`) attending only to real source tokens. Decoder:
`num_decoder_layers` blocks of causal self-attention (`gpt.CausalSelfAttention`, whose KV
cache makes decoding incremental), cross-attention to the encoder output (padding masked)
and an MLP, each a pre-LN residual branch with dropout. All attention goes through
`jax.nn.dot_product_attention`. Options: one embedding matrix for both languages
(`share_embeddings`, needs a shared vocabulary) and output logits from the target
embedding (`tie_output`).

Decoding (`research.decode`): `start_decoding(source)` encodes the source and runs the
decoder on the start token, creating the 'cache' collection (self-attention keys/values,
the encoder's cross-attention keys/values and padding mask); each `decode_step(tokens)`
then feeds one token per sequence against that cache.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.errors import ConfigError
from research.models.gpt import CausalSelfAttention
from research.models.layers import activation_fn, check_dropout_rate
from research.models.registry import MODELS
from research.models.transformer import PAD_ID, TransformerBlock

_INIT = nn.initializers.normal(0.02)
# The decoder's first input: <pad>, as in T5, so targets need no BOS token.
DECODER_START_ID = PAD_ID


def _dense(features: int, dtype: Any, name: str, std: float = 0.02) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32,
                  kernel_init=nn.initializers.normal(std), name=name)


def _norm(dtype: Any, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32, name=name)


class CrossAttention(nn.Module):
  """Decoder queries attend to the encoder output; its keys/values are cached when decoding.

  `memory` (batch, source, width) and `memory_mask` (batch, source) bool are needed except
  on `decode` steps after the first, which read both from the cache.
  """

  num_heads: int
  residual_std: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, memory: jax.Array | None, memory_mask: jax.Array | None,
               decode: bool = False) -> jax.Array:
    batch, length, width = x.shape
    heads, head_dim = self.num_heads, width // self.num_heads
    q = _dense(width, self.dtype, "query")(x).reshape(batch, length, heads, head_dim)
    key_value = _dense(2 * width, self.dtype, "key_value")
    if decode and self.has_variable("cache", "key"):
      k = self.get_variable("cache", "key")
      v = self.get_variable("cache", "value")
      memory_mask = self.get_variable("cache", "mask")
    else:
      kv = key_value(memory).reshape(batch, memory.shape[1], 2, heads, head_dim)
      k, v = kv[:, :, 0], kv[:, :, 1]
      if decode:
        self.put_variable("cache", "key", k)
        self.put_variable("cache", "value", v)
        self.put_variable("cache", "mask", memory_mask)
    y = jax.nn.dot_product_attention(q, k, v, mask=memory_mask[:, None, None, :])
    return _dense(width, self.dtype, "out", self.residual_std)(y.reshape(batch, length, width))


class DecodePosition(nn.Module):
  """The positions of the tokens fed now: 0.. when training, after those cached when decoding."""

  @nn.compact
  def __call__(self, length: int, decode: bool) -> jax.Array:
    positions = jnp.arange(length)
    if not decode:
      return positions
    offset = self.variable("cache", "position", lambda: jnp.zeros((), jnp.int32))
    start = offset.value
    offset.value = start + length
    return positions + start


class DecoderBlock(nn.Module):
  """Pre-LN: x + self_attn(LN(x)), then x + cross_attn(LN(x), memory), then x + MLP(LN(x))."""

  num_heads: int
  mlp_dim: int
  max_length: int
  dropout_rate: float
  activation: str
  residual_std: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, memory: jax.Array | None, memory_mask: jax.Array | None,
               train: bool, decode: bool) -> jax.Array:
    batch, length, width = x.shape
    drop = nn.Dropout(self.dropout_rate, deterministic=not train)
    h = CausalSelfAttention(self.num_heads, self.max_length, True, self.residual_std,
                            self.dtype, name="self_attn")(
        _norm(self.dtype, "ln1")(x).reshape(batch * length, width), batch, decode)
    x = x + drop(h.reshape(batch, length, width))
    h = CrossAttention(self.num_heads, self.residual_std, self.dtype, name="cross_attn")(
        _norm(self.dtype, "ln2")(x), memory, memory_mask, decode)
    x = x + drop(h)
    h = _dense(self.mlp_dim, self.dtype, "mlp_in")(_norm(self.dtype, "ln3")(x))
    h = _dense(width, self.dtype, "mlp_out", self.residual_std)(activation_fn(self.activation)(h))
    return x + drop(h)


@MODELS.register("seq2seq_transformer")
class Seq2SeqTransformer(nn.Module):
  """(source ids (batch, S), decoder input ids (batch, T)) -> logits (batch, T, target vocab).

  Attributes:
    source_vocab_size, target_vocab_size: filled in from the dataset's tokenisers.
    d_model, num_heads, mlp_dim: width, attention heads (d_model must divide by them) and
      the MLP's hidden width.
    num_encoder_layers, num_decoder_layers: depth of each side.
    dropout_rate: on the embeddings and each residual branch (train only).
    max_length: positions of each side (source and target, decoder start token included).
    share_embeddings: one token embedding for source and target (a shared vocabulary).
    tie_output: logits from the target token embedding instead of a separate matrix.
    activation: the MLP's activation (see research.models.layers.ACTIVATIONS).
  """

  num_outputs: int
  source_vocab_size: int
  target_vocab_size: int
  d_model: int = 512
  num_heads: int = 8
  num_encoder_layers: int = 3
  num_decoder_layers: int = 3
  mlp_dim: int = 2048
  dropout_rate: float = 0.1
  max_length: int = 128
  share_embeddings: bool = False
  tie_output: bool = True
  activation: str = "relu"
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    for field in ("source_vocab_size", "target_vocab_size", "d_model", "num_heads",
                  "num_encoder_layers", "num_decoder_layers", "mlp_dim", "max_length"):
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"config.model.{field} must be a positive integer; got {value!r}.")
    if self.d_model % self.num_heads:
      raise ConfigError(f"config.model.d_model={self.d_model} is not divisible by "
                        f"config.model.num_heads={self.num_heads}: pick a multiple of the heads.")
    if self.share_embeddings and self.source_vocab_size != self.target_vocab_size:
      raise ConfigError(
          f"config.model.share_embeddings=True needs one vocabulary for both languages, but "
          f"the source has {self.source_vocab_size} tokens and the target "
          f"{self.target_vocab_size}: set dataset.shared_vocabulary=True or "
          "model.share_embeddings=False.")
    if self.num_outputs != self.target_vocab_size:
      raise ConfigError(f"model 'seq2seq_transformer' predicts the {self.target_vocab_size} "
                        f"target tokens, but the task wants {self.num_outputs} outputs: use "
                        "config.task.name='seq2seq'.")
    activation_fn(self.activation)
    check_dropout_rate(self.dropout_rate)
    super().__post_init__()

  def setup(self) -> None:
    embed = lambda size, name: nn.Embed(size, self.d_model, dtype=self.dtype,
                                        param_dtype=jnp.float32, embedding_init=_INIT, name=name)
    self.target_embed = embed(self.target_vocab_size, "target_embed")
    self.source_embed = (self.target_embed if self.share_embeddings
                         else embed(self.source_vocab_size, "source_embed"))
    shape = (self.max_length, self.d_model)
    self.source_positions = self.param("source_positions", _INIT, shape, jnp.float32)
    self.target_positions = self.param("target_positions", _INIT, shape, jnp.float32)
    self.decode_position = DecodePosition()
    self.dropout = nn.Dropout(self.dropout_rate)
    self.encoder = [TransformerBlock(self.num_heads, self.mlp_dim, self.dropout_rate,
                                     self.activation, dtype=self.dtype, name=f"encoder{i}")
                    for i in range(self.num_encoder_layers)]
    residual_std = 0.02 / math.sqrt(2 * self.num_decoder_layers)
    self.decoder = [DecoderBlock(self.num_heads, self.mlp_dim, self.max_length,
                                 self.dropout_rate, self.activation, residual_std, self.dtype,
                                 name=f"decoder{i}")
                    for i in range(self.num_decoder_layers)]
    self.encoder_norm = _norm(self.dtype, "encoder_norm")
    self.decoder_norm = _norm(self.dtype, "decoder_norm")
    if not self.tie_output:
      self.head = _dense(self.target_vocab_size, self.dtype, "head")

  def _check(self, ids: jax.Array, side: str) -> None:
    if ids.ndim != 2 or not jnp.issubdtype(ids.dtype, jnp.integer):
      raise ConfigError(f"model 'seq2seq_transformer' needs {side} token ids of shape (batch, "
                        f"length); got {ids.dtype} {tuple(ids.shape)}. Use a translation "
                        "dataset (e.g. multi30k).")
    if ids.shape[1] > self.max_length:
      raise ConfigError(f"model 'seq2seq_transformer' got {side} sequences of {ids.shape[1]} "
                        f"tokens, more than config.model.max_length={self.max_length}: raise "
                        "it or lower dataset.max_length.")

  def encode(self, source: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """The encoder output (batch, S, d_model) and the source padding mask (batch, S)."""
    self._check(source, "source")
    mask = source != PAD_ID
    x = self.source_embed(source) + self.source_positions[:source.shape[1]].astype(self.dtype)
    x = self.dropout(x, deterministic=not train)
    for block in self.encoder:
      x = block(x, mask, train)
    return self.encoder_norm(x), mask

  def decode(self, target_in: jax.Array, memory: jax.Array | None,
             memory_mask: jax.Array | None, train: bool = False,
             decode: bool = False) -> jax.Array:
    """Logits (batch, T, vocab) of the next target token at each decoder input position."""
    self._check(target_in, "target")
    positions = self.decode_position(target_in.shape[1], decode)
    x = self.target_embed(target_in) + jnp.take(self.target_positions, positions,
                                                axis=0).astype(self.dtype)
    x = self.dropout(x, deterministic=not train)
    for block in self.decoder:
      x = block(x, memory, memory_mask, train, decode)
    x = self.decoder_norm(x)
    return self.target_embed.attend(x) if self.tie_output else self.head(x)

  def __call__(self, source: jax.Array, target_in: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    """Teacher forcing: `target_in` is the target shifted right behind the start token.
    Without it (initialisation from source ids alone), one start token per sequence."""
    if target_in is None:
      target_in = jnp.full((source.shape[0], 1), DECODER_START_ID, jnp.int32)
    memory, mask = self.encode(source, train)
    return self.decode(target_in, memory, mask, train)

  def start_decoding(self, source: jax.Array) -> jax.Array:
    """Encodes `source`, feeds the start token, fills the 'cache' collection (apply with
    mutable=['cache']); returns the logits of the first target token (batch, vocab)."""
    memory, mask = self.encode(source)
    start = jnp.full((source.shape[0], 1), DECODER_START_ID, jnp.int32)
    return self.decode(start, memory, mask, decode=True)[:, -1]

  def decode_step(self, tokens: jax.Array) -> jax.Array:
    """Feeds `tokens` (batch, 1) against the cache; the next token's logits (batch, vocab)."""
    return self.decode(tokens, None, None, decode=True)[:, -1]
