"""Binary (sigmoid + BCE) and multiclass (softmax + cross-entropy) classification."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import metrics as M
from research.tasks.base import Batch, Metrics, Task


class MulticlassClassification(Task):
  """Softmax cross-entropy with optional label smoothing.

  Metrics: loss, accuracy, top-k accuracy, macro precision/recall/F1 and the confusion
  matrix (written to result.json, not to TensorBoard).
  """
  default_metric = "accuracy"
  default_mode = "max"

  def metric_names(self) -> tuple[str, ...]:
    k = int(self.config.task.get("top_k", 5))
    topk = (f"top{k}_accuracy",) if k < self.num_classes else ()
    return ("loss", "accuracy", "macro_precision", "macro_recall", "macro_f1") + topk

  def _loss(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
    smoothing = float(self.config.task.get("label_smoothing", 0.0))
    onehot = jax.nn.one_hot(labels, logits.shape[-1])
    if smoothing:
      onehot = optax.smooth_labels(onehot, smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), onehot)

  def loss_and_sums(self, params, model_state, batch: Batch, rng) -> tuple[jax.Array, tuple[Metrics, Any]]:
    logits, model_state = self.apply(params, model_state, batch["inputs"], rng, train=True)
    losses = self._loss(logits, batch["labels"])
    if "mix_labels" in batch:  # mixup: the loss of the mixed targets
      weight = batch["mix_weight"]
      losses = weight * losses + (1 - weight) * self._loss(logits, batch["mix_labels"])
    correct = jnp.argmax(logits, -1) == batch["labels"]
    sums = {"loss": losses.sum(), "accuracy": correct.sum(), "count": jnp.float32(len(losses))}
    return losses.mean(), (sums, model_state)

  def outputs(self, params, model_state, batch: Batch) -> dict[str, jax.Array]:
    logits, _ = self.apply(params, model_state, batch["inputs"], None, train=False)
    return {"logits": logits.astype(jnp.float32),
            "loss": self._loss(logits, batch["labels"])}

  def metrics(self, outputs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    logits = outputs["logits"]
    preds = logits.argmax(-1)
    k = int(self.config.task.get("top_k", 5))
    precision, recall, f1 = M.precision_recall_f1(labels, preds, self.num_classes, average="macro")
    result = {"loss": float(outputs["loss"].mean()), "accuracy": M.accuracy(labels, preds),
              "macro_precision": precision, "macro_recall": recall, "macro_f1": f1,
              "confusion_matrix": M.confusion_matrix(labels, preds, self.num_classes).tolist()}
    if k < self.num_classes:
      result[f"top{k}_accuracy"] = M.top_k_accuracy(labels, logits, k)
    return result


class BinaryClassification(Task):
  """A single logit per example, sigmoid binary cross-entropy (logistic regression)."""
  default_metric = "accuracy"
  default_mode = "max"

  @classmethod
  def num_outputs(cls, num_classes: int | None, target_dim: int = 1) -> int:
    return 1

  def metric_names(self) -> tuple[str, ...]:
    return ("loss", "accuracy", "precision", "recall", "f1", "roc_auc")

  @staticmethod
  def _loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    # Labels of shape (N, 1) would broadcast against (N,) logits into an (N, N) loss
    # without any error: flatten them to one target per example.
    return optax.sigmoid_binary_cross_entropy(logits[:, 0].astype(jnp.float32),
                                              labels.reshape(-1).astype(jnp.float32))

  def loss_and_sums(self, params, model_state, batch: Batch, rng) -> tuple[jax.Array, tuple[Metrics, Any]]:
    logits, model_state = self.apply(params, model_state, batch["inputs"], rng, train=True)
    losses = self._loss(logits, batch["labels"])
    correct = (logits[:, 0] > 0) == (batch["labels"].reshape(-1) == 1)
    sums = {"loss": losses.sum(), "accuracy": correct.sum(), "count": jnp.float32(len(losses))}
    return losses.mean(), (sums, model_state)

  def outputs(self, params, model_state, batch: Batch) -> dict[str, jax.Array]:
    logits, _ = self.apply(params, model_state, batch["inputs"], None, train=False)
    return {"logit": logits[:, 0].astype(jnp.float32), "loss": self._loss(logits, batch["labels"])}

  def metrics(self, outputs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    scores = outputs["logit"]
    preds = (scores > 0).astype(np.int64)
    precision, recall, f1 = M.precision_recall_f1(labels, preds, 2, average="binary")
    return {"loss": float(outputs["loss"].mean()), "accuracy": M.accuracy(labels, preds),
            "precision": precision, "recall": recall, "f1": f1,
            "roc_auc": M.roc_auc(labels, scores),
            "confusion_matrix": M.confusion_matrix(labels, preds, 2).tolist()}
