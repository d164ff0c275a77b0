"""Tests for research.tasks: losses, train-time sums and eval metrics of each task.

Losses are checked against optax / scikit-learn / hand formulas on the very logits the
model produced, and eval metrics against scikit-learn, so a task cannot drift from the
textbook definition its name promises. The generic train step is checked against a
hand-written gradient, and the bf16 policy against its contract (fp32 params, state, loss).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from sklearn import metrics as skm

from research.config import base_config
from research.models import build_model
from research.tasks import TASKS, Task, TrainState, build_task, num_outputs, prepare_inputs
from research.training.optimizers import make_optimizer

N, D, K = 64, 6, 4
RNG = jax.random.PRNGKey(0)


def _config(task: str, model: str = "linear", **task_fields: Any) -> ml_collections.ConfigDict:
  config = base_config()
  config.task.name = task
  config.task.update(task_fields)
  config.model = ml_collections.ConfigDict({"name": model})
  return config


def _task(task: str, num_classes: int | None = K, model: str = "linear",
          dtype: Any = jnp.float32, config: ml_collections.ConfigDict | None = None,
          **model_fields: Any) -> Task:
  config = config or _config(task, model)
  config.model.update(model_fields)
  width = num_outputs(task, num_classes)
  return build_task(config, build_model(config.model, width, dtype=dtype), num_classes)


def _data(task: str, seed: int = 1) -> tuple[jax.Array, jax.Array]:
  """Random inputs and labels of the right kind for a task (both classes present).

  numpy, not jax.random: eager jax ops each compile on first use, which dominates here.
  """
  rng = np.random.default_rng(seed)
  if task == "language_model":  # token ids in, the next token at every position out
    return tuple(jnp.asarray(rng.integers(0, K, (N, D)), jnp.int32) for _ in range(2))
  if task in ("rating", "implicit"):  # [user, item] (implicit: [user, item, negatives...])
    ids = jnp.asarray(rng.integers(0, K, (N, 2 if task == "rating" else D)), jnp.int32)
    return ids, jnp.asarray(rng.integers(1, 6, N) if task == "rating" else np.ones(N), jnp.float32)
  x = rng.normal(size=(N, D)).astype(np.float32)
  if task == "multiclass":
    y = rng.integers(0, K, N).astype(np.int32)
  elif task == "binary":
    y = rng.permutation(np.arange(N) % 2).astype(np.int32)
  else:
    y = rng.normal(size=N).astype(np.float32)
  return jnp.asarray(x), jnp.asarray(y)


def _init(task: Task, x: jax.Array, scale: float = 3.0, seed: int = 0) -> Any:
  """Random params of the shapes and dtypes `task.init_variables` gives, drawn in numpy.

  Only the shapes come from the model (eval_shape traces, compiles nothing): compiling
  Flax's random initialisers costs about a second per model on CPU, most of this file's
  runtime. `scale` spreads the logits so the metrics are not all ties.
  """
  shapes = jax.eval_shape(task.init_variables, RNG, x[:1])["params"]
  rng = np.random.default_rng(seed)

  def draw(leaf: jax.ShapeDtypeStruct) -> jax.Array:
    fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 1
    values = scale * rng.normal(size=leaf.shape) / np.sqrt(fan_in)
    return jnp.asarray(values, leaf.dtype)

  return jax.tree_util.tree_map(draw, shapes)


def _loss_and_sums(task: Task, params: Any, batch: dict[str, jax.Array],
                   rng: jax.Array = RNG) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Compiled: one jit is cheaper on CPU than compiling each eager op separately."""
  loss, (sums, _) = jax.jit(task.loss_and_sums)(params, None, batch, rng)
  return loss, sums


def _outputs(task: Task, params: Any, batch: dict[str, jax.Array]) -> dict[str, np.ndarray]:
  return jax.device_get(jax.jit(task.outputs)(params, None, batch))


def _logits(task: Task, params: Any, x: jax.Array) -> np.ndarray:
  return np.asarray(jax.jit(task.model.apply)({"params": params}, x), np.float64)


# -- multiclass ---------------------------------------------------------------------


def test_multiclass_loss_is_softmax_cross_entropy():
  task = _task("multiclass")
  x, y = _data("multiclass")
  params = _init(task, x)
  loss, (sums, state) = jax.jit(task.loss_and_sums)(params, None, {"inputs": x, "labels": y},
                                                     RNG)
  logits = _logits(task, params, x)
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected = -log_probs[np.arange(N), np.asarray(y)].mean()
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  assert loss.dtype == jnp.float32 and state is None
  np.testing.assert_allclose(sums["loss"], N * expected, rtol=1e-5)
  assert int(sums["accuracy"]) == int(np.sum(np.argmax(logits, -1) == np.asarray(y)))
  assert float(sums["count"]) == N


