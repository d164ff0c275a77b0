"""Sweeps: real sweeps of iris:tiny with 2 local workers, resume, failures, pruning, bad input.

The real sweeps run the launcher in-process (JAX is already loaded here) and its workers as
real subprocesses, a few trials each: grid (interrupted after 2 of its 4 trials, then
resumed), random (through the command line) and TPE; a grid point with a NaN loss fails
without stopping the sweep, and the median pruner prunes a clearly worse one. Bad input is
checked through the API, each time with nothing written, and once through the command
line for the exit code.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from launch import overrides
from research.errors import ConfigError, UserError
from research.sweep import definition as definition_lib, executors, run, space, study as study_lib

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "experiments/iris_softmax.py") + ":tiny"
ENV = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "JAX_PLATFORMS": "cpu"}

# A tiny experiment with its own sweep: iris:tiny (20 steps, evaluated at 10 and 20) over a
# grid of learning rates: two good ones, one so small that the median pruner stops it at
# step 10, and one that makes the loss NaN. Optuna's grid sampler visits the grid in an
# order shuffled by the seed; seed 5 keeps this order (numpy's RandomState is stable).
GRID_SEED = 5
GRID_EXPERIMENT = textwrap.dedent("""
    from experiments.iris_softmax import get_config as iris_config

    def get_config(arg=None):
      return iris_config("tiny")

    def get_sweep(arg=None):
      return {"metric": "validation/loss", "mode": "min", "sampler": "grid",
              "pruner": {"name": "median", "n_startup_trials": 1},
              "params": {"optimizer.learning_rate": {"type": "choice",
                                                     "values": [0.5, 1.0, 1e-5, 1e38]}}}
