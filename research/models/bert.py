"""BERT-style masked-language-model pretraining head on the transformer encoder trunk.

`BertMaskedLM` is `TransformerEncoder` (research/models/transformer.py) plus BERT's MLM head:
dense -> activation -> LayerNorm, then logits from the token embedding matrix (weight tying)
plus a per-token bias. Its trunk parameters have exactly the names and shapes of
`transformer_classifier`'s, so `config.init_from` pointed at a pretraining run loads the whole
trunk into a classifier and leaves only the classifier's 'head' fresh; the 'mlm_head' is
simply not used there. With `pooling='cls'` the learned [CLS] vector is prepended here too
(BERT feeds [CLS] during pretraining), so the classifier reads a pretrained [CLS] state.
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.models.layers import activation_fn
from research.models.registry import MODELS
from research.models.transformer import TransformerEncoder, _dense, _layer_norm


class MaskedLMHead(nn.Module):
  """Hidden states -> logits over the vocabulary, scored against the (tied) embedding."""

  activation: str = "gelu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, embedding: jax.Array) -> jax.Array:
    h = _dense(x.shape[-1], self.dtype, "dense")(x)
    h = _layer_norm(self.dtype, "ln")(activation_fn(self.activation)(h))
    bias = self.param("bias", nn.initializers.zeros, (embedding.shape[0],), jnp.float32)
    logits = h @ embedding.astype(self.dtype).T
    return logits + bias.astype(self.dtype)


@MODELS.register("bert_mlm")
class BertMaskedLM(TransformerEncoder):
  """Token ids (batch, length) -> logits (batch, length, vocab_size) at every input position
  (or at the given `positions`).

  The fields are `transformer_classifier`'s (give both the same model config), except that
  `num_outputs` is not used: the head scores the whole vocabulary.
  """

  registered_name: ClassVar[str] = "bert_mlm"

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False,
               positions: jax.Array | None = None) -> jax.Array:
    """`positions` (batch, P): score only these input positions -> logits (batch, P, vocab).
    The vocabulary projection dominates a small encoder's cost; BERT scores only the masked
    positions (its max_predictions_per_seq) for the same reason."""
    x, _, embed = self._encode(inputs, train)
    if self.pooling == "cls":  # the [CLS] position predicts no token
      x = x[:, 1:]
    if positions is not None:
      x = jnp.take_along_axis(x, positions[..., None], axis=1)
    return MaskedLMHead(self.activation, self.dtype, name="mlm_head")(x, embed.embedding)
