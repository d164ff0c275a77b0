"""Ensembles of trained runs: averaged probabilities, scored like a single run."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss

from launch.overrides import load_config
from research.errors import ConfigError
from research.training import batching, loop
from research.training.ensemble import evaluate_ensemble

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Two digits CNNs that differ only in their seed."""
  workdirs = []
  for seed in (0, 1):
    config = load_config(os.path.join(ROOT, "experiments", "digits_cnn.py:tiny"))
    config.seed = seed
    workdir = str(tmp_path_factory.mktemp(f"seed{seed}"))
    loop.train_and_evaluate(config, workdir, test=False)
    workdirs.append(workdir)
  return workdirs


def test_ensemble_averages_member_probabilities(runs):
  result = evaluate_ensemble(runs, "test", best=False)
  probs = []
  for workdir in runs:
    exp, state, _ = loop.restore_workdir(workdir)
    split = exp.dataset.splits["test"]
    evaluator = loop.Evaluator(exp, {"test": batching.put_split(split, exp.mesh)})
    probs.append(np.asarray(jax.nn.softmax(evaluator.outputs(state, "test")["logits"])))
  labels = split.labels
  mean = np.mean(probs, axis=0)
  assert result["ensemble"]["accuracy"] == pytest.approx(accuracy_score(labels, mean.argmax(1)))
  assert result["ensemble"]["loss"] == pytest.approx(log_loss(labels, mean, labels=range(10)),
                                                     rel=1e-4)
  for member, p in zip(result["members"], probs):
    assert member["metrics"]["accuracy"] == pytest.approx(accuracy_score(labels, p.argmax(1)))


def test_ensemble_refuses_members_on_other_data(runs, tmp_path):
  config = load_config(os.path.join(ROOT, "experiments", "digits_cnn.py:tiny"))
  config.dataset.split_seed = 7
  loop.train_and_evaluate(config, str(tmp_path / "other"), test=False)
  with pytest.raises(ConfigError, match=r"trained on other data .*split_seed"):
    evaluate_ensemble([runs[0], str(tmp_path / "other")], best=False)
  with pytest.raises(ConfigError, match=r"at least 2 workdirs"):
    evaluate_ensemble(runs[:1])


def test_ensemble_command_prints_the_table_and_rejects_bad_workdirs(runs, tmp_path):
  out = tmp_path / "ensemble.json"
  proc = subprocess.run([sys.executable, "-m", "launch.ensemble", f"--workdirs={','.join(runs)}",
                         "--nobest", f"--output={out}"], cwd=ROOT, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr
  assert "ensemble of 2" in proc.stdout and out.exists()
  proc = subprocess.run([sys.executable, "-m", "launch.ensemble",
                         f"--workdirs={runs[0]},{tmp_path / 'missing'}"], cwd=ROOT,
                        capture_output=True, text=True)
  assert proc.returncode == 2
  assert proc.stderr.count("error:") == 1 and "does not exist" in proc.stderr
