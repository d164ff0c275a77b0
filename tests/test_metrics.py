"""Cross-checks research.metrics against scikit-learn and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from research import metrics

SEEDS = [0, 1, 2]
SIZES = [7, 100, 1000]


def _classes(seed: int, n: int, num_classes: int, num_predicted: int | None = None):
  """Random labels and predictions; predictions use only the first `num_predicted` classes."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, size=n)
  predictions = rng.integers(0, num_predicted or num_classes, size=n)
  # Make the predictions better than chance so the scores are not all ~1/C.
  keep = rng.random(n) < 0.4
  predictions[keep] = labels[keep] % (num_predicted or num_classes)
  return labels, predictions


# ----------------------------------------------------------------------------
# accuracy / top-k / confusion matrix.


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("num_classes", [2, 3, 10])
def test_accuracy_matches_sklearn(seed, n, num_classes):
  labels, predictions = _classes(seed, n, num_classes)
  assert metrics.accuracy(labels, predictions) == pytest.approx(
      skm.accuracy_score(labels, predictions), abs=1e-12)


def test_accuracy_accepts_jax_arrays():
  import jax.numpy as jnp
  labels, predictions = _classes(0, 50, 3)
  expected = skm.accuracy_score(labels, predictions)
  assert metrics.accuracy(jnp.asarray(labels), jnp.asarray(predictions)) == pytest.approx(expected)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [20, 500])
@pytest.mark.parametrize("num_classes,k", [(3, 1), (3, 2), (10, 1), (10, 3), (10, 5)])
@pytest.mark.parametrize("ties", [False, True])
def test_top_k_accuracy_matches_sklearn(seed, n, num_classes, k, ties):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, size=n)
  scores = rng.random((n, num_classes))
  if ties:  # Few distinct values: sklearn's tie-breaking must be reproduced.
    scores = np.round(scores, 1)
  expected = skm.top_k_accuracy_score(labels, scores, k=k, labels=np.arange(num_classes))
  assert metrics.top_k_accuracy(labels, scores, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_top_1_accuracy_binary_is_argmax_accuracy(seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, size=200)
  p1 = rng.random(200)
  scores = np.stack([1 - p1, p1], axis=1)
  expected = skm.accuracy_score(labels, scores.argmax(axis=1))
  assert metrics.top_k_accuracy(labels, scores, 1) == pytest.approx(expected)
  assert metrics.top_k_accuracy(labels, scores, 2) == 1.0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("num_classes", [2, 3, 10])
def test_confusion_matrix_matches_sklearn(seed, n, num_classes):
  labels, predictions = _classes(seed, n, num_classes)
  cm = metrics.confusion_matrix(labels, predictions, num_classes)
  expected = skm.confusion_matrix(labels, predictions, labels=np.arange(num_classes))
  assert cm.dtype == np.int64
  assert cm.shape == (num_classes, num_classes)
  np.testing.assert_array_equal(cm, expected)
  assert cm.sum() == n


def test_confusion_matrix_rows_are_true_class():
  cm = metrics.confusion_matrix([0, 0, 1, 2], [1, 1, 1, 0], 3)
  np.testing.assert_array_equal(cm, [[0, 2, 0], [0, 1, 0], [1, 0, 0]])


def test_confusion_matrix_rejects_out_of_range():
  with pytest.raises(ValueError, match=r"predictions must lie in \[0, 3\)"):
    metrics.confusion_matrix([0, 1, 2], [0, 1, 3], 3)


# ----------------------------------------------------------------------------
# precision / recall / F1.


def _sk_prf(labels, predictions, average, labels_arg=None, pos_label=1):
  p, r, f, _ = skm.precision_recall_fscore_support(
      labels, predictions, labels=labels_arg, average=average, pos_label=pos_label,
      zero_division=0)
  return p, r, f


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("pos_label", [0, 1])
def test_prf_binary_matches_sklearn(seed, n, pos_label):
  labels, predictions = _classes(seed, n, 2)
  got = metrics.precision_recall_f1(labels, predictions, average="binary", pos_label=pos_label)
  np.testing.assert_allclose(got, _sk_prf(labels, predictions, "binary", pos_label=pos_label),
                             atol=1e-12)
  # With num_classes given the binary score is the same.
  got2 = metrics.precision_recall_f1(labels, predictions, 2, "binary", pos_label)
  np.testing.assert_allclose(got2, got, atol=1e-12)


def test_prf_binary_never_predicted_positive_is_zero():
  labels = np.array([0, 1, 1, 0])
  predictions = np.zeros(4, dtype=int)
  got = metrics.precision_recall_f1(labels, predictions)
  assert got == (0.0, 0.0, 0.0)
  np.testing.assert_allclose(got, _sk_prf(labels, predictions, "binary"))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("num_classes", [3, 10])
@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
@pytest.mark.parametrize("never_predicted", [False, True])
def test_prf_multiclass_matches_sklearn(seed, n, num_classes, average, never_predicted):
  # never_predicted: the last class is never predicted -> its precision is 0.
  labels, predictions = _classes(
      seed, n, num_classes, num_classes - 1 if never_predicted else None)
  all_labels = np.arange(num_classes)
  got = metrics.precision_recall_f1(labels, predictions, num_classes, average)
  np.testing.assert_allclose(got, _sk_prf(labels, predictions, average, all_labels), atol=1e-12)
  got_inferred = metrics.precision_recall_f1(labels, predictions, None, average)
  np.testing.assert_allclose(got_inferred, _sk_prf(labels, predictions, average), atol=1e-12)
  assert metrics.precision(labels, predictions, num_classes, average) == got[0]
  assert metrics.recall(labels, predictions, num_classes, average) == got[1]
  assert metrics.f1(labels, predictions, num_classes, average) == got[2]


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_prf_class_absent_everywhere(average):
  # Class 3 appears in neither labels nor predictions: num_classes=5 averages
  # over it (like sklearn labels=range(5)); num_classes=None skips it.
  labels, predictions = _classes(4, 60, 3)
  labels = np.where(labels == 2, 4, labels)
  predictions = np.where(predictions == 2, 4, predictions)
  got_all = metrics.precision_recall_f1(labels, predictions, 5, average)
  got_present = metrics.precision_recall_f1(labels, predictions, None, average)
  np.testing.assert_allclose(got_all, _sk_prf(labels, predictions, average, np.arange(5)),
                             atol=1e-12)
  np.testing.assert_allclose(got_present, _sk_prf(labels, predictions, average), atol=1e-12)
  if average == "macro":
    assert got_all[0] == pytest.approx(got_present[0] * 3 / 5)


def test_prf_micro_equals_accuracy():
  labels, predictions = _classes(5, 300, 10)
  p, r, f = metrics.precision_recall_f1(labels, predictions, 10, "micro")
  acc = metrics.accuracy(labels, predictions)
  assert p == pytest.approx(acc) and r == pytest.approx(acc) and f == pytest.approx(acc)


def test_prf_binary_rejects_multiclass():
  with pytest.raises(ValueError, match="average='binary' needs at most two classes"):
    metrics.precision_recall_f1([0, 1, 2], [0, 1, 2])
  with pytest.raises(ValueError, match="average must be one of"):
    metrics.precision_recall_f1([0, 1], [0, 1], average="samples")


# ----------------------------------------------------------------------------
# ROC-AUC.


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [10, 100, 2000])
@pytest.mark.parametrize("ties", ["none", "round1", "integers"])
def test_roc_auc_matches_sklearn(seed, n, ties):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, size=n)
  labels[:2] = [0, 1]  # Both classes present.
  scores = rng.random(n) + 0.3 * labels  # Informative but imperfect.
  if ties == "round1":
    scores = np.round(scores, 1)
  elif ties == "integers":
    scores = rng.integers(0, 3, size=n) + labels
  assert metrics.roc_auc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores),
                                                          abs=1e-12)


