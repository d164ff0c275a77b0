"""Fault tolerance: bit-exact resume after SIGKILL, SIGTERM preemption (exit 143), a corrupt
latest checkpoint falling back to the previous one, and a non-finite loss that keeps the last
good checkpoint. A file of its own so that it runs beside test_training.py (the suite
distributes whole files over its workers)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from launch.overrides import load_config
from research.errors import NonFiniteLossError
from research.training import loop
from test_training import ROOT, assert_trees_equal, params_of, read_jsonl, tiny_digits


# -- resume, preemption, corrupt checkpoints --------------------------------------------

RESUME_FLAGS = ["--config.train.num_steps=600", "--config.train.checkpoint_every_steps=100",
                "--config.train.eval_every_steps=200", "--config.train.log_every_steps=100",
                "--config.train.steps_per_dispatch=1"]


def _launch(workdir, *extra):
  cmd = [sys.executable, "-m", "launch.main",
         f"--config={os.path.join(ROOT, 'experiments/digits_cnn.py:tiny')}",
         f"--workdir={workdir}", *RESUME_FLAGS, *extra]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _finished_steps(workdir):
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def _interrupt(workdir, sig, after_step=200, timeout=120):
  """Starts a run, sends `sig` once a checkpoint at >= after_step exists."""
  proc = _launch(workdir)
  deadline = time.time() + timeout
  while time.time() < deadline:
    steps = _finished_steps(workdir)
    if steps and steps[-1] >= after_step:
      proc.send_signal(sig)
      break
    if proc.poll() is not None:
      break
    time.sleep(0.01)
  out, err = proc.communicate(timeout=timeout)
  return proc.returncode, err


def _resume(workdir):
  proc = _launch(workdir)
  out, err = proc.communicate(timeout=180)
  assert proc.returncode == 0, err[-2000:]
  return err


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("uninterrupted") / "run")
  _resume(workdir)
  config = _resume_config()
  return params_of(config, workdir)[0], workdir


def _resume_config():
  config = tiny_digits(num_steps=600, checkpoint_every_steps=100, eval_every_steps=200,
                       log_every_steps=100, steps_per_dispatch=1)
  return config


def test_sigkill_then_resume_is_bit_exact(tmp_path, uninterrupted):
  workdir = str(tmp_path / "killed")
  code, _ = _interrupt(workdir, signal.SIGKILL)
  assert code == -signal.SIGKILL, "the run finished before it could be killed"
  killed_at = _finished_steps(workdir)[-1]
  assert 200 <= killed_at < 600
  _resume(workdir)
  params, step = params_of(_resume_config(), workdir)
  assert step == 600
  assert_trees_equal(params, uninterrupted[0])
  # metrics.jsonl holds each (step, split) once, even though steps past the kill ran twice.
  records = [(r["step"], r["split"]) for r in read_jsonl(os.path.join(workdir, "metrics.jsonl"))]
  assert len(records) == len(set(records))
  assert records == [(r["step"], r["split"]) for r in
                     read_jsonl(os.path.join(uninterrupted[1], "metrics.jsonl"))]


def test_sigterm_saves_exits_143_and_resumes_bit_exact(tmp_path, uninterrupted):
  workdir = str(tmp_path / "preempted")
  code, err = _interrupt(workdir, signal.SIGTERM)
  assert code == 143, err[-2000:]
  assert "preempted" in err and "rerun the same command to resume" in err
  saved = _finished_steps(workdir)[-1]
  assert saved % 100 != 0 or saved >= 200  # a save at the signal, not only periodic ones
  _resume(workdir)
  assert_trees_equal(params_of(_resume_config(), workdir)[0], uninterrupted[0])


def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path, uninterrupted):
  workdir = str(tmp_path / "corrupt")
  code, _ = _interrupt(workdir, signal.SIGKILL, after_step=300)
  assert code == -signal.SIGKILL
  steps = _finished_steps(workdir)
  latest = os.path.join(workdir, "checkpoints", str(steps[-1]))
  for root, _, files in os.walk(latest):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\x00garbage")
  err = _resume(workdir)
  assert "unreadable" in err and str(steps[-1]) in err
  assert_trees_equal(params_of(_resume_config(), workdir)[0], uninterrupted[0])


def test_nonfinite_loss_names_the_step_and_keeps_last_good_checkpoint(tmp_path):
  config = load_config(os.path.join(ROOT, "experiments/diabetes_linreg.py:tiny"))
  config.optimizer.learning_rate = 3.0  # gradient descent diverges geometrically
  config.schedule.name = "constant"
  config.dataset.standardize = True
  config.train.num_steps = 400
  config.train.checkpoint_every_steps = 2
  config.train.eval_every_steps = 200
  config.train.log_every_steps = 200
  workdir = str(tmp_path / "nan")
  with pytest.raises(NonFiniteLossError, match=r"at step (\d+)") as info:
    loop.train_and_evaluate(config, workdir)
  bad_step = int(re.search(r"at step (\d+)", str(info.value)).group(1))
  saved = _finished_steps(workdir)
  assert saved and saved[-1] < bad_step
  params, step = params_of(config, workdir)
  assert step == saved[-1]
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(params))
