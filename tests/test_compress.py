"""Compression: magnitude pruning (optimizer), int8 quantisation (launch.quantize), distillation.

One tiny digits MLP teacher is trained once for the module; pruning, quantisation and
distillation runs reuse it. Numbers are checked against numpy references.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from launch.overrides import load_config
from research import models, tasks
from research.compress import qat, quantize as Q
from research.compress.workdir import quantize_workdir
from research.config import base_config
from research.errors import CheckpointError, ConfigError
from research.tasks.distillation import soft_kl
from research.training import loop, pruning, transfer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNEL = [re.compile("kernel")]


def digits_config(steps: int = 30) -> ml_collections.ConfigDict:
  config = base_config()
  config.dataset.name = "digits"
  config.model = ml_collections.ConfigDict(dict(name="mlp", hidden_sizes=(32,),
                                                activation="relu", dropout_rate=0.0))
  config.optimizer.learning_rate = 3e-3
  config.train.batch_size = 32
  config.train.num_steps = steps
  config.train.eval_every_steps = steps
  config.train.log_every_steps = steps
  config.train.steps_per_dispatch = 1  # one compiled step: compiling is most of a test
  return config


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> str:
  """A digits MLP trained for 60 steps (about 90% test accuracy)."""
  workdir = str(tmp_path_factory.mktemp("compress") / "teacher")
  loop.train_and_evaluate(digits_config(steps=60), workdir)
  return workdir


def tree(seed: int = 0) -> dict:
  rng = np.random.RandomState(seed)
  return {"dense1": {"kernel": jnp.asarray(rng.randn(12, 20), jnp.float32),
                     "bias": jnp.asarray(rng.randn(20), jnp.float32)},
          "head": {"kernel": jnp.asarray(rng.randn(20, 5) * 3, jnp.float32),
                   "bias": jnp.asarray(rng.randn(5), jnp.float32)}}


# -- pruning ------------------------------------------------------------------------------

@pytest.mark.parametrize("scope", ["global", "layer"])
def test_masks_have_exact_sparsity_and_keep_the_largest_weights(scope):
  params = tree()
  covered = pruning.prunable(params, KERNEL)
  assert covered == {"dense1": {"kernel": True, "bias": False},
                     "head": {"kernel": True, "bias": False}}
  masks = pruning.magnitude_masks(params, covered, jnp.float32(0.7), scope)
  assert masks["dense1"]["bias"].shape == ()
  kernels = [np.abs(np.asarray(params[k]["kernel"])) for k in ("dense1", "head")]
  kept = [np.asarray(masks[k]["kernel"]) for k in ("dense1", "head")]
  if scope == "layer":
    for w, m in zip(kernels, kept):
      assert (~m).sum() == round(0.7 * w.size)
      assert w[m].min() >= w[~m].max()
  else:
    all_w, all_m = np.concatenate([w.ravel() for w in kernels]), np.concatenate(
        [m.ravel() for m in kept])
    assert (~all_m).sum() == round(0.7 * all_w.size)
    assert all_w[all_m].min() >= all_w[~all_m].max()
    # Global ranking prunes the small-magnitude layer harder than the large one.
    assert (~kept[0]).mean() > (~kept[1]).mean()


def test_sparsity_schedule_is_zhu_gupta_cubic_ramp():
  schedule = pruning.sparsity_schedule(0.9, start=10, end=50)
  for step in (0, 9, 10, 20, 30, 49, 50, 80):
    progress = min(max((step - 10) / 40, 0.0), 1.0)
    expected = 0.9 * (1 - (1 - progress) ** 3) if step >= 10 else 0.0
    assert float(schedule(jnp.int32(step))) == pytest.approx(expected, abs=1e-6), step
  one_shot = pruning.sparsity_schedule(0.5, start=7, end=7)
  assert [float(one_shot(jnp.int32(s))) for s in (6, 7, 8)] == [0.0, 0.5, 0.5]


def test_pruned_weights_stay_zero_through_steps_and_biases_are_never_pruned():
  params = tree()
  tx = optax.chain(optax.adam(0.05), pruning.prune(0.8, "global", 0, 6, 2, KERNEL))
  state = tx.init(params)
  update = jax.jit(tx.update)
  zero_sets = []
  for step in range(12):
    grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 1.0 if step % 2 else -1.0), params)
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    zeros = np.concatenate([np.asarray(params[k]["kernel"]).ravel() == 0
                            for k in ("dense1", "head")])
    if zero_sets:
      assert not (zero_sets[-1] & ~zeros).any(), f"a pruned weight revived at step {step}"
    zero_sets.append(zeros)
  assert zero_sets[-1].sum() == round(0.8 * zero_sets[-1].size)
  assert all(np.all(np.asarray(params[k]["bias"]) != 0) for k in ("dense1", "head"))
  report = pruning.sparsity_report(params)
  assert report["sparsity"] == pytest.approx(round(0.8 * 340) / 340)
  assert set(report["sparsity_per_layer"]) == {"dense1/kernel", "head/kernel"}


def test_pruning_ramp_counts_batches_under_gradient_accumulation():
  """With k batches per update, a ramp ending at half of training ends at half of the batches
  (the pruning transform sees every batch, the schedule's `total_steps` counts updates)."""
  from research.training.optimizers import make_optimizer
  config = base_config()
  config.optimizer.update(name="sgd", learning_rate=0.01, accumulate_steps=2)
  config.optimizer.prune.update(sparsity=0.5, start=0.0, end=0.5, update_every=1)
  tx = make_optimizer(config.optimizer, config.schedule, 8)  # 8 updates = 16 batches
  params = tree()
  state = tx.init(params)
  update = jax.jit(tx.update)
  sparsity = []
  for _ in range(16):
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    sparsity.append(pruning.sparsity_report(params)["sparsity"])
  assert sparsity[3] < 0.45  # mid-ramp at batch 4 (the ramp ends at batch 8, not at 4)
  assert sparsity[7] == pytest.approx(0.5, abs=0.01) and sparsity[-1] == sparsity[7]


@pytest.mark.parametrize("field,value,message", [
    ("sparsity", 1.0, r"sparsity must be in \[0, 1\)"),
    ("sparsity", -0.1, r"sparsity must be in \[0, 1\)"),
    ("scope", "rows", "scope must be one of"),
    ("end", 0.05, "is before .start"),
    ("update_every", 0, "update_every must be >= 1"),
])
def test_bad_pruning_config_is_a_config_error(field, value, message):
  config = digits_config()
  config.optimizer.prune.sparsity = 0.5
  config.optimizer.prune.start = 0.1
  config.optimizer.prune[field] = value
  with pytest.raises(ConfigError, match=message):
    loop.build(config)


def test_pruning_run_reports_sparsity_and_zero_weights(tmp_path):
  config = digits_config(steps=20)
  config.optimizer.prune.sparsity = 0.75
  config.optimizer.prune.scope = "layer"
  config.optimizer.prune.update_every = 4
  result = loop.train_and_evaluate(config, str(tmp_path / "pruned"))
  assert result["sparsity"] == pytest.approx(0.75, abs=1e-3)
  assert result["sparsity_per_layer"] == {"dense0/kernel": pytest.approx(0.75, abs=1e-3),
                                          "head/kernel": pytest.approx(0.75, abs=1e-3)}
  _, state, _ = loop.restore_workdir(str(tmp_path / "pruned"))
  assert pruning.sparsity_report(state.params)["sparsity"] == result["sparsity"]


def test_pruning_cli_refuses_sparsity_one_and_writes_nothing(tmp_path):
  workdir = tmp_path / "bad"
  proc = subprocess.run(
      [sys.executable, "-m", "launch.main", "--config=experiments/digits_cnn.py",
       f"--workdir={workdir}", "--config.optimizer.prune.sparsity=1.0"],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "config.optimizer.prune.sparsity must be in [0, 1)" in proc.stderr
  assert not workdir.exists()


def test_pruned_experiments_variants_and_sweep():
  config = load_config(os.path.join(ROOT, "experiments/fashion_mnist_cnn_pruned.py:0.95,cpu"))
  assert config.optimizer.prune.sparsity == 0.95 and config.dataset.num_examples == 12000
  # '+' joins variants too, for `launch.reproduce --only`, whose items commas separate
  joined = load_config(os.path.join(ROOT, "experiments/fashion_mnist_cnn_pruned.py:0.95+cpu"))
  assert joined.to_dict() == config.to_dict()
  lstm = load_config(os.path.join(ROOT, "experiments/sst2_lstm_pruned.py:tiny"))
  assert lstm.optimizer.prune.sparsity == 0.9 and lstm.model.name == "rnn_classifier"
  from launch import overrides
  module = overrides.load_module(os.path.join(ROOT, "experiments/fashion_mnist_cnn_pruned.py"))
  grid = module.get_sweep()["params"]["optimizer.prune.sparsity"]["values"]
  assert grid == [0.0, 0.5, 0.8, 0.9, 0.95]


def test_sst2_lstm_kernels_are_prunable_and_its_embedding_is_not():
  config = load_config(os.path.join(ROOT, "experiments/sst2_lstm_pruned.py:tiny"))
  model = models.build_model(config.model, 1, jnp.float32, data_fields={"vocab_size": 50})
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32),
                                             train=False))["params"]
  covered = pruning.prunable(params, pruning.include_patterns(config.optimizer.prune))
  names = [p for p, c in zip(transfer.parameter_paths(params), jax.tree_util.tree_leaves(covered))
           if c]
  assert len(names) >= 2 and all(n.endswith("kernel") for n in names)
  assert not any("embed" in n for n in names)


