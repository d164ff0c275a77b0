"""SLURM through submitit (`launch.submit`, `research.cluster`): submitit's local cluster runs
the very job SLURM would, so a real training run goes through the same path here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "JAX_PLATFORMS": "cpu"}


def test_submit_runs_launch_main_as_a_job_and_refuses_bad_input(tmp_path):
  workdir = tmp_path / "run"
  proc = subprocess.run(
      [sys.executable, "-m", "launch.submit", "--cluster=local", "--wait", "--",
       "--config=experiments/iris_softmax.py:tiny", f"--workdir={workdir}"],
      cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "submitted job" in proc.stdout and "Results" in proc.stdout
  assert json.loads((workdir / "result.json").read_text())["step"] == 20
  assert list((workdir / "slurm").glob("*_log.out"))  # the job's own log
  bad = subprocess.run(
      [sys.executable, "-m", "launch.submit", "--cluster=local", "--",
       "--config=experiments/iris_softmax.py:tiny", f"--workdir={tmp_path / 'bad'}",
       "--config.train.batch_sise=8"],
      cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
  assert bad.returncode == 2 and "batch_size" in bad.stderr
  assert not (tmp_path / "bad").exists()  # nothing queued, nothing written


def test_cluster_resources_and_missing_sbatch_are_named(tmp_path, monkeypatch):
  from research import cluster
  with pytest.raises(cluster.ClusterError, match="--nodes=2 needs SLURM"):
    cluster.executor(str(tmp_path), cluster="local", nodes=2)
  with pytest.raises(cluster.ClusterError, match="--timeout_min=0 must be >= 1"):
    cluster.executor(str(tmp_path), cluster="local", timeout_min=0)
  monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
  with pytest.raises(cluster.ClusterError, match="`sbatch` is not on PATH"):
    cluster.executor(str(tmp_path), cluster="slurm")


@pytest.mark.parametrize("args, needle", [
    (["--workdir=/tmp/x"], "no --config after `--`"),
    (["--config=experiments/iris_softmax.py:tiny"], "no --workdir after `--`"),
])
def test_submit_needs_config_and_workdir_after_the_separator(monkeypatch, capsys, args, needle):
  from launch import submit
  monkeypatch.setattr(submit, "_train_args", args)
  assert submit.main() == 2  # checked before any flag, import or job
  assert needle in capsys.readouterr().err
