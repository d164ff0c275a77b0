"""Host-side evaluation metrics on numpy arrays.

These run after evaluation has gathered per-example outputs to the host, so
they are plain numpy (inputs may be numpy or jax arrays). Each one matches its
scikit-learn counterpart (tests/test_metrics.py cross-checks them) without
making sklearn a runtime dependency of the training code.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import scipy.linalg
import scipy.stats

ArrayLike = Any  # numpy array, jax array, list, ...

_AVERAGES = ("binary", "macro", "micro", "weighted")


# ----------------------------------------------------------------------------
# Input checks.


def _as_int_vector(x: ArrayLike, name: str) -> np.ndarray:
  """Returns `x` as a 1-D int64 array; rejects non-integral values."""
  arr = np.asarray(x)
  if arr.ndim != 1:
    raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
  if arr.dtype.kind == "b":
    return arr.astype(np.int64)
  if arr.dtype.kind in "iu":
    return arr.astype(np.int64)
  if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
    return arr.astype(np.int64)
  raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")


def _check_same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
  if a.shape[0] != b.shape[0]:
    raise ValueError(
        f"{name_a} and {name_b} must have the same length, got {a.shape[0]} and {b.shape[0]}")
  if a.shape[0] == 0:
    raise ValueError(f"{name_a} and {name_b} are empty: no examples to score")


def _check_class_range(x: np.ndarray, num_classes: int, name: str) -> None:
  if x.size and (x.min() < 0 or x.max() >= num_classes):
    raise ValueError(
        f"{name} must lie in [0, {num_classes}) for num_classes={num_classes}, "
        f"got values in [{x.min()}, {x.max()}]")


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  """num / den with 0 where den == 0 (sklearn's zero_division=0)."""
  num = np.asarray(num, dtype=np.float64)
  den = np.asarray(den, dtype=np.float64)
  out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
  np.divide(num, den, out=out, where=den != 0)
  return out


# ----------------------------------------------------------------------------
# Classification.


def accuracy(labels: ArrayLike, predictions: ArrayLike) -> float:
  """Fraction of examples whose predicted class equals the label."""
  labels = _as_int_vector(labels, "labels")
  predictions = _as_int_vector(predictions, "predictions")
  _check_same_length(labels, predictions, "labels", "predictions")
  return float(np.mean(labels == predictions))


def top_k_accuracy(labels: ArrayLike, scores: ArrayLike, k: int) -> float:
  """Fraction of examples whose label is among the k highest-scoring classes.

  Ties are broken like sklearn's `top_k_accuracy_score`: among equal scores the
  class with the larger index ranks higher. So the true class is a hit iff
  fewer than k classes score strictly higher, or equal with a larger index.
  """
  labels = _as_int_vector(labels, "labels")
  scores = np.asarray(scores)
  if scores.ndim != 2:
    raise ValueError(f"scores must have shape (N, C), got {scores.shape}")
  _check_same_length(labels, scores, "labels", "scores")
  num_classes = scores.shape[1]
  if not 1 <= k:
    raise ValueError(f"k must be >= 1, got {k}")
  _check_class_range(labels, num_classes, "labels")
  true_score = np.take_along_axis(scores, labels[:, None], axis=1)
  higher = scores > true_score
  tied_ahead = (scores == true_score) & (np.arange(num_classes)[None, :] > labels[:, None])
  num_ahead = np.sum(higher | tied_ahead, axis=1)
  return float(np.mean(num_ahead < k))


def confusion_matrix(labels: ArrayLike, predictions: ArrayLike, num_classes: int) -> np.ndarray:
  """(C, C) int64 counts; entry [i, j] = examples of true class i predicted j."""
  labels = _as_int_vector(labels, "labels")
  predictions = _as_int_vector(predictions, "predictions")
  _check_same_length(labels, predictions, "labels", "predictions")
  _check_class_range(labels, num_classes, "labels")
  _check_class_range(predictions, num_classes, "predictions")
  flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
  return flat.reshape(num_classes, num_classes).astype(np.int64)


def precision_recall_f1(
    labels: ArrayLike,
    predictions: ArrayLike,
    num_classes: int | None = None,
    average: str = "binary",
    pos_label: int = 1,
) -> tuple[float, float, float]:
  """(precision, recall, F1) from the confusion matrix, like sklearn.

  Undefined ratios (a class never predicted, or never present) count as 0,
  matching sklearn's `zero_division=0`. Which classes are averaged over:
  with `num_classes` given, all of 0..num_classes-1 (sklearn's
  `labels=range(num_classes)`); with `num_classes=None`, the classes present in
  labels or predictions (sklearn's default). 'binary' scores `pos_label` only
  and requires at most two distinct values in labels and predictions.
  'weighted' averages per-class scores by support (true count); F1 is
  averaged per class, not recomputed from the averaged precision and recall.
  """
  if average not in _AVERAGES:
    raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
  labels = _as_int_vector(labels, "labels")
  predictions = _as_int_vector(predictions, "predictions")
  _check_same_length(labels, predictions, "labels", "predictions")
  if num_classes is None:
    if min(labels.min(), predictions.min()) < 0:
      raise ValueError("labels and predictions must be non-negative class ids")
    size = int(max(labels.max(), predictions.max(), pos_label if average == "binary" else 0)) + 1
    present = np.zeros(size, dtype=bool)
    present[labels] = True
    present[predictions] = True
  else:
    size = num_classes
    present = np.ones(size, dtype=bool)
  cm = confusion_matrix(labels, predictions, size)
  tp = np.diag(cm).astype(np.float64)
  pred_count = cm.sum(axis=0).astype(np.float64)  # tp + fp
  true_count = cm.sum(axis=1).astype(np.float64)  # tp + fn (support)

  if average == "binary":
    distinct = np.union1d(labels, predictions)
    if distinct.size > 2:
      raise ValueError(
          f"average='binary' needs at most two classes, got {distinct.size} "
          f"({distinct.tolist()[:10]}); use average='macro', 'micro' or 'weighted'")
    if not 0 <= pos_label < size:
      raise ValueError(f"pos_label={pos_label} is outside [0, {size})")
    idx = np.array([pos_label])
  else:
    idx = np.flatnonzero(present)
  tp, pred_count, true_count = tp[idx], pred_count[idx], true_count[idx]

  if average == "micro":
    tp, pred_count, true_count = tp.sum(), pred_count.sum(), true_count.sum()
  precision_c = _safe_divide(tp, pred_count)
  recall_c = _safe_divide(tp, true_count)
  f1_c = _safe_divide(2 * tp, pred_count + true_count)

  if average == "weighted":
    total = true_count.sum()
    if total == 0:
      return 0.0, 0.0, 0.0
    w = true_count / total
    return float(precision_c @ w), float(recall_c @ w), float(f1_c @ w)
  return float(np.mean(precision_c)), float(np.mean(recall_c)), float(np.mean(f1_c))


def precision(labels: ArrayLike, predictions: ArrayLike, num_classes: int | None = None,
              average: str = "binary", pos_label: int = 1) -> float:
  """Precision; see `precision_recall_f1`."""
  return precision_recall_f1(labels, predictions, num_classes, average, pos_label)[0]


def recall(labels: ArrayLike, predictions: ArrayLike, num_classes: int | None = None,
           average: str = "binary", pos_label: int = 1) -> float:
  """Recall; see `precision_recall_f1`."""
  return precision_recall_f1(labels, predictions, num_classes, average, pos_label)[1]


def f1(labels: ArrayLike, predictions: ArrayLike, num_classes: int | None = None,
       average: str = "binary", pos_label: int = 1) -> float:
  """F1; see `precision_recall_f1`."""
  return precision_recall_f1(labels, predictions, num_classes, average, pos_label)[2]


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
  """Mann-Whitney U / (n_pos * n_neg) with average ranks for ties.

  This equals the trapezoidal area under the ROC curve, ties included (a tied
  positive/negative pair counts 1/2), which is what sklearn computes.
  """
  n_pos = int(positive.sum())
  n_neg = positive.size - n_pos
  ranks = scipy.stats.rankdata(scores, method="average")
  u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
  return float(u / (n_pos * n_neg))


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
  """Binary ROC-AUC; `scores` is any monotone score of the positive class (1).

  Probabilities and logits give the same value, since only the ranking counts.
  """
  labels = _as_int_vector(labels, "labels")
  scores = np.asarray(scores, dtype=np.float64)
  if scores.ndim != 1:
    raise ValueError(f"scores must be 1-D (score of the positive class), got {scores.shape}")
  _check_same_length(labels, scores, "labels", "scores")
  if not np.all((labels == 0) | (labels == 1)):
    raise ValueError(f"roc_auc needs binary labels in {{0, 1}}, got {np.unique(labels).tolist()[:10]}")
  if not np.all(np.isfinite(scores)):
    raise ValueError("roc_auc scores contain NaN or infinity")
  positive = labels == 1
  if positive.all() or not positive.any():
    raise ValueError(
        f"roc_auc is undefined when labels hold only one class (all {int(labels[0])}, "
        f"{labels.size} examples): it needs at least one positive and one negative")
  return _binary_auc(positive, scores)


def roc_auc_ovr(labels: ArrayLike, probs: ArrayLike) -> float:
  """Multiclass ROC-AUC: one-vs-rest per class, unweighted mean over classes.

  Matches sklearn's `roc_auc_score(multi_class='ovr', average='macro')`. Every
  class 0..C-1 must appear in labels, otherwise its AUC is undefined.
  """
  labels = _as_int_vector(labels, "labels")
  probs = np.asarray(probs, dtype=np.float64)
  if probs.ndim != 2:
    raise ValueError(f"probs must have shape (N, C), got {probs.shape}")
  _check_same_length(labels, probs, "labels", "probs")
  num_classes = probs.shape[1]
  _check_class_range(labels, num_classes, "labels")
  counts = np.bincount(labels, minlength=num_classes)
  missing = np.flatnonzero((counts == 0) | (counts == labels.size))
  if missing.size:
    raise ValueError(
        f"roc_auc_ovr is undefined for classes {missing.tolist()[:10]}: one-vs-rest AUC "
        "needs every class to appear in labels alongside at least one other class")
  if not np.all(np.isfinite(probs)):
    raise ValueError("roc_auc_ovr probs contain NaN or infinity")
  aucs = [_binary_auc(labels == c, probs[:, c]) for c in range(num_classes)]
  return float(np.mean(aucs))


# ----------------------------------------------------------------------------
# Regression. 2-D targets (N, D) are scored per output then averaged uniformly,
# as sklearn's multioutput='uniform_average' does.


def _regression_pair(targets: ArrayLike, predictions: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  """Returns (N, D) float64 arrays; 1-D inputs become D = 1."""
  y = np.asarray(targets, dtype=np.float64)
  p = np.asarray(predictions, dtype=np.float64)
  if y.shape != p.shape:
    raise ValueError(f"targets and predictions must have the same shape, got {y.shape} and {p.shape}")
  if y.ndim == 1:
    y, p = y[:, None], p[:, None]
  if y.ndim != 2:
    raise ValueError(f"targets must be 1-D or 2-D (N, D), got shape {y.shape}")
  if y.shape[0] == 0:
    raise ValueError("targets are empty: no examples to score")
  return y, p


def mse(targets: ArrayLike, predictions: ArrayLike) -> float:
  """Mean squared error."""
  y, p = _regression_pair(targets, predictions)
  return float(np.mean(np.mean((y - p) ** 2, axis=0)))


def rmse(targets: ArrayLike, predictions: ArrayLike) -> float:
  """Root mean squared error; for 2-D targets the mean of per-output RMSEs (as sklearn)."""
  y, p = _regression_pair(targets, predictions)
  return float(np.mean(np.sqrt(np.mean((y - p) ** 2, axis=0))))


def mae(targets: ArrayLike, predictions: ArrayLike) -> float:
  """Mean absolute error."""
  y, p = _regression_pair(targets, predictions)
  return float(np.mean(np.mean(np.abs(y - p), axis=0)))


def r2(targets: ArrayLike, predictions: ArrayLike) -> float:
  """Coefficient of determination, like sklearn's `r2_score`.

  A constant target column scores 1.0 if predicted exactly, else 0.0
  (sklearn's `force_finite=True`), so the average stays finite.
  """
  y, p = _regression_pair(targets, predictions)
  ss_res = np.sum((y - p) ** 2, axis=0)
  ss_tot = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
  score = np.ones_like(ss_res)
  ok = ss_tot != 0
  score[ok] = 1.0 - ss_res[ok] / ss_tot[ok]
  score[~ok & (ss_res != 0)] = 0.0
  return float(np.mean(score))


# ----------------------------------------------------------------------------
# Language modelling.


def perplexity(mean_nll: float) -> float:
  """exp(mean negative log-likelihood per token, in nats)."""
  return float(math.exp(mean_nll))


def bits_per_token(mean_nll: float) -> float:
  """Mean NLL converted from nats to bits."""
  return float(mean_nll / math.log(2.0))


# ----------------------------------------------------------------------------
# Generative models.


def frechet_distance(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, eps: float = 1e-6,
) -> float:
  """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

  d^2 = |mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2)), computed as
  in the reference FID code: if sqrt(sigma1 sigma2) fails (non-finite or
  inaccurate, as for a singular product), retry with `eps` added to both
  diagonals; tiny imaginary parts from numerical error are discarded, large
  ones raise.
  """
  mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
  mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
  dim = mu1.shape[0]
  if mu1.shape != (dim,) or mu2.shape != (dim,):
    raise ValueError(f"means must be 1-D of equal length, got {mu1.shape} and {mu2.shape}")
  if sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
    raise ValueError(
        f"covariances must be ({dim}, {dim}) to match the means, got {sigma1.shape} and {sigma2.shape}")

  diff = mu1 - mu2
  covmean = _sqrtm_or_none(sigma1 @ sigma2, check_residual=True)
  if covmean is None:
    offset = np.eye(dim) * eps
    covmean = _sqrtm_or_none((sigma1 + offset) @ (sigma2 + offset), check_residual=False)
    if covmean is None:
      raise ValueError(
          "frechet_distance: sqrt(sigma1 @ sigma2) failed even with an eps offset; "
          "the covariances are badly conditioned (too few samples for the feature size?)")
  if np.iscomplexobj(covmean):
    max_imag = np.max(np.abs(np.diagonal(covmean).imag))
    if max_imag > 1e-3:
      raise ValueError(f"frechet_distance: sqrt(sigma1 @ sigma2) has imaginary component {max_imag}")
    covmean = covmean.real
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def _sqrtm_or_none(a: np.ndarray, check_residual: bool) -> np.ndarray | None:
  """scipy's sqrtm, or None when non-finite or (if checked) it does not square back to `a`.

  scipy >= 1.16 returns a finite, possibly inaccurate root for singular input
  (with a warning) where older versions returned inf/nan, so the residual check
  is what triggers the eps retry now.
  """
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
    root = scipy.linalg.sqrtm(a)
  if not np.all(np.isfinite(root)):
    return None
  scale = np.linalg.norm(a)
  if check_residual and scale > 0 and np.linalg.norm(root @ root - a) > 1e-6 * scale:
    return None
  return root


def fid_from_features(features_a: ArrayLike, features_b: ArrayLike) -> float:
  """Fréchet distance between Gaussians fit to two (N, D) feature sets.

  This is "FID" only in form: the number depends entirely on the feature
  extractor the caller used. It equals the published FID only for the
  standard Inception-v3 pool3 features; values from other extractors are
  comparable only with each other.
  """
  a = np.asarray(features_a, dtype=np.float64)
  b = np.asarray(features_b, dtype=np.float64)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
    raise ValueError(f"features must be (N, D) with equal D, got {a.shape} and {b.shape}")
  if a.shape[0] < 2 or b.shape[0] < 2:
    raise ValueError(f"need at least 2 examples per set to fit a covariance, got {a.shape[0]} and {b.shape[0]}")
  return frechet_distance(a.mean(axis=0), np.cov(a, rowvar=False),
                          b.mean(axis=0), np.cov(b, rowvar=False))


# ----------------------------------------------------------------------------
# Recommendation (leave-one-out: rank the held-out positive among sampled
# negatives; rank is its 0-based position, 0 = scored highest).


def _ranks(rank_of_positive: ArrayLike, k: int) -> np.ndarray:
  ranks = _as_int_vector(np.atleast_1d(np.asarray(rank_of_positive)), "rank_of_positive")
  if ranks.size == 0:
    raise ValueError("rank_of_positive is empty: no examples to score")
  if ranks.min() < 0:
    raise ValueError(f"rank_of_positive must be >= 0 (0-based), got {ranks.min()}")
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}")
  return ranks


def hit_rate_at_k(rank_of_positive: ArrayLike, k: int) -> float:
  """Fraction of users whose held-out positive ranks in the top k."""
  ranks = _ranks(rank_of_positive, k)
  return float(np.mean(ranks < k))


def ndcg_at_k(rank_of_positive: ArrayLike, k: int) -> float:
  """Mean NDCG@k with one relevant item: 1/log2(rank + 2) if rank < k, else 0."""
  ranks = _ranks(rank_of_positive, k)
  gain = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
  return float(np.mean(gain))


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
  """sacrebleu's corpus BLEU (0-100, its default 13a tokenisation) of detokenised hypotheses,
  one reference each: the number translation papers report."""
  import sacrebleu  # only translation needs it
  if len(hypotheses) != len(references):
    raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
  return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)