# -- quantisation -------------------------------------------------------------------------

def test_per_channel_int8_scale_and_error_bound():
  rng = np.random.RandomState(0)
  w = rng.randn(3, 3, 4, 6).astype(np.float32) * np.arange(1, 7, dtype=np.float32)
  w[..., 2] = 0.0  # a dead channel
  q, scale = Q.quantize_array(w, axis=-1)
  assert q.dtype == np.int8 and scale.shape == (6,)
  np.testing.assert_allclose(scale, np.abs(w).reshape(-1, 6).max(0) / 127, rtol=1e-6)
  back = Q.dequantize_array(q, scale, axis=-1)
  assert np.all(np.abs(back - w) <= scale / 2 + 1e-7)
  assert np.all(back[..., 2] == 0) and np.abs(q).max() == 127


def test_quantize_params_round_trip_and_keeps_biases_float(tmp_path):
  params = tree()
  arrays = Q.quantize_params(params)
  assert arrays["dense1/kernel.q"].dtype == np.int8
  assert arrays["dense1/bias.float"].dtype == np.float32
  path = str(tmp_path / "q.npz")
  Q.save(path, arrays)
  back = Q.dequantize_params(Q.load(path), params)
  np.testing.assert_array_equal(back["head"]["bias"], params["head"]["bias"])
  scale = arrays["head/kernel.scale"]
  assert np.all(np.abs(back["head"]["kernel"] - params["head"]["kernel"]) <= scale / 2 + 1e-7)
  with pytest.raises(CheckpointError, match="no parameter 'extra/kernel'"):
    Q.dequantize_params(arrays, {**params, "extra": {"kernel": jnp.zeros((2, 2))}})
  (tmp_path / "bad.npz").write_bytes(b"not a zip")
  with pytest.raises(CheckpointError, match="not a readable .npz"):
    Q.load(str(tmp_path / "bad.npz"))


