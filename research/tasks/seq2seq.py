"""Sequence-to-sequence (translation): teacher forcing, label smoothing, BLEU of decodes.

Inputs are source ids (batch, S) and labels target ids ending with EOS (batch, T), 0-padded
(research/data/parallel.py). Training feeds the decoder the labels shifted right behind the
start token and minimises the label-smoothed cross-entropy (`task.label_smoothing`) of real
target tokens: (1 - a) * NLL + a * mean over the vocabulary of -log p, which is the
cross-entropy against `optax.smooth_labels` targets without a (batch, T, vocab) one-hot.
Sums are per target token (`count` = real tokens).

Evaluation, on device: per-example NLL, smoothed loss, token counts and correct argmaxes
under teacher forcing, and a decode of the source (`task.beam_size` 1 = greedy, else beam
search with `task.length_penalty`, at most `task.max_decode_length` tokens, 0 = the model's
max_length) through the KV cache (research/decode.py). On the host: perplexity, token
accuracy, and `bleu`, sacrebleu's corpus BLEU of the detokenised decodes against the raw
reference sentences (`parallel.Corpus.reference_texts`; the task reads the same cached
corpus the loader built, so the loop stays task-agnostic).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from research.data import parallel
from research.decode import check_decoding, decode
from research.errors import ConfigError
from research.metrics import corpus_bleu
from research.models.seq2seq import DECODER_START_ID
from research.tasks.base import Batch, Metrics, Task


def shift_right(labels: jax.Array) -> jax.Array:
  """Decoder inputs: the start token, then the target without its last position."""
  start = jnp.full((labels.shape[0], 1), DECODER_START_ID, labels.dtype)
  return jnp.concatenate([start, labels[:, :-1]], axis=1)


class Seq2Seq(Task):
  default_metric = "bleu"
  default_mode = "max"
  supports_qat = False  # teacher forcing and decoding apply the model outside Task.apply

  def __init__(self, config, model, num_classes):
    super().__init__(config, model, num_classes)
    task = config.task
    self.label_smoothing = float(task.label_smoothing)
    self.beam_size = task.get("beam_size", 4)
    self.alpha = float(task.get("length_penalty", 0.6))
    model_max = getattr(model, "max_length", None)
    if model_max is None or not hasattr(model, "start_decoding"):
      raise ConfigError(f"task 'seq2seq' decodes with an encoder-decoder model; "
                        f"{type(model).__name__} is not one: use model 'seq2seq_transformer'.")
    self.max_decode_length = int(task.get("max_decode_length", 0)) or model_max
    check_decoding(self.beam_size, self.alpha, self.max_decode_length, model_max)
    self._corpus = None

  def metric_names(self) -> tuple[str, ...]:
    return ("loss", "nll", "perplexity", "accuracy", "bleu")

  def _token_stats(self, params, batch: Batch, rng, train: bool) -> dict[str, jax.Array]:
    """Per-example sums over real target tokens: smoothed loss, NLL, correct, count."""
    labels = batch["labels"]
    rngs = {"dropout": rng} if rng is not None else {}
    logits = self.model.apply({"params": params}, batch["inputs"], shift_right(labels),
                              train=train, rngs=rngs)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
    smoothed = (1 - self.label_smoothing) * nll - self.label_smoothing * log_probs.mean(-1)
    real = (labels != 0).astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == labels) * real
    return {"loss": (smoothed * real).sum(-1), "nll": (nll * real).sum(-1),
            "accuracy": correct.sum(-1), "count": real.sum(-1)}

  def loss_and_sums(self, params, model_state, batch: Batch,
                    rng) -> tuple[jax.Array, tuple[Metrics, Any]]:
    stats = {k: v.sum() for k, v in self._token_stats(params, batch, rng, True).items()}
    return stats["loss"] / jnp.maximum(stats["count"], 1.0), (stats, model_state)

  def outputs(self, params, model_state, batch: Batch) -> dict[str, jax.Array]:
    stats = self._token_stats(params, batch, None, False)
    stats["hypothesis"] = decode(self.model, params, batch["inputs"], parallel.EOS_ID,
                                 self.max_decode_length, self.beam_size, self.alpha)
    return stats

  def corpus(self) -> parallel.Corpus:
    if self._corpus is None:
      self._corpus = parallel.corpus(self.config.dataset)
    return self._corpus

  def references(self, labels: np.ndarray) -> list[str]:
    """The raw reference sentence of each label row; rows of no held-out sentence (labels
    made elsewhere) are detokenised instead."""
    corpus = self.corpus()
    table = corpus.reference_texts()
    return [table.get(parallel.label_key(row))
            or corpus.target_tokenizer.decode(parallel.until_eos(row)) for row in labels]

  def metrics(self, outputs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    tokens = max(float(np.sum(outputs["count"], dtype=np.float64)), 1.0)
    nll = float(np.sum(outputs["nll"], dtype=np.float64)) / tokens
    tokenizer = self.corpus().target_tokenizer
    hypotheses = [tokenizer.decode(parallel.until_eos(row)) for row in outputs["hypothesis"]]
    return {"loss": float(np.sum(outputs["loss"], dtype=np.float64)) / tokens, "nll": nll,
            "perplexity": math.exp(min(nll, 700.0)),
            "accuracy": float(np.sum(outputs["accuracy"], dtype=np.float64)) / tokens,
            "bleu": corpus_bleu(hypotheses, self.references(labels))}
