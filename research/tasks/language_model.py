"""Next-token language modelling: per-token cross-entropy, perplexity, bits per character.

Inputs are token ids (batch, length) and labels the next token at every position (batch,
length); the model returns logits (batch, length, vocab). Training sums are per token
(`count` = tokens in the batch), so the logged train loss is the mean NLL per token, in
nats, as nanoGPT reports it. Evaluation keeps one number per example (its mean NLL and its
next-token accuracy); every example of a split has the same length, so the mean over
examples is the mean over tokens.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import metrics as M
from research.tasks.base import Batch, Metrics, Task


class LanguageModel(Task):
  default_metric = "loss"
  default_mode = "min"

  def metric_names(self) -> tuple[str, ...]:
    return ("loss", "perplexity", "bits_per_char", "accuracy")

  @staticmethod
  def _token_losses(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)

  def loss_and_sums(self, params, model_state, batch: Batch,
                    rng) -> tuple[jax.Array, tuple[Metrics, Any]]:
    logits, model_state = self.apply(params, model_state, batch["inputs"], rng, train=True)
    losses = self._token_losses(logits, batch["labels"])
    correct = jnp.argmax(logits, -1) == batch["labels"]
    sums = {"loss": losses.sum(), "accuracy": correct.sum().astype(jnp.float32),
            "count": jnp.float32(losses.size)}
    return losses.mean(), (sums, model_state)

  def outputs(self, params, model_state, batch: Batch) -> dict[str, jax.Array]:
    logits, _ = self.apply(params, model_state, batch["inputs"], None, train=False)
    losses = self._token_losses(logits, batch["labels"])
    correct = jnp.argmax(logits, -1) == batch["labels"]
    return {"loss": losses.mean(-1), "accuracy": correct.mean(-1, dtype=jnp.float32)}

  def metrics(self, outputs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    # float64: a mean over a million tokens in float32 loses digits the REFERENCE compares.
    nll = float(np.mean(outputs["loss"], dtype=np.float64))
    return {"loss": nll, "perplexity": M.perplexity(nll), "bits_per_char": M.bits_per_token(nll),
            "accuracy": float(np.mean(outputs["accuracy"], dtype=np.float64))}