def test_quantized_workdir_keeps_accuracy_and_is_smaller(teacher):
  report = quantize_workdir(teacher)
  before, after = report["float32"]["test"], report["int8"]["test"]
  assert before["accuracy"] > 0.8
  assert abs(after["accuracy"] - before["accuracy"]) <= 0.01
  sizes = report["bytes"]
  # 2,368 kernel weights: 1 byte instead of 4, plus 42 scales and 42 biases in float32.
  assert sizes["float32_arrays"] == 4 * (2368 + 42)
  assert sizes["int8_arrays"] == 2368 + 4 * (42 + 42)
  assert sizes["int8_npz"] < 0.5 * sizes["float32_npz"]
  saved = json.load(open(os.path.join(teacher, "quantized", "quantization.json")))
  assert saved["int8"]["test"]["accuracy"] == after["accuracy"]
  assert os.path.getsize(os.path.join(teacher, "quantized", "params_int8.npz")) == \
      report["bytes"]["int8_npz"]


def test_quantize_workdir_errors_name_the_workdir(tmp_path):
  with pytest.raises(CheckpointError, match="does not exist"):
    quantize_workdir(str(tmp_path / "none"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(CheckpointError, match="has no config.json"):
    quantize_workdir(str(tmp_path / "empty"))


# -- quantisation-aware training ------------------------------------------------------------

@pytest.mark.parametrize("bits", [8, 4, 2])
def test_fake_quantization_is_what_quantize_stores_with_straight_through_gradients(bits):
  params = tree(seed=bits)
  rounded = qat.fake_quantize(params, bits)
  stored = Q.dequantize_params(Q.quantize_params(params, bits), params)
  for path in ("dense1/kernel", "head/kernel", "dense1/bias"):
    layer, name = path.split("/")
    np.testing.assert_allclose(rounded[layer][name], stored[layer][name], rtol=1e-6, atol=1e-7)
  levels = np.unique(np.asarray(Q.quantize_params(params, bits)["head/kernel.q"]))
  assert levels.min() >= -(2 ** (bits - 1) - 1) and levels.max() <= 2 ** (bits - 1) - 1
  np.testing.assert_array_equal(rounded["dense1"]["bias"], params["dense1"]["bias"])
  weights = jnp.asarray(np.random.RandomState(1).randn(12, 20), jnp.float32)
  grads = jax.grad(lambda p: jnp.sum(qat.fake_quantize(p, bits)["dense1"]["kernel"] * weights))(
      params)
  np.testing.assert_array_equal(grads["dense1"]["kernel"], weights)  # identity backward


def test_qat_run_evaluates_the_model_that_quantize_writes(tmp_path):
  config = digits_config(steps=40)
  config.qat.bits = 3
  workdir = str(tmp_path / "qat")
  result = loop.train_and_evaluate(config, workdir)
  report = quantize_workdir(workdir, bits=3)
  for split in ("validation", "test"):  # the run's own metrics are its 3-bit model's
    assert report["int3"][split]["accuracy"] == pytest.approx(result[split]["accuracy"],
                                                              abs=1e-6)
  assert result["test"]["accuracy"] > 0.6
  assert os.path.exists(os.path.join(workdir, "quantized", "params_int3.npz"))
  assert json.load(open(os.path.join(workdir, "quantized", "quantization_int3.json")))[
      "bits"] == 3


def test_qat_and_bits_bad_values_are_named(tmp_path, teacher):
  config = digits_config()
  config.qat.bits = 1
  with pytest.raises(ConfigError, match=r"config.qat.bits must be 0 \(off\) or an integer in "
                                        r"\[2, 8\], got 1"):
    loop.build(config)
  config.qat.bits, config.task.name = 4, "seq2seq"
  with pytest.raises(ConfigError, match="not available for task 'seq2seq'"):
    tasks.TASKS.get("seq2seq", "config.task.name")(config, None, None)
  with pytest.raises(ConfigError, match="--bits=9: use an integer from 2 to 8"):
    quantize_workdir(teacher, bits=9)


# -- distillation -------------------------------------------------------------------------

def numpy_distillation_loss(student: np.ndarray, teacher: np.ndarray, labels: np.ndarray,
                            temperature: float, alpha: float) -> float:
  def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))

  p_teacher = np.exp(log_softmax(teacher / temperature))
  kl = (p_teacher * (np.log(p_teacher) - log_softmax(student / temperature))).sum(-1)
  ce = -log_softmax(student)[np.arange(len(labels)), labels]
  return float(np.mean(alpha * temperature ** 2 * kl + (1 - alpha) * ce))