def test_roc_auc_logits_equal_probabilities():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, size=300)
  logits = np.round(rng.normal(size=300) + labels, 1)
  probs = 1 / (1 + np.exp(-logits))
  assert metrics.roc_auc(labels, logits) == pytest.approx(metrics.roc_auc(labels, probs))
  assert metrics.roc_auc(labels, logits) == pytest.approx(skm.roc_auc_score(labels, logits))


def test_roc_auc_hand_examples():
  assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
  assert metrics.roc_auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
  assert metrics.roc_auc([0, 1], [0.5, 0.5]) == 0.5  # A tie counts one half.


@pytest.mark.parametrize("value", [0, 1])
def test_roc_auc_single_class_raises(value):
  with pytest.raises(ValueError, match="undefined when labels hold only one class"):
    metrics.roc_auc(np.full(5, value), np.linspace(0, 1, 5))


def test_roc_auc_rejects_non_binary_labels():
  with pytest.raises(ValueError, match="binary labels"):
    metrics.roc_auc([0, 1, 2], [0.1, 0.2, 0.3])


def _softmax(x):
  e = np.exp(x - x.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [50, 1000])
@pytest.mark.parametrize("num_classes", [3, 10])
@pytest.mark.parametrize("ties", [False, True])
def test_roc_auc_ovr_matches_sklearn(seed, n, num_classes, ties):
  rng = np.random.default_rng(seed)
  labels = np.concatenate([np.arange(num_classes), rng.integers(0, num_classes, n - num_classes)])
  logits = rng.normal(size=(n, num_classes))
  logits[np.arange(n), labels] += 1.0
  probs = _softmax(logits)
  if ties:  # Rows drawn from a few distinct probability vectors -> many ties.
    probs = probs[rng.integers(0, 5, size=n)]
  expected = skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro",
                               labels=np.arange(num_classes))
  assert metrics.roc_auc_ovr(labels, probs) == pytest.approx(expected, abs=1e-12)