""")


@pytest.fixture(autouse=True)
def _cpu_env(monkeypatch):
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  monkeypatch.chdir(ROOT)


def trials(sweep_dir) -> list[optuna.trial.FrozenTrial]:
  return study_lib.load(str(sweep_dir)).get_trials(deepcopy=False)


def snapshot(path) -> dict[str, tuple[float, int]]:
  """mtime and size of every file under `path` (to show it was not touched)."""
  out = {}
  for root, _, files in os.walk(path):
    for name in files:
      stat = os.stat(os.path.join(root, name))
      out[os.path.join(root, name)] = (stat.st_mtime_ns, stat.st_size)
  return out


def assert_outputs(sweep_dir, params: list[str]) -> None:
  sweep_dir = Path(sweep_dir)
  assert (sweep_dir / "trials.md").read_text().count("| ") > 4
  with open(sweep_dir / "trials.csv") as f:
    rows = list(csv.DictReader(f))
  assert all(p in rows[0] for p in params)
  assert rows[0]["state"] == "COMPLETE"
  command = (sweep_dir / "best_command.txt").read_text().strip()
  args = shlex.split(command)
  assert args[:3] == ["python", "-m", "launch.main"]
  overrides.validate_flags(args[3:])  # every --config.KEY=VALUE is a field of the right type
  plots = {p.name for p in (sweep_dir / "plots").iterdir()}
  assert {"history.png", "learning_curves.png"} <= plots
  assert {f"objective_vs_{p}.png" for p in params} <= plots


# ---------------------------------------------------------------------------------------------
# Real sweeps.


def test_grid_sweep_resumes_prunes_and_survives_a_failing_trial(tmp_path):
  experiment = tmp_path / "iris_grid.py"
  experiment.write_text(GRID_EXPERIMENT)
  sweep_dir = tmp_path / "grid"
  # "Interrupted" after 2 of the grid's 4 points (one worker: with two, whichever good trial
  # finished first could get the other pruned, as the median pruner should)...
  first = run.run_sweep(str(experiment), str(sweep_dir), workers=1, num_trials=2,
                        seed=GRID_SEED)
  assert first["states"]["COMPLETE"] == 2
  assert sorted(t.params["optimizer.learning_rate"] for t in trials(sweep_dir)) == [0.5, 1.0]
  done = snapshot(sweep_dir / "trials")
  # ... and resumed by the same command: only the 2 remaining points run.
  second = run.run_sweep(str(experiment), str(sweep_dir), workers=2, seed=GRID_SEED)
  all_trials = trials(sweep_dir)
  assert len(all_trials) == 4, [t.params for t in all_trials]
  by_lr = {t.params["optimizer.learning_rate"]: t for t in all_trials}
  assert sorted(by_lr) == [1e-5, 0.5, 1.0, 1e38]  # each grid point exactly once
  after = snapshot(sweep_dir / "trials")
  assert all(after[path] == stamp for path, stamp in done.items())  # first trials untouched
  assert by_lr[0.5].state == by_lr[1.0].state == TrialState.COMPLETE
  pruned = by_lr[1e-5]
  assert pruned.state == TrialState.PRUNED and pruned.last_step == 10, pruned.user_attrs
  failed = by_lr[1e38]
  assert failed.state == TrialState.FAIL
  assert "NonFiniteLossError" in failed.user_attrs["error"]
  assert second["states"] == {"COMPLETE": 2, "PRUNED": 1, "FAIL": 1}
  table = (sweep_dir / "trials.md").read_text()
  assert "PRUNED" in table and "NonFiniteLossError" in table
  assert_outputs(sweep_dir, ["optimizer.learning_rate"])
  # Every trial shared one compilation cache: later trials hit it.
  assert os.listdir(sweep_dir / "jax_cache")
  assert sum(t.user_attrs["compile_cache_hits"] for t in all_trials) > 0


def test_random_sweep_from_the_command_line(tmp_path):
  sweep_dir = tmp_path / "random"
  proc = subprocess.run(
      [sys.executable, "-m", "launch.sweep", f"--config={TINY}", f"--sweep_dir={sweep_dir}",
       "--sampler=random", "--pruner=none", "--workers=2", "--num_trials=4",
       "--param=optimizer.learning_rate=loguniform:0.01:1.0",
       "--param=train.batch_size=choice:8,16", "--config.train.num_steps=10"],
      cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Best config" in proc.stdout and "launch.main" in proc.stdout
  done = trials(sweep_dir)
  assert [t.state for t in done] == [TrialState.COMPLETE] * 4
  assert {t.user_attrs["worker"] for t in done} == {"0", "1"}  # both workers took trials
  for label in ("0", "1"):  # the command line forks its workers instead of starting Pythons
    log = (sweep_dir / "logs" / f"worker_{label}.log").read_text()
    assert log.startswith(f"worker {label}: forked from the launcher"), log[:300]
  assert all(t.last_step == 10 for t in done)  # the fixed --config override applied
  assert_outputs(sweep_dir, ["optimizer.learning_rate", "train.batch_size"])
  assert "optimizer.name" not in done[0].params  # --param flags replace the module's space


def test_tpe_sweep_with_a_conditional_space(tmp_path):
  sweep_dir = tmp_path / "tpe"
  summary = run.run_sweep(
      TINY, str(sweep_dir), workers=2, num_trials=4, sampler="tpe", pruner="none",
      params=["penalty=switch:l1,l2", "optimizer.l1=loguniform:1e-4:1e-1@penalty=l1",
              "optimizer.l2=loguniform:1e-4:1e-1@penalty=l2"],
      config_overrides=[("train.num_steps", "10")])
  assert summary["states"]["COMPLETE"] == 4
  for t in trials(sweep_dir):
    penalty = t.params["penalty"]
    other = "optimizer.l2" if penalty == "l1" else "optimizer.l1"
    assert f"optimizer.{penalty}" in t.params and other not in t.params
    config = json.loads((sweep_dir / t.user_attrs["workdir"] / "config.json").read_text())
    assert config["optimizer"][penalty] == pytest.approx(t.params[f"optimizer.{penalty}"])
    assert config["optimizer"][other.split(".")[1]] == 0.0  # not sampled: the config's value


def test_the_slurm_executor_runs_the_same_workers_through_submitit(tmp_path):
  # submitit's 'local' cluster runs the very job a SLURM cluster would (no sbatch here).
  summary = run.run_sweep(TINY, str(tmp_path / "slurm"), executor="slurm", cluster="local",
                          workers=1, num_trials=1, config_overrides=[("train.num_steps", "10")])
  assert summary["states"]["COMPLETE"] == 1
  (trial,) = trials(tmp_path / "slurm")
  assert trial.user_attrs["worker"] == "0" and (tmp_path / "slurm" / "slurm").is_dir()


def test_pre_forked_workers_run_their_orders_or_leave_when_dismissed(tmp_path):
  # In a fresh Python (this test process runs JAX, where forking is refused, as below).
  script = textwrap.dedent(f"""
      import json, os
      from research.sweep import executors
      pool = executors.Prefork(3)
      idle = list(pool.idle)
      assert len(idle) == 3
      # Orders for a sweep dir that holds no study: the worker fails, naming the reason.
      worker = pool.take().start({str(tmp_path)!r}, "0", 1, None)
      worker.process.join(60)
      pool.close()  # the other two were never needed
      print(json.dumps({{"codes": [w.process.exitcode for w in idle],
                         "reason": worker.exit_reason()}}))
  """)
  proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=ENV, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["codes"] == [1, 0, 0]
  assert out["reason"].startswith("worker 0 exited with code 1") and "sweep.json" in out["reason"]
  assert "forked from the launcher" in (tmp_path / "logs" / "worker_0.log").read_text()


def test_no_fork_once_jax_runs():
  import jax
  jax.devices()  # a live backend has threads a fork would copy mid-flight
  assert not executors.can_fork()
  assert executors.Prefork(2).idle == []


# ---------------------------------------------------------------------------------------------
# Resume after an interruption; a killed worker.


def _definition(**kwargs) -> definition_lib.Definition:
  d, _ = definition_lib.build(TINY, params=["optimizer.learning_rate=loguniform:0.01:1.0"],
                              sampler="random", **kwargs)
  d.metric, d.mode = "validation/loss", "min"
  return d


def test_interrupted_trials_are_retried_in_their_own_workdir(tmp_path):
  sweep_dir = str(tmp_path / "s")
  study = study_lib.create(sweep_dir, _definition())
  finished = study.ask()
  finished.suggest_float("optimizer.learning_rate", 0.01, 1.0, log=True)
  study.tell(finished, 0.5)
  stopped = study.ask()
  stopped.suggest_float("optimizer.learning_rate", 0.01, 1.0, log=True)
  stopped.set_user_attr("workdir", "trials/0001")
  assert study_lib.used_budget(study) == 2
  assert study_lib.recover(study) == [1]  # the sweep died under trial 1
  assert study_lib.recover(study) == []  # enqueued once only
  assert study_lib.used_budget(study) == 1  # the interrupted trial no longer counts
  retry = study_lib.ask_within_budget(study, sweep_dir, num_trials=2)
  assert retry.user_attrs["retry_of"] == 1
  assert study_lib.trial_workdir(sweep_dir, retry) == os.path.join(sweep_dir, "trials/0001")
  assert retry.suggest_float("optimizer.learning_rate", 0.01, 1.0, log=True) == \
      study.trials[1].params["optimizer.learning_rate"]
  assert study_lib.ask_within_budget(study, sweep_dir, num_trials=2) is None  # budget spent


class _Dead:
  """A worker handle that has died (SIGKILL) while running its trial."""

  def __init__(self, label: str):
    self.label = label

  def exit_reason(self) -> str:
    return f"worker {self.label} was killed by SIGKILL"


class _Done(_Dead):

  def exit_reason(self) -> str:
    return ""


def test_a_killed_worker_fails_its_trial_and_is_replaced(tmp_path):
  sweep_dir = str(tmp_path / "s")
  study = study_lib.create(sweep_dir, _definition())
  started = []

  def start(slot: int, label: str):
    started.append(label)
    if label == "0":
      trial = study.ask()
      trial.set_user_attr("worker", label)
      return _Dead(label)
    return _Done(label)

  executors.supervise(study, num_trials=3, workers=1, start=start, progress=lambda: None)
  assert started == ["0", "0.1"]  # replaced under a new label
  (trial,) = study.trials
  assert trial.state == TrialState.FAIL
  assert "killed by SIGKILL" in trial.user_attrs["error"]


# ---------------------------------------------------------------------------------------------
# Bad input: one clear error, nothing written.


@pytest.mark.parametrize("param, needles", [
    ("optimizer.lerning_rate=loguniform:1e-4:1e-2", ["optimizer.lerning_rate",
                                                     "Did you mean 'optimizer.learning_rate'"]),
    ("optimizer.learning_rate=uniform:0.1:0.1", ["empty range"]),
    ("optimizer.learning_rate=uniform:0.5:0.1", ["inverted range", "low=0.5 > high=0.1"]),
    ("optimizer.learning_rate=loguniform:0:0.1", ["cannot include 0", "low=0"]),
    ("train.batch_size=uniform:8:32", ["samples floats", "'int'"]),
    ("train.batch_size=choice:8,big", ["'big' is not a int"]),
    ("optimizer.l1=loguniform:1e-4:1e-1@penalty=l1", ["'penalty'", "not a choice or switch"]),
    ("optimizer.learning_rate=between:1:2", ["expected NAME=TYPE:ARGS"]),
])
def test_bad_search_spaces_are_refused(tmp_path, param, needles):
  with pytest.raises(ConfigError) as e:
    run.plan(TINY, str(tmp_path / "s"), params=[param])
  for needle in needles:
    assert needle in str(e.value), str(e.value)
  assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("kwargs, needle", [
    ({"workers": 0}, "--workers=0"),
    ({"executor": "slurm"}, "sbatch"),
    ({"sampler": "grid"}, "grid sampler needs every parameter to be a choice"),
    ({"sampler": "tpee"}, "Did you mean 'tpe'"),
    ({"metric": "validation/acuracy"}, "Did you mean validation/accuracy"),
    ({"metric": "test/accuracy"}, "validation split only"),
    ({"num_trials": 0}, "at least 1 trial"),
])
def test_bad_options_are_refused(tmp_path, monkeypatch, kwargs, needle):
  monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
  with pytest.raises(UserError) as e:
    run.plan(TINY, str(tmp_path / "s"), **kwargs)
  assert needle in str(e.value), str(e.value)
  assert not (tmp_path / "s").exists()


def test_a_sweep_dir_holding_another_study_is_refused_untouched(tmp_path):
  sweep_dir = tmp_path / "s"
  plan = run.plan(TINY, str(sweep_dir))
  study_lib.create(str(sweep_dir), plan.definition)
  before = snapshot(sweep_dir)
  with pytest.raises(UserError) as e:
    run.run_sweep(TINY, str(sweep_dir), sampler="random", workers=2)
  assert "holds a different study" in str(e.value)
  assert "sampler.name: 'tpe' -> 'random'" in str(e.value)
  assert snapshot(sweep_dir) == before
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "notes.txt").write_text("mine")
  with pytest.raises(UserError, match="not a sweep dir"):
    run.plan(TINY, str(tmp_path / "other"))


def test_the_command_line_reports_bad_input_with_exit_code_2(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "launch.sweep", f"--config={TINY}", f"--sweep_dir={tmp_path / 's'}",
       "--workers=2", "--param=optimizer.learning_rate=loguniform:0:1"],
      cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "optimizer.learning_rate" in errors[0], proc.stderr
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------------------------------------
# Search spaces.


def test_command_line_parameters_parse_to_plain_specs():
  assert space.parse_flag("model.hidden_sizes=choice:(256,),(512,)") == (
      "model.hidden_sizes", {"type": "choice", "values": [(256,), (512,)]})
  assert space.parse_flag("optimizer.name=choice:adam,sgd")[1]["values"] == ["adam", "sgd"]
  assert space.parse_flag("train.num_steps=int:100:1000:100")[1] == {
      "type": "int", "low": 100, "high": 1000, "step": 100}
  assert space.parse_flag("optimizer.l1=loguniform:1e-5:0.1@penalty=l1,elastic_net")[1] == {
      "type": "loguniform", "low": 1e-5, "high": 0.1,
      "condition": {"penalty": ["l1", "elastic_net"]}}


def test_experiment_sweeps_validate_against_their_configs():
  for name in ("mnist_mlp", "breast_cancer_logreg", "iris_softmax"):
    definition, num_trials = definition_lib.build(str(ROOT / f"experiments/{name}.py"))
    assert num_trials >= 20 and definition.params, name
  bc, _ = definition_lib.build(str(ROOT / "experiments/breast_cancer_logreg.py"))
  values = {"penalty": "l1", "optimizer.l1": 1e-3}
  config = bc.trial_config(values)
  assert (config.optimizer.l1, config.optimizer.l2) == (1e-3, 0.0)  # the recipe's L2 is off
  mnist, _ = definition_lib.build(str(ROOT / "experiments/mnist_mlp.py"))
  config = mnist.trial_config({"model.hidden_sizes": [1000], "train.batch_size": 128})
  assert config.model.hidden_sizes == (1000,) and config.train.batch_size == 128