def distill_config(teacher: str, steps: int = 10) -> ml_collections.ConfigDict:
  config = digits_config(steps)
  config.model.hidden_sizes = (8,)
  config.task.name = "distillation"
  config.task.teacher_workdir = teacher
  config.task.teacher_checkpoint = "latest"
  config.task.temperature = 3.0
  config.task.alpha = 0.7
  return config


def test_soft_kl_matches_numpy():
  rng = np.random.RandomState(1)
  s, t = rng.randn(6, 5).astype(np.float32), rng.randn(6, 5).astype(np.float32) * 2
  labels = np.zeros(6, np.int64)
  expected = numpy_distillation_loss(s, t, labels, 2.0, 1.0) / 4.0
  assert float(soft_kl(s, t, 2.0).mean()) == pytest.approx(expected, rel=1e-5)


def test_distilled_student_trains_and_its_loss_matches_numpy(teacher, tmp_path):
  workdir = str(tmp_path / "student")
  result = loop.train_and_evaluate(distill_config(teacher, steps=10), workdir)
  assert result["step"] == 10 and 0 <= result["test"]["accuracy"] <= 1
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  train = [r for r in records if r["split"] == "train"][-1]
  assert train["loss"] == pytest.approx(0.7 * 9 * train["soft_kl"] + 0.3 * train["hard_loss"],
                                        rel=1e-4)
  assert 0 <= train["teacher_agreement"] <= 1

  # The checkpoint holds the teacher's trained weights beside the student's.
  exp, state, _ = loop.restore_workdir(workdir)
  assert set(exp.task.metric_names()) <= set(result["test"])
  _, teacher_state, _ = loop.restore_workdir(teacher)
  np.testing.assert_array_equal(state.teacher["params"]["head"]["kernel"],
                                teacher_state.params["head"]["kernel"])
  split = exp.dataset.splits["train"]
  batch = {"inputs": jnp.asarray(split.inputs[:16]), "labels": jnp.asarray(split.labels[:16]),
           "index": jnp.arange(16, dtype=jnp.int32)}
  teacher_logits = exp.task.teacher.logits(state.teacher, batch["inputs"])
  loss, (sums, _) = exp.task.loss_and_sums(
      state.params, state.model_state, dict(batch, teacher_logits=teacher_logits), None)
  student_logits = exp.task.apply(state.params, state.model_state, batch["inputs"], None,
                                  train=False)[0]
  expected = numpy_distillation_loss(np.asarray(student_logits), np.asarray(teacher_logits),
                                     np.asarray(batch["labels"]), 3.0, 0.7)
  assert float(loss) == pytest.approx(expected, rel=1e-5)
  assert float(sums["loss"]) == pytest.approx(16 * expected, rel=1e-5)
  # The compiled step takes the teacher (hidden layer 64x32; the student's is 64x8) as an
  # input, not as constants baked into the program.
  hlo = jax.jit(exp.task.train_step).lower(state, batch, jax.random.key(0)).as_text()
  assert "tensor<64x32xf32>" in hlo
  assert not any("constant" in line and "64x32" in line for line in hlo.splitlines())


