"""The training core: dispatch equivalence, multi-device equality, rerunning a finished run,
early stopping, and the outputs (resume and failures: test_resume.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from launch.overrides import load_config
from research.training import batching, loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# An MLP with dropout compiles in a fraction of the CNN's time: used where a test trains
# several times and what matters is the step machinery, not the convolution.
MLP_MODEL = {"name": "mlp", "hidden_sizes": (64,), "dropout_rate": 0.1}


def tiny_digits(mlp: bool = False, **train):
  config = load_config(os.path.join(ROOT, "experiments/digits_cnn.py:tiny"))
  if mlp:
    config.model = ml_collections.ConfigDict(MLP_MODEL)
  for key, value in train.items():
    config.train[key] = value
  return config


def params_of(config, workdir, best=False):
  _, state, step = loop.restore_state(config, workdir, best=best)
  return jax.device_get(state.params), step


def assert_trees_equal(a, b):
  leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


# -- data order ------------------------------------------------------------------------

def test_epoch_order_is_a_pure_function_of_seed_and_step():
  a, b = batching.EpochOrder(100, 10, seed=3), batching.EpochOrder(100, 10, seed=3)
  np.testing.assert_array_equal(a.block(7, 5), b.block(7, 5))
  np.testing.assert_array_equal(a.indices(12), b.block(12, 1)[0])
  epoch0 = np.concatenate([a.indices(s) for s in range(10)])
  assert sorted(epoch0) == list(range(100))  # a permutation: every example once per epoch
  assert not np.array_equal(a.indices(0), a.indices(10))  # reshuffled each epoch
  assert not np.array_equal(a.indices(0), batching.EpochOrder(100, 10, seed=4).indices(0))


def test_eval_blocks_cover_each_example_once():
  indices, mask = batching.eval_blocks(23, 8)
  assert indices.shape == (3, 8)
  assert sorted(indices[mask].tolist()) == list(range(23))


# -- the compiled step -----------------------------------------------------------------

def test_train_logs_are_written_one_interval_late_but_all_in_order(tmp_path, monkeypatch):
  """The host never waits at a log boundary: interval i's record is written at i + 1."""
  written_at = {}
  flush = loop._Run.flush_train_log  # pylint: disable=protected-access

  def spy(run):
    if run.pending_log is not None:
      written_at[run.pending_log[0]] = run.step
    flush(run)

  monkeypatch.setattr(loop._Run, "flush_train_log", spy)  # pylint: disable=protected-access
  config = tiny_digits(mlp=True, steps_per_dispatch=1, log_every_steps=2, eval_every_steps=12,
                       checkpoint_every_steps=12)
  config.train.num_steps = 12
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config, workdir, test=False)
  # Steps 2..10 are written two steps later; 12 is written before its evaluation.
  assert written_at == {2: 4, 4: 6, 6: 8, 8: 10, 10: 12, 12: 12}
  records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  assert [(r["step"], r["split"]) for r in records] == (
      [(s, "train") for s in range(2, 13, 2)] + [(12, "validation")])
  assert all(np.isfinite(r["loss"]) and r["steps_per_s"] > 0 for r in records[:6])


def test_several_steps_per_dispatch_equal_one_step_per_dispatch(tmp_path):
  one = tiny_digits(mlp=True, steps_per_dispatch=1)
  four = tiny_digits(mlp=True, steps_per_dispatch=4)
  r1 = loop.train_and_evaluate(one, str(tmp_path / "one"))
  r4 = loop.train_and_evaluate(four, str(tmp_path / "four"))
  p1, s1 = params_of(one, str(tmp_path / "one"))
  p4, s4 = params_of(four, str(tmp_path / "four"))
  assert s1 == s4 == 24
  assert_trees_equal(p1, p4)
  assert r1["test"]["accuracy"] == r4["test"]["accuracy"]


_MULTI_DEVICE_SCRIPT = r"""
import json, sys
import jax, ml_collections, numpy as np
from launch.overrides import load_config
from research.training import loop
config = load_config(sys.argv[1])
config.model = ml_collections.ConfigDict(json.loads(sys.argv[4]))
config.train.batch_size = 32
config.train.steps_per_dispatch = 2
result = loop.train_and_evaluate(config, sys.argv[2])
_, state, _ = loop.restore_state(config, sys.argv[2])
leaves = [np.asarray(x).tolist() for x in jax.tree_util.tree_leaves(jax.device_get(state.params))]
json.dump({"devices": jax.device_count(), "leaves": leaves,
           "accuracy": result["test"]["accuracy"]}, open(sys.argv[3], "w"))
"""