def test_multiclass_label_smoothing_matches_hand_formula():
  a = 0.1
  task = _task("multiclass", config=_config("multiclass", label_smoothing=a))
  x, y = _data("multiclass")
  params = _init(task, x)
  loss, _ = _loss_and_sums(task, params, {"inputs": x, "labels": y})
  logits = _logits(task, params, x)
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  targets = (1 - a) * np.eye(K)[np.asarray(y)] + a / K
  expected = -(targets * log_probs).sum(-1).mean()
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  # Smoothing must actually change the objective, or the check above proves nothing.
  plain, _ = _loss_and_sums(_task("multiclass"), params, {"inputs": x, "labels": y})
  assert abs(float(plain) - float(loss)) > 1e-4


def test_multiclass_metrics_match_sklearn():
  task = _task("multiclass", config=_config("multiclass", top_k=2))
  x, y = _data("multiclass")
  params = _init(task, x)
  outputs = _outputs(task, params, {"inputs": x, "labels": y})
  labels = np.asarray(y)
  logits = outputs["logits"]
  np.testing.assert_allclose(logits, _logits(task, params, x), rtol=1e-5, atol=1e-6)
  preds = logits.argmax(-1)
  assert len(set(preds.tolist())) > 1  # not a degenerate constant predictor

  result = task.metrics(outputs, labels)
  classes = list(range(K))
  assert result["accuracy"] == pytest.approx(skm.accuracy_score(labels, preds))
  p, r, f, _ = skm.precision_recall_fscore_support(labels, preds, labels=classes,
                                                   average="macro", zero_division=0)
  assert result["macro_precision"] == pytest.approx(p)
  assert result["macro_recall"] == pytest.approx(r)
  assert result["macro_f1"] == pytest.approx(f)
  np.testing.assert_array_equal(result["confusion_matrix"],
                                skm.confusion_matrix(labels, preds, labels=classes))
  assert result["top2_accuracy"] == pytest.approx(
      skm.top_k_accuracy_score(labels, logits, k=2, labels=classes))
  assert result["top2_accuracy"] >= result["accuracy"]
  expected_loss = skm.log_loss(labels, jax.nn.softmax(logits.astype(np.float64)), labels=classes)
  assert result["loss"] == pytest.approx(expected_loss, rel=1e-4)


def test_multiclass_top_k_only_when_smaller_than_num_classes():
  x, y = _data("multiclass")
  base = _task("multiclass")
  outputs = _outputs(base, _init(base, x), {"inputs": x, "labels": y})  # top_k-independent
  for k, present in ((3, True), (K, False), (5, False)):
    task = _task("multiclass", config=_config("multiclass", top_k=k))
    result = task.metrics(outputs, np.asarray(y))
    assert (f"top{k}_accuracy" in result) == present, k
    assert (f"top{k}_accuracy" in task.metric_names()) == present, k


# -- binary -------------------------------------------------------------------------


def test_binary_loss_is_log_loss():
  task = _task("binary", num_classes=2, model="logistic_regression")
  x, y = _data("binary")
  params = _init(task, x, scale=1.0)
  loss, sums = _loss_and_sums(task, params, {"inputs": x, "labels": y})
  logits = _logits(task, params, x)[:, 0]
  probs = 1.0 / (1.0 + np.exp(-logits))
  np.testing.assert_allclose(loss, skm.log_loss(np.asarray(y), probs), rtol=1e-5)
  assert int(sums["accuracy"]) == int(np.sum((logits > 0) == (np.asarray(y) == 1)))
  assert float(sums["count"]) == N
  # (N, 1) labels mean the same thing; they must not broadcast into an (N, N) loss.
  loss_col, sums_col = _loss_and_sums(task, params, {"inputs": x, "labels": y[:, None]})
  np.testing.assert_allclose(loss_col, loss, rtol=1e-6)
  assert int(sums_col["accuracy"]) == int(sums["accuracy"])