def test_teacher_with_other_output_size_is_a_config_error(tmp_path):
  other = digits_config(steps=1)
  other.dataset.name = "synthetic_classification"
  other.dataset.num_features = 64  # digits' input width, but 2 classes
  teacher_dir = str(tmp_path / "binary_teacher")
  loop.train_and_evaluate(other, teacher_dir)
  with pytest.raises(ConfigError, match="teacher outputs 2 classes but the student's dataset "
                                        "'digits' has 10"):
    loop.build(distill_config(teacher_dir))


def test_missing_teacher_is_a_checkpoint_error(tmp_path):
  with pytest.raises(CheckpointError, match="does not exist"):
    loop.build(distill_config(str(tmp_path / "nowhere")))
  with pytest.raises(ConfigError, match="teacher_workdir is empty"):
    loop.build(distill_config(""))


def test_distill_experiment_variants_share_one_budget():
  config = load_config(os.path.join(ROOT, "experiments/fashion_mnist_distill.py:tiny"))
  assert config.task.name == "distillation" and config.train.num_steps == 20
  for student in ("", "mlp"):
    distilled = load_config(os.path.join(ROOT, f"experiments/fashion_mnist_distill.py:{student}"))
    alone = load_config(os.path.join(ROOT, "experiments/fashion_mnist_distill.py:"
                                     + ",".join(["alone"] + [student] * bool(student))))
    assert distilled.task.name == "distillation" and alone.task.name == "multiclass"
    for field in ("model", "optimizer", "schedule", "train", "dataset"):  # equal budget
      assert alone[field].to_dict() == distilled[field].to_dict(), (student, field)