def test_roc_auc_ovr_missing_class_raises():
  probs = _softmax(np.random.default_rng(0).normal(size=(6, 3)))
  with pytest.raises(ValueError, match=r"undefined for classes \[2\]"):
    metrics.roc_auc_ovr([0, 1, 0, 1, 0, 1], probs)


# ----------------------------------------------------------------------------
# Regression.


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(5,), (200,), (50, 1), (100, 3), (300, 4)])
def test_regression_metrics_match_sklearn(seed, shape):
  rng = np.random.default_rng(seed)
  targets = rng.normal(size=shape) * rng.uniform(0.5, 3.0, size=shape[1:])
  predictions = targets + rng.normal(scale=0.7, size=shape)
  assert metrics.mse(targets, predictions) == pytest.approx(
      skm.mean_squared_error(targets, predictions), rel=1e-12)
  assert metrics.rmse(targets, predictions) == pytest.approx(
      skm.root_mean_squared_error(targets, predictions), rel=1e-12)
  assert metrics.mae(targets, predictions) == pytest.approx(
      skm.mean_absolute_error(targets, predictions), rel=1e-12)
  assert metrics.r2(targets, predictions) == pytest.approx(
      skm.r2_score(targets, predictions), rel=1e-12)


def test_r2_constant_target_column_matches_sklearn():
  rng = np.random.default_rng(0)
  targets = rng.normal(size=(40, 3))
  targets[:, 1] = 2.0
  predictions = targets + rng.normal(scale=0.3, size=targets.shape)
  exact = predictions.copy()
  exact[:, 1] = 2.0
  for preds in (predictions, exact):
    assert metrics.r2(targets, preds) == pytest.approx(skm.r2_score(targets, preds), rel=1e-12)
  assert metrics.r2(np.full(4, 3.0), np.full(4, 3.0)) == 1.0


def test_regression_shape_mismatch_raises():
  with pytest.raises(ValueError, match="same shape"):
    metrics.mse(np.zeros(3), np.zeros(4))


# ----------------------------------------------------------------------------
# Language modelling.


def test_perplexity_and_bits_per_token():
  assert metrics.perplexity(math.log(7.0)) == pytest.approx(7.0)
  assert metrics.perplexity(0.0) == 1.0
  assert metrics.bits_per_token(3 * math.log(2.0)) == pytest.approx(3.0)
  nll = 2.345
  assert metrics.bits_per_token(nll) == pytest.approx(math.log2(metrics.perplexity(nll)))


# ----------------------------------------------------------------------------
# Fréchet distance.


def _sym_sqrt(a):
  w, v = np.linalg.eigh(a)
  return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _reference_frechet(mu1, s1, mu2, s2):
  """Independent formula: Tr sqrt(S1 S2) = Tr sqrt(S1^1/2 S2 S1^1/2), symmetric PSD."""
  r1 = _sym_sqrt(s1)
  cross = np.trace(_sym_sqrt(r1 @ s2 @ r1))
  d = mu1 - mu2
  return d @ d + np.trace(s1) + np.trace(s2) - 2 * cross


def test_frechet_identical_is_zero():
  rng = np.random.default_rng(0)
  feats = rng.normal(size=(500, 16))
  assert abs(metrics.fid_from_features(feats, feats)) < 1e-6
  mu, sigma = feats.mean(0), np.cov(feats, rowvar=False)
  assert abs(metrics.frechet_distance(mu, sigma, mu, sigma)) < 1e-6


@pytest.mark.parametrize("dim", [1, 4, 32])
def test_frechet_identity_covariance_is_squared_mean_distance(dim):
  rng = np.random.default_rng(dim)
  d = rng.normal(size=dim)
  got = metrics.frechet_distance(np.zeros(dim), np.eye(dim), d, np.eye(dim))
  assert got == pytest.approx(d @ d, abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_frechet_diagonal_closed_form(seed):
  rng = np.random.default_rng(seed)
  dim = 10
  s1, s2 = rng.uniform(0.1, 4.0, dim), rng.uniform(0.1, 4.0, dim)
  mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
  expected = np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2) + np.sum((mu1 - mu2) ** 2)
  got = metrics.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
  assert got == pytest.approx(expected, rel=1e-9)


