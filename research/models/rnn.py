"""Recurrent text classifier: embedding -> LSTM / GRU layers (optionally bidirectional) -> head.

The classic sentiment-analysis recipe (an embedding, an LSTM, a linear layer on its final
hidden state). Inputs are right-padded token ids with <pad> = 0. Each layer is a flax
`nn.RNN` (a `lax.scan` over time) given the true sequence lengths, so the final state is
read at each sequence's last real token and a backward layer starts at it: padding never
changes the output. A text with no tokens at all gets the zero initial state.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.errors import ConfigError
from research.models.layers import check_dropout_rate
from research.models.registry import MODELS

PAD_ID = 0
CELLS = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}


def _positive(model: str, **fields: Any) -> None:
  for field, value in fields.items():
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ConfigError(f"config.model.{field} must be a positive integer for model "
                        f"{model!r}; got {value!r}.")


def final_hidden(carry: Any, cell: str) -> jax.Array:
  """The hidden state h of a cell's carry: LSTM carries (c, h), GRU carries h."""
  return carry[1] if cell == "lstm" else carry


@MODELS.register("rnn_classifier")
class RNNClassifier(nn.Module):
  """Token ids (batch, length) -> logits (batch, num_outputs).

  Attributes:
    vocab_size: filled in from the dataset's vocabulary.
    embed_dim: token embedding width.
    hidden_size: LSTM / GRU state width (per direction).
    num_layers: stacked recurrent layers; each feeds its per-token outputs to the next.
    cell: 'lstm' or 'gru'.
    bidirectional: a forward and a backward layer at each level, outputs concatenated; the
      head reads both final states.
    dropout_rate: on the embeddings, between layers and before the head (train only).
    unroll: time steps per scan iteration (>1 trades compile time for speed on small cells).
  """

  num_outputs: int
  vocab_size: int
  embed_dim: int = 100
  hidden_size: int = 128
  num_layers: int = 1
  cell: str = "lstm"
  bidirectional: bool = False
  dropout_rate: float = 0.0
  unroll: int = 1
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    _positive("rnn_classifier", vocab_size=self.vocab_size, embed_dim=self.embed_dim,
              hidden_size=self.hidden_size, num_layers=self.num_layers, unroll=self.unroll)
    if self.cell not in CELLS:
      raise ConfigError(f"config.model.cell = {self.cell!r} is not a recurrent cell; use one of "
                        f"{', '.join(repr(c) for c in CELLS)}.")
    check_dropout_rate(self.dropout_rate)
    super().__post_init__()

  def _layer(self, index: int) -> nn.Module:
    def rnn(reverse: bool, name: str) -> nn.RNN:
      cell = CELLS[self.cell](self.hidden_size, dtype=self.dtype, param_dtype=jnp.float32)
      return nn.RNN(cell, reverse=reverse, keep_order=True, return_carry=True,
                    unroll=self.unroll, name=name)

    if not self.bidirectional:
      return rnn(False, f"rnn{index}")
    return nn.Bidirectional(rnn(False, f"forward{index}"), rnn(True, f"backward{index}"),
                            return_carry=True, name=f"birnn{index}")

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
    if inputs.ndim != 2 or not jnp.issubdtype(inputs.dtype, jnp.integer):
      raise ConfigError(f"model 'rnn_classifier' needs token ids of shape (batch, length); got "
                        f"{inputs.dtype} {tuple(inputs.shape)}. Use a text dataset (sst2, imdb).")
    lengths = jnp.sum(inputs != PAD_ID, axis=-1).astype(jnp.int32)
    drop = nn.Dropout(self.dropout_rate, deterministic=not train)
    x = nn.Embed(self.vocab_size, self.embed_dim, dtype=self.dtype, param_dtype=jnp.float32,
                 name="embed")(inputs)
    x = drop(x)
    for i in range(self.num_layers):
      carry, x = self._layer(i)(x, seq_lengths=lengths)
      if i + 1 < self.num_layers:
        x = drop(x)
    if self.bidirectional:
      h = jnp.concatenate([final_hidden(c, self.cell) for c in carry], axis=-1)
    else:
      h = final_hidden(carry, self.cell)
    # nn.RNN reads the carry after step `length - 1`, i.e. the last step for an empty text.
    h = jnp.where((lengths > 0)[:, None], h, 0).astype(self.dtype)
    return nn.Dense(self.num_outputs, dtype=self.dtype, param_dtype=jnp.float32,
                    name="head")(drop(h))
