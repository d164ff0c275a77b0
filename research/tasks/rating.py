"""Recommendation objectives: explicit rating regression and implicit-feedback ranking.

`rating`: predict a user's rating of an item (MSE), evaluated as RMSE / MAE of predictions
clipped to the rating scale (a prediction of 5.7 for a 5-star maximum is known to be 5).

`implicit`: learn which items a user interacts with from positives only (He et al., NCF, 2017).
Each training positive [user, item] is paired with `task.num_negatives` items drawn uniformly
on device from the step's RNG, labelled 0; the loss is the binary cross-entropy over the
positives and the negatives. Evaluation rows are [user, positive, negative_1 .. negative_C]:
the task scores the C + 1 candidates and reports HR@k and NDCG@k (k = `task.top_k`) of the
positive's rank.

Sampling bias: a uniform draw is sometimes an item the user did interact with. A draw equal to
the example's own positive is dropped from the loss; one of the user's *other* training items
stays a false negative, because the per-user item sets are not on the device. On MovieLens
100K that is 12% of draws (a user has 6% of the items on average, but heavy users give most
training positives). It pulls the scores of a user's own items, and so of popular items,
down a little; the evaluation negatives, drawn by the data loader from items the user never
rated, have no such bias. Many NCF re-implementations sample this way; the reference code
rejects such draws on the host.

Both tasks take an optional per-example L2 penalty, the classic MF regulariser:
`task.embedding_l2` times the squared norms of the embedding rows each training pair uses, and
`task.bias_l2` times its squared biases (the model's `embedding_norms`), averaged over the pairs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from research import metrics as M
from research.errors import ConfigError
from research.tasks.base import Batch, Metrics, Task
from research.tasks.regression import Regression


def _task_float(config: ml_collections.ConfigDict, field: str, default: float) -> float:
  value = config.task.get(field, default)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
    raise ConfigError(f"config.task.{field} must be a number >= 0; got {value!r}.")
  return float(value)


class _EmbeddingPenalty:
  """The per-example L2 penalty shared by both tasks (a mixin over `Task`)."""

  def _init_penalty(self) -> None:
    self.embedding_l2 = _task_float(self.config, "embedding_l2", 0.0)
    self.bias_l2 = _task_float(self.config, "bias_l2", 0.0)
    if (self.embedding_l2 or self.bias_l2) and not hasattr(self.model, "embedding_norms"):
      raise ConfigError(
          f"config.task.embedding_l2 / bias_l2 need a model with embeddings "
          f"(matrix_factorization, neumf); model {type(self.model).__name__} has none: set "
          "them to 0 and use config.optimizer.l2 or weight_decay instead.")

  def _penalty(self, params: Any, pairs: jax.Array) -> jax.Array:
    if not (self.embedding_l2 or self.bias_l2):
      return jnp.zeros((), jnp.float32)
    norms = self.model.apply({"params": params}, pairs, method="embedding_norms")
    total = self.embedding_l2 * norms["factors"].mean()
    if "biases" in norms:
      total += self.bias_l2 * norms["biases"].mean()
    return total


class RatingRegression(_EmbeddingPenalty, Regression):
  """MSE on ratings; RMSE / MAE / R² of predictions clipped to [task.min_rating, max_rating].

  The train loss (and the logged train `loss`) is the MSE of unclipped predictions, so the
  gradient never vanishes outside the scale; the per-example penalty is not in the logged loss.
  """

  def __init__(self, config, model, num_classes):
    super().__init__(config, model, num_classes)
    self._init_penalty()
    self.min_rating = float(config.task.get("min_rating", 1.0))
    self.max_rating = float(config.task.get("max_rating", 5.0))
    if not self.min_rating < self.max_rating:
      raise ConfigError(f"config.task.min_rating = {self.min_rating} must be below "
                        f"config.task.max_rating = {self.max_rating}.")

  def loss_and_sums(self, params, model_state, batch: Batch, rng) -> tuple[jax.Array, tuple[Metrics, Any]]:
    loss, aux = super().loss_and_sums(params, model_state, batch, rng)
    return loss + self._penalty(params, batch["inputs"]), aux

  def outputs(self, params, model_state, batch: Batch) -> dict[str, jax.Array]:
    preds, _ = self.apply(params, model_state, batch["inputs"], None, train=False)
    preds = jnp.clip(preds.astype(jnp.float32), self.min_rating, self.max_rating)
    loss = jnp.square(preds - batch["labels"].reshape(preds.shape).astype(jnp.float32)).mean(-1)
    return {"prediction": preds, "loss": loss}


def rank_of_positive(scores: Any) -> Any:
  """0-based rank of candidate 0 among each row's candidates: how many score at least as high.

  A tie counts against the positive, so a constant scorer ranks every positive last (HR 0)
  instead of first. Works on numpy and jax arrays alike: (B, C) scores -> (B,) ranks.
  """
  return (scores[:, 1:] >= scores[:, :1]).sum(axis=1)


def popularity_baseline(train_inputs: np.ndarray, eval_inputs: np.ndarray, num_items: int,
                        k: int) -> dict[str, float]:
  """HR@k and NDCG@k of ranking each row's candidates by their number of training pairs.

  `train_inputs` (N, 2) [user, item] training positives; `eval_inputs` (B, 1 + C) rows
  [user, positive, negatives...] as the implicit task evaluates them. Ties (equally popular
  items) count against the positive, as in `rank_of_positive`.
  """
  counts = np.bincount(np.asarray(train_inputs)[:, 1], minlength=num_items)
  ranks = rank_of_positive(counts[np.asarray(eval_inputs)[:, 1:]])
  return {f"hit_rate_at_{k}": M.hit_rate_at_k(ranks, k), f"ndcg_at_{k}": M.ndcg_at_k(ranks, k)}


class ImplicitFeedback(_EmbeddingPenalty, Task):
  """BCE with on-device negative sampling; HR@k / NDCG@k of leave-one-out rows."""

  default_mode = "max"

  def __init__(self, config, model, num_classes):
    super().__init__(config, model, num_classes)
    self._init_penalty()
    self.k = int(config.task.get("top_k", 10))
    self.num_negatives = config.task.get("num_negatives", 4)
    if isinstance(self.num_negatives, bool) or not isinstance(self.num_negatives, int) or (
        self.num_negatives < 1):
      raise ConfigError(f"config.task.num_negatives must be an integer >= 1 (sampled items per "
                        f"training positive); got {self.num_negatives!r}.")
    if self.k < 1:
      raise ConfigError(f"config.task.top_k must be >= 1 (the k of HR@k); got {self.k}.")
    self.num_items = getattr(model, "num_items", None)
    if not self.num_items:
      raise ConfigError(f"task 'implicit' samples negative items, so it needs a model with "
                        f"num_items (matrix_factorization, neumf); got "
                        f"{type(model).__name__}.")

  @classmethod
  def num_outputs(cls, num_classes: int | None, target_dim: int = 1) -> int:
    return 1

  @property
  def default_metric(self) -> str:  # type: ignore[override]
    return f"ndcg_at_{self.k}"

  def metric_names(self) -> tuple[str, ...]:
    return ("loss", f"hit_rate_at_{self.k}", f"ndcg_at_{self.k}")

  def init_variables(self, rng: jax.Array, sample_inputs: jax.Array) -> dict[str, Any]:
    # From the first [user, item] pair of a row: a training pair or an evaluation row.
    return super().init_variables(rng, sample_inputs[:, :2])

  def _scores(self, params, model_state, pairs: jax.Array, rng, train: bool):
    logits, model_state = self.apply(params, model_state, pairs, rng, train=train)
    return logits[..., 0].astype(jnp.float32), model_state

  def loss_and_sums(self, params, model_state, batch: Batch, rng) -> tuple[jax.Array, tuple[Metrics, Any]]:
    inputs = batch["inputs"]
    sample_rng, dropout_rng = jax.random.split(rng)
    users, items = inputs[:, :1], inputs[:, 1:2]
    negatives = jax.random.randint(sample_rng, (len(inputs), self.num_negatives), 0,
                                   self.num_items, dtype=inputs.dtype)
    candidates = jnp.concatenate([items, negatives], 1)  # (B, 1 + n)
    pairs = jnp.stack([jnp.broadcast_to(users, candidates.shape), candidates], -1)
    targets = jnp.concatenate([batch["labels"].reshape(-1, 1).astype(jnp.float32),
                               jnp.zeros(negatives.shape, jnp.float32)], 1)
    # A draw of the example's own positive is no negative: leave it out of the loss.
    weights = jnp.concatenate([jnp.ones(items.shape, jnp.float32),
                               (negatives != items).astype(jnp.float32)], 1)
    logits, model_state = self._scores(params, model_state, pairs, dropout_rng, train=True)
    losses = optax.sigmoid_binary_cross_entropy(logits, targets) * weights
    loss = losses.sum() / weights.sum()
    sums = {"loss": loss * len(inputs), "count": jnp.float32(len(inputs))}
    return loss + self._penalty(params, pairs), (sums, model_state)

  def outputs(self, params, model_state, batch: Batch) -> dict[str, jax.Array]:
    inputs = batch["inputs"]
    candidates = inputs[:, 1:]
    pairs = jnp.stack([jnp.broadcast_to(inputs[:, :1], candidates.shape), candidates], -1)
    scores, _ = self._scores(params, model_state, pairs, None, train=False)
    targets = jnp.zeros(scores.shape, jnp.float32).at[:, 0].set(1.0)
    return {"rank": rank_of_positive(scores).astype(jnp.int32),
            "loss": optax.sigmoid_binary_cross_entropy(scores, targets).mean(-1)}

  def metrics(self, outputs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    ranks = outputs["rank"]
    return {"loss": float(np.mean(outputs["loss"], dtype=np.float64)),
            f"hit_rate_at_{self.k}": M.hit_rate_at_k(ranks, self.k),
            f"ndcg_at_{self.k}": M.ndcg_at_k(ranks, self.k)}