def test_binary_metrics_match_sklearn():
  task = _task("binary", num_classes=2, model="logistic_regression")
  x, y = _data("binary")
  params = _init(task, x)
  outputs = _outputs(task, params, {"inputs": x, "labels": y})
  labels = np.asarray(y)
  scores = outputs["logit"]
  preds = (scores > 0).astype(int)
  assert 0 < preds.sum() < N
  result = task.metrics(outputs, labels)
  assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, scores))
  assert result["precision"] == pytest.approx(skm.precision_score(labels, preds))
  assert result["recall"] == pytest.approx(skm.recall_score(labels, preds))
  assert result["f1"] == pytest.approx(skm.f1_score(labels, preds))
  assert result["accuracy"] == pytest.approx(skm.accuracy_score(labels, preds))
  np.testing.assert_array_equal(result["confusion_matrix"], skm.confusion_matrix(labels, preds))
  probs = 1.0 / (1.0 + np.exp(-scores.astype(np.float64)))
  assert result["loss"] == pytest.approx(skm.log_loss(labels, probs), rel=1e-4)


# -- regression ---------------------------------------------------------------------


def test_regression_loss_is_mse_and_metrics_match_sklearn():
  task = _task("regression", num_classes=None, model="linear_regression")
  x, y = _data("regression")
  params = _init(task, x, scale=1.0)
  batch = {"inputs": x, "labels": y}
  loss, sums = _loss_and_sums(task, params, batch)
  preds = _logits(task, params, x)[:, 0]
  labels = np.asarray(y, np.float64)
  np.testing.assert_allclose(loss, skm.mean_squared_error(labels, preds), rtol=1e-5)
  assert float(sums["count"]) == N

  result = task.metrics(_outputs(task, params, batch), np.asarray(y))
  assert result["loss"] == pytest.approx(skm.mean_squared_error(labels, preds), rel=1e-5)
  assert result["mse"] == pytest.approx(skm.mean_squared_error(labels, preds), rel=1e-5)
  assert result["rmse"] == pytest.approx(skm.root_mean_squared_error(labels, preds), rel=1e-5)
  assert result["mae"] == pytest.approx(skm.mean_absolute_error(labels, preds), rel=1e-5)
  assert result["r2"] == pytest.approx(skm.r2_score(labels, preds), rel=1e-5, abs=1e-6)


# -- the generic train step ---------------------------------------------------------


