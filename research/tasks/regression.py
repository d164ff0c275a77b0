"""Regression with mean squared error; RMSE, MAE and R² on evaluation."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from research import metrics as M
from research.tasks.base import Batch, Metrics, Task


def _as_targets(labels: jax.Array, predictions: jax.Array) -> jax.Array:
  return labels.reshape(predictions.shape).astype(jnp.float32)


class Regression(Task):
  default_metric = "rmse"
  default_mode = "min"

  def metric_names(self) -> tuple[str, ...]:
    return ("loss", "mse", "rmse", "mae", "r2")

  def loss_and_sums(self, params, model_state, batch: Batch, rng) -> tuple[jax.Array, tuple[Metrics, Any]]:
    preds, model_state = self.apply(params, model_state, batch["inputs"], rng, train=True)
    preds = preds.astype(jnp.float32)
    sq = jnp.square(preds - _as_targets(batch["labels"], preds)).mean(-1)
    sums = {"loss": sq.sum(), "count": jnp.float32(len(sq))}
    return sq.mean(), (sums, model_state)

  def outputs(self, params, model_state, batch: Batch) -> dict[str, jax.Array]:
    preds, _ = self.apply(params, model_state, batch["inputs"], None, train=False)
    preds = preds.astype(jnp.float32)
    loss = jnp.square(preds - _as_targets(batch["labels"], preds)).mean(-1)
    return {"prediction": preds, "loss": loss}

  def metrics(self, outputs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    preds = outputs["prediction"]
    if preds.shape[-1] == 1:
      preds = preds[:, 0]
    labels = labels.reshape(preds.shape)
    return {"loss": float(outputs["loss"].mean()), "mse": M.mse(labels, preds),
            "rmse": M.rmse(labels, preds), "mae": M.mae(labels, preds), "r2": M.r2(labels, preds)}