def test_frechet_singular_product():
  # sigma1 @ sigma2 = 0: singular, but the distance has a closed form.
  got = metrics.frechet_distance(np.zeros(3), np.diag([1.0, 0, 0]), np.zeros(3),
                                 np.diag([0, 1.0, 0]))
  assert got == pytest.approx(2.0, abs=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_frechet_general_covariances(seed):
  rng = np.random.default_rng(seed)
  dim = 12
  a, b = rng.normal(size=(dim, dim)), rng.normal(size=(dim, dim))
  s1, s2 = a @ a.T / dim + 0.1 * np.eye(dim), b @ b.T / dim + 0.1 * np.eye(dim)
  mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
  got = metrics.frechet_distance(mu1, s1, mu2, s2)
  assert got == pytest.approx(_reference_frechet(mu1, s1, mu2, s2), rel=1e-8)
  assert got == pytest.approx(metrics.frechet_distance(mu2, s2, mu1, s1), rel=1e-8)


def test_fid_from_features_gaussian_samples():
  rng = np.random.default_rng(0)
  dim, n = 8, 20000
  d = np.full(dim, 0.5)
  a = rng.normal(size=(n, dim))
  b = rng.normal(size=(n, dim)) + d
  got = metrics.fid_from_features(a, b)
  # Sampling bias is O(dim^2 / n) ~ 3e-3; the mean term's noise is ~ 2|d|*sqrt(2/n).
  assert got == pytest.approx(d @ d, abs=0.05)


def test_fid_from_features_rank_deficient_is_finite():
  # Fewer samples than dimensions: singular covariances, exercising the eps retry path.
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(6, 20)), rng.normal(size=(6, 20))
  got = metrics.fid_from_features(a, b)
  assert np.isfinite(got)
  ref = _reference_frechet(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
  assert got == pytest.approx(ref, rel=1e-3)


def test_frechet_retries_with_eps_offset_when_sqrtm_fails(monkeypatch):
  # Older scipy returned inf/nan for singular products; force that here.
  real_sqrtm = metrics.scipy.linalg.sqrtm
  calls = []

  def flaky_sqrtm(a):
    calls.append(a)
    return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

  monkeypatch.setattr(metrics.scipy.linalg, "sqrtm", flaky_sqrtm)
  s1, s2 = np.diag([1.0, 4.0]), np.diag([9.0, 1.0])
  got = metrics.frechet_distance(np.zeros(2), s1, np.ones(2), s2, eps=1e-6)
  assert len(calls) == 2
  np.testing.assert_allclose(calls[1], (s1 + 1e-6 * np.eye(2)) @ (s2 + 1e-6 * np.eye(2)))
  assert got == pytest.approx((1 - 3) ** 2 + (2 - 1) ** 2 + 2.0, abs=1e-5)


def test_fid_from_features_rejects_bad_shapes():
  with pytest.raises(ValueError, match="equal D"):
    metrics.fid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
  with pytest.raises(ValueError, match="at least 2 examples"):
    metrics.fid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))


# ----------------------------------------------------------------------------
# Leave-one-out ranking.


def test_hit_rate_and_ndcg_hand_computed():
  ranks = np.array([0, 1, 5, 9, 10])
  assert metrics.hit_rate_at_k(ranks, 10) == pytest.approx(4 / 5)
  expected = (1 + 1 / math.log2(3) + 1 / math.log2(7) + 1 / math.log2(11) + 0) / 5
  assert metrics.ndcg_at_k(ranks, 10) == pytest.approx(expected)
  assert metrics.hit_rate_at_k(ranks, 1) == pytest.approx(1 / 5)
  assert metrics.ndcg_at_k(ranks, 1) == pytest.approx(1 / 5)
  assert metrics.ndcg_at_k([0], 5) == 1.0
  assert metrics.ndcg_at_k([1], 5) == pytest.approx(1 / math.log2(3))
  assert metrics.hit_rate_at_k([3], 3) == 0.0 and metrics.ndcg_at_k([3], 3) == 0.0


@pytest.mark.parametrize("k", [1, 5, 10])
def test_ndcg_matches_sklearn_single_relevant_item(k):
  # One positive among 99 negatives, no ties: the positive's rank sets the NDCG.
  rng = np.random.default_rng(k)
  users, items = 30, 100
  scores = rng.random((users, items))
  relevance = np.zeros((users, items))
  relevance[:, 0] = 1
  ranks = np.sum(scores > scores[:, :1], axis=1)
  assert metrics.ndcg_at_k(ranks, k) == pytest.approx(skm.ndcg_score(relevance, scores, k=k))
  assert metrics.hit_rate_at_k(ranks, k) == pytest.approx(np.mean(ranks < k))


def test_rank_metrics_reject_bad_input():
  with pytest.raises(ValueError, match=">= 0"):
    metrics.hit_rate_at_k([-1, 2], 5)
  with pytest.raises(ValueError, match="k must be >= 1"):
    metrics.ndcg_at_k([0, 2], 0)