@pytest.mark.parametrize("l1", [0.0, 0.05])
def test_train_step_is_sgd_on_loss_plus_penalty(l1):
  lr, l2 = 0.5, 0.1
  config = _config("multiclass")
  config.optimizer.update(name="sgd", learning_rate=lr, l1=l1, l2=l2)
  task = _task("multiclass", config=config)
  x, y = _data("multiclass")
  params = _init(task, x, scale=1.0)

  def by_hand(p):
    logits = x @ p["dense"]["kernel"] + p["dense"]["bias"]
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1).mean()
    w = p["dense"]["kernel"]
    return nll + l1 * jnp.abs(w).sum() + 0.5 * l2 * jnp.square(w).sum()

  grads = jax.jit(jax.grad(by_hand))(params)
  expected = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)

  tx = make_optimizer(config.optimizer, config.schedule, total_steps=10)
  state = TrainState.create(apply_fn=task.model.apply, params=params, tx=tx)
  new_state, sums = jax.jit(task.train_step)(state, {"inputs": x, "labels": y}, RNG)
  for a, b in zip(jax.tree_util.tree_leaves(new_state.params),
                  jax.tree_util.tree_leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert int(new_state.step) == 1
  assert {"loss", "accuracy", "count", "grad_norm"} <= set(sums)
  # Sums are divided by 'count' downstream, so grad_norm is stored times the count.
  np.testing.assert_allclose(sums["grad_norm"] / sums["count"], optax.tree.norm(grads),
                             rtol=1e-5)


def test_train_step_carries_model_state_and_uses_dropout_rng():
  """MLP with dropout: the train step must be stochastic in rng, eval deterministic."""
  task = _task("multiclass", model="mlp", hidden_sizes=(16,), dropout_rate=0.5)
  x, y = _data("multiclass")
  params = _init(task, x, scale=1.0)
  batch = {"inputs": x, "labels": y}
  loss_fn = jax.jit(task.loss_and_sums)
  loss_a, _ = loss_fn(params, None, batch, jax.random.PRNGKey(1))
  loss_b, _ = loss_fn(params, None, batch, jax.random.PRNGKey(2))
  assert float(loss_a) != float(loss_b)
  out_a = _outputs(task, params, batch)["logits"]
  out_b = _outputs(task, params, batch)["logits"]
  np.testing.assert_array_equal(out_a, out_b)


# -- inputs and precision -----------------------------------------------------------


def test_uint8_inputs_are_scaled_to_unit_interval():
  images = jnp.array([[0, 51, 255]], dtype=jnp.uint8)
  scaled = prepare_inputs(images)
  assert scaled.dtype == jnp.float32
  np.testing.assert_allclose(scaled, [[0.0, 0.2, 1.0]], rtol=1e-6)
  floats = jnp.array([[0.0, 51.0, 255.0]])
  np.testing.assert_array_equal(prepare_inputs(floats), floats)  # floats are not rescaled
  assert prepare_inputs(images, jnp.bfloat16).dtype == jnp.bfloat16

  # The task applies the same scaling: uint8 bytes in == their [0, 1] floats in.
  task = _task("multiclass")
  raw = jnp.asarray(np.random.default_rng(0).integers(0, 256, (8, D)), jnp.uint8)
  params = _init(task, raw, scale=1.0)
  from_bytes, _ = task.apply(params, None, raw, None, train=False)
  from_floats, _ = task.apply(params, None, raw.astype(jnp.float32) / 255.0, None, train=False)
  np.testing.assert_allclose(from_bytes, from_floats, rtol=1e-6)


@pytest.mark.parametrize("task_name", ["multiclass", "binary", "regression"])
def test_bf16_policy_keeps_params_state_and_loss_in_float32(task_name):
  num_classes = {"multiclass": K, "binary": 2, "regression": None}[task_name]
  task = _task(task_name, num_classes=num_classes, model="mlp", dtype=jnp.bfloat16,
               hidden_sizes=(8,))
  x, y = _data(task_name)
  params = _init(task, x, scale=1.0)
  # The compute really is bf16, or this test would not test the policy.
  assert jax.eval_shape(task.model.apply, {"params": params}, x).dtype == jnp.bfloat16

  state = TrainState.create(apply_fn=task.model.apply, params=params, tx=optax.adam(1e-2))
  batch = {"inputs": x, "labels": y}
  new_state, sums = jax.jit(task.train_step)(state, batch, RNG)
  float_leaves = lambda tree: [l for l in jax.tree_util.tree_leaves(tree)
                               if jnp.issubdtype(l.dtype, jnp.floating)]
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(new_state.params))
  opt_leaves = float_leaves(new_state.opt_state)
  assert opt_leaves and all(l.dtype == jnp.float32 for l in opt_leaves)
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(params),
                                                   jax.tree_util.tree_leaves(new_state.params)))
  assert np.isfinite(float(sums["loss"])) and sums["loss"].dtype == jnp.float32
  # Dtypes only: eval_shape traces without compiling.
  loss, _ = jax.eval_shape(task.loss_and_sums, new_state.params, None, batch, RNG)
  assert loss.dtype == jnp.float32
  outputs = jax.eval_shape(task.outputs, new_state.params, None, batch)
  assert all(v.dtype == jnp.float32 for v in outputs.values())


# -- the metric-name contract -------------------------------------------------------


# A model for tasks the default linear model cannot serve: (name, fields).
TASK_MODELS = {"language_model": ("gpt", dict(num_layers=1, num_heads=1, width=8,
                                              vocab_size=K, block_size=D)),
               "rating": ("matrix_factorization", dict(num_users=K, num_items=K)),
               "implicit": ("neumf", dict(num_users=K, num_items=K, mlp_sizes=(8, 4)))}


# Tasks that need more than random ids to build are checked in their own files: 'gan' (a
# trained feature classifier: test_gan.py), 'distillation' (a teacher: test_compress.py),
# 'masked_lm' (a vocabulary with <mask>: test_bert.py), 'seq2seq' (a tokeniser to
# detokenise for BLEU: test_seq2seq.py).
OWN_CONTRACT_TESTS = ("gan", "distillation", "masked_lm", "seq2seq")


@pytest.mark.parametrize("task_name",
                         [n for n in TASKS.names() if n not in OWN_CONTRACT_TESTS])
def test_metric_names_are_returned_by_metrics(task_name):
  num_classes = {"multiclass": K, "binary": 2, "language_model": K}.get(task_name)
  model, fields = TASK_MODELS.get(task_name, ("linear", {}))
  task = _task(task_name, num_classes=num_classes, model=model, **fields)
  x, y = _data(task_name)
  outputs = _outputs(task, _init(task, x), {"inputs": x, "labels": y})
  result = task.metrics(outputs, np.asarray(y))
  names = task.metric_names()
  assert "loss" in names and set(names) <= set(result)
  assert task.default_metric in names and task.default_mode in ("min", "max")
  assert all(np.isfinite(result[n]) for n in names)