def _run_on_devices(n, tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
  out = tmp_path / f"params_{n}.json"
  subprocess.run([sys.executable, "-c", _MULTI_DEVICE_SCRIPT,
                  os.path.join(ROOT, "experiments/digits_cnn.py:tiny"),
                  str(tmp_path / f"work_{n}"), str(out), json.dumps(MLP_MODEL)], cwd=ROOT,
                 env=env, check=True,
                 capture_output=True)
  return json.loads(out.read_text())


def test_eight_simulated_devices_match_one(tmp_path):
  one, eight = _run_on_devices(1, tmp_path), _run_on_devices(8, tmp_path)
  assert (one["devices"], eight["devices"]) == (1, 8)
  for a, b in zip(one["leaves"], eight["leaves"]):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5)
  assert abs(one["accuracy"] - eight["accuracy"]) <= 0.01


# -- rerunning ------------------------------------------------------------------------

def test_rerunning_a_finished_run_does_not_retrain(tmp_path):
  config = tiny_digits()
  workdir = str(tmp_path / "run")
  first = loop.train_and_evaluate(config, workdir)
  records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  second = loop.train_and_evaluate(config, workdir)
  assert second == json.loads(json.dumps(first))
  assert read_jsonl(os.path.join(workdir, "metrics.jsonl")) == records


# -- failures and stopping -------------------------------------------------------------

def test_early_stopping_stops_and_tests_the_best_params(tmp_path):
  config = load_config(os.path.join(ROOT, "experiments/iris_softmax.py:tiny"))
  config.train.num_steps = 200
  config.train.eval_every_steps = 5
  config.train.log_every_steps = 5
  config.train.early_stopping_patience = 2
  config.train.early_stopping_min_delta = 10.0  # nothing counts as an improvement
  workdir = str(tmp_path / "early")
  result = loop.train_and_evaluate(config, workdir)
  assert result["stopped_early"] and result["params"] == "best"
  assert result["step"] == 15  # best at 5, no improvement at 10 and 15
  assert result["best_step"] == 5
  best, _ = params_of(config, workdir, best=True)
  _, state, _ = loop.restore_state(config, workdir, best=True)
  assert int(state.step) == 5


# -- outputs ---------------------------------------------------------------------------

def test_workdir_outputs_are_readable(tmp_path):
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  config = tiny_digits()
  workdir = str(tmp_path / "run")
  result = loop.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "result.json")) as f:
    assert json.load(f)["test"]["accuracy"] == pytest.approx(result["test"]["accuracy"])
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["model"]["name"] == "small_cnn"
  records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  train = [r for r in records if r["split"] == "train"]
  assert [r["step"] for r in train] == [8, 16, 24]
  assert {"loss", "accuracy", "learning_rate", "steps_per_s", "examples_per_s"} <= set(train[0])
  assert train[-1]["loss"] < train[0]["loss"]
  events = EventAccumulator(os.path.join(workdir, "tensorboard"))
  events.Reload()
  losses = [e.value for e in events.Scalars("train/loss")]
  assert losses == pytest.approx([r["loss"] for r in train])
  assert "validation/accuracy" in events.Tags()["scalars"]
  assert os.path.isdir(os.path.join(workdir, "checkpoints_best"))


def test_workdir_config_compare_tolerates_schema_growth_at_defaults():
  from research.config import base_config
  from research.training.workdir import config_differences, config_to_dict
  new = config_to_dict(base_config())
  old = json.loads(json.dumps(new))
  del old["dataset"]["split_seed"]  # a field the schema gained after the run: at its default
  assert config_differences(old, new) == []
  new["dataset"]["split_seed"] = 3  # ... but not at its default: a real difference
  assert config_differences(old, new) == ["config.dataset.split_seed: '<absent>' -> 3"]
  old["model"] = {"name": "mlp", "width": 4}  # not a schema field: absent means different
  new["model"] = {"name": "mlp"}
  assert "config.model.width: 4 -> '<absent>'" in config_differences(old, new)


def test_how_a_run_executes_is_not_a_config_difference():
  from research.config import base_config
  from research.training.workdir import config_differences, config_to_dict
  old = config_to_dict(base_config())
  new = json.loads(json.dumps(old))
  new["train"]["steps_per_dispatch"] = 8  # same numbers (tested above), faster
  new["mesh"]["data"] = 2
  assert config_differences(old, new) == []
  new["train"]["batch_size"] = 7
  assert config_differences(old, new) == [
      f"config.train.batch_size: {old['train']['batch_size']!r} -> 7"]


def test_a_workdir_being_trained_is_refused_to_a_second_run(tmp_path):
  """The same workdir trained twice at once would interleave checkpoints: refused, naming
  the PID that holds it; free again once that run ends."""
  from research.errors import WorkdirError
  from research.training import workdir as workdir_lib
  config = tiny_digits(mlp=True, num_steps=2, eval_every_steps=2, log_every_steps=2)
  with workdir_lib.WorkdirLock(str(tmp_path)):
    with pytest.raises(WorkdirError, match=f"another process \\(pid {os.getpid()}\\)"):
      loop.train_and_evaluate(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "config.json")  # the refused run wrote nothing
  result = loop.train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 2
