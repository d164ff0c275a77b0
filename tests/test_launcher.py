"""End-to-end tests of `python -m launch.main`, each a real subprocess.

The launcher's promise (DESIGN.md, "Errors") is about what a user sees in a terminal: a bad
input ends in exit code 2 and one `error:` line naming the input and the fix, with no
traceback and an untouched workdir. Only a subprocess shows all of that (flag parsing, exit
codes, what reaches stderr), so these tests run the real command. Each run costs seconds
(JAX import, compilation), so one successful run is shared through a module-scoped fixture
and copied by each test that changes it, and the independent bad-input runs are started
together in the background when the module starts.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = "experiments/iris_softmax.py:tiny"      # trains in seconds: used for every real run
DIGITS = "experiments/digits_cnn.py:tiny"      # for model/optimizer names with close matches
FASHION = "experiments/fashion_mnist_mlp.py:tiny"
EXIT_BAD_INPUT = 2

# One CPU device as a user's shell would have: a forced device count from another test
# module's environment must not change batch-divisibility checks here.
ENV = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "JAX_PLATFORMS": "cpu"}


# ---------------------------------------------------------------------------------------------
# Helpers.


def launch(*args: str) -> subprocess.CompletedProcess:
  """Runs `python -m launch.main ARGS` from the repository root, as a user would."""
  return subprocess.run([sys.executable, "-m", "launch.main", *args], cwd=ROOT, env=ENV,
                        capture_output=True, text=True, timeout=300)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
  """Checks the bad-input contract and returns the error message.

  Exit code 2, no traceback, exactly one line starting with `error:` (a multi-line message
  continues on indented lines), and every needle (the input and the fix) in that message.
  """
  assert proc.returncode == EXIT_BAD_INPUT, (
      f"exit code {proc.returncode}, expected {EXIT_BAD_INPUT}\nstderr:\n{proc.stderr[-4000:]}")
  assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
  lines = proc.stderr.splitlines()
  starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
  assert len(starts) == 1, f"expected one `error:` line in stderr:\n{proc.stderr[-4000:]}"
  block = [lines[starts[0]]]
  for line in lines[starts[0] + 1:]:
    if not line.startswith(" "):
      break
    block.append(line)
  message = "\n".join(block)
  for needle in needles:
    assert needle in message, f"{needle!r} is not in the error message:\n{message}"
  return message


def assert_success(proc: subprocess.CompletedProcess) -> None:
  assert proc.returncode == 0, f"exit code {proc.returncode}\nstderr:\n{proc.stderr[-4000:]}"
  assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
  assert not any(line.startswith("error:") for line in proc.stderr.splitlines()), proc.stderr


def snapshot(directory: Path) -> dict[str, tuple[int, int, str] | str]:
  """Every directory and file under `directory`, files with size, mtime and content hash."""
  state: dict[str, tuple[int, int, str] | str] = {}
  for root, dirs, files in os.walk(directory):
    for name in dirs:
      state[os.path.relpath(os.path.join(root, name), directory) + "/"] = "dir"
    for name in files:
      path = os.path.join(root, name)
      stat = os.stat(path)
      digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
      state[os.path.relpath(path, directory)] = (stat.st_size, stat.st_mtime_ns, digest)
  return state


def records(workdir: Path, split: str) -> list[dict]:
  with open(workdir / "metrics.jsonl") as f:
    return [r for r in map(json.loads, f) if r["split"] == split]


def checkpoint_steps(workdir: Path) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def write_idx(path: Path, array: np.ndarray, cut_bytes: int = 0) -> None:
  """A gzip IDX file of uint8 `array`; `cut_bytes` drops that many bytes off its end."""
  array = np.asarray(array, dtype=np.uint8)
  payload = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
  compressed = gzip.compress(payload + array.tobytes())
  path.write_bytes(compressed[:len(compressed) - cut_bytes])


def write_fake_fashion(directory: Path) -> Path:
  """The four upstream Fashion-MNIST IDX files, with 100 train and 20 test examples."""
  directory.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  for prefix, n in (("train", 100), ("t10k", 20)):
    write_idx(directory / f"{prefix}-images-idx3-ubyte.gz",
              rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
  return directory


# ---------------------------------------------------------------------------------------------
# A successful run, shared.


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
  """One finished tiny run; tests that change a workdir copy it first."""
  workdir = tmp_path_factory.mktemp("trained") / "run"
  proc = launch(f"--config={TINY}", f"--workdir={workdir}")
  assert_success(proc)
  return workdir, proc


def copy_run(trained: tuple[Path, subprocess.CompletedProcess], tmp_path: Path) -> Path:
  """A private copy of the shared run (copytree keeps mtimes, so snapshots compare)."""
  return Path(shutil.copytree(trained[0], tmp_path / "run"))


def test_list_shows_every_experiment_with_its_reference():
  proc = launch("--list")
  assert_success(proc)
  rows = {line.split("|")[1].strip(): line for line in proc.stdout.splitlines()
          if line.startswith("|")}
  names = sorted(f[:-3] for f in os.listdir(ROOT / "experiments")
                 if f.endswith(".py") and not f.startswith("_"))
  assert names and set(names) <= set(rows), f"missing from --list: {set(names) - set(rows)}"
  assert not any(name.startswith("_") for name in rows), "helper modules listed as experiments"
  with_reference = 0
  for name in names:
    reference = getattr(importlib.import_module(f"experiments.{name}"), "REFERENCE", None)
    if reference:
      with_reference += 1
      assert reference["metric"] in rows[name] and str(reference["value"]) in rows[name], (
          f"{name}: reference {reference} not shown in {rows[name]!r}")
  assert with_reference, "no experiment declares REFERENCE: nothing was checked"


def test_successful_run_prints_results_and_fills_the_workdir(trained):
  workdir, proc = trained
  cells = lambda line: [c.strip() for c in line.split("|")]
  lines = proc.stdout.splitlines()
  header = cells(next(line for line in lines if line.startswith("| split")))
  test_row = cells(next(line for line in lines if line.startswith("| test")))
  accuracy = float(test_row[header.index("accuracy")])
  assert 0.0 <= accuracy <= 1.0
  for name in ("config.json", "metrics.jsonl", "result.json"):
    assert (workdir / name).is_file(), name
  assert any((workdir / "tensorboard").iterdir()), "no TensorBoard event file"
  num_steps = json.loads((workdir / "config.json").read_text())["train"]["num_steps"]
  assert checkpoint_steps(workdir)[-1] == num_steps
  result = json.loads((workdir / "result.json").read_text())
  assert result["step"] == num_steps
  assert result["test"]["accuracy"] == pytest.approx(accuracy, abs=1e-4)


def test_rerunning_the_same_command_does_not_retrain(trained, tmp_path):
  workdir = copy_run(trained, tmp_path)
  train_before = records(workdir, "train")
  checkpoints_before = checkpoint_steps(workdir)
  proc = launch(f"--config={TINY}", f"--workdir={workdir}")
  assert_success(proc)
  assert "| test" in proc.stdout
  assert records(workdir, "train") == train_before, "the rerun trained again"
  assert checkpoint_steps(workdir) == checkpoints_before
  num_steps = json.loads((workdir / "config.json").read_text())["train"]["num_steps"]
  assert json.loads((workdir / "result.json").read_text())["step"] == num_steps


# ---------------------------------------------------------------------------------------------
# Bad inputs refused before the workdir exists: started together in the background.

# id -> (arguments besides --workdir, what the error message must contain: input and fix).
CONFIG_CASES: dict[str, tuple[list[str], list[str]]] = {
    "unknown-experiment-file": (
        ["--config=experiments/digts_cnn.py:tiny"],
        ["experiments/digts_cnn.py", "Did you mean experiments/digits_cnn.py?"]),
    "unknown-key": (
        [f"--config={DIGITS}", "--config.train.batch_sise=3"],
        ["train.batch_sise", "Did you mean --config.train.batch_size?"]),
    "wrong-type": (
        [f"--config={DIGITS}", "--config.train.batch_size=abc"],
        ["--config.train.batch_size='abc'", "type int"]),
    "batch-size-zero": (
        [f"--config={TINY}", "--config.train.batch_size=0"],
        ["config.train.batch_size must be > 0", "got 0"]),
    "negative-learning-rate": (
        [f"--config={TINY}", "--config.optimizer.learning_rate=-0.1"],
        ["config.optimizer.learning_rate must be > 0", "got -0.1"]),
    "unknown-model": (
        [f"--config={DIGITS}", "--config.model.name=smal_cnn"],
        ["'smal_cnn'", "model.name", "Did you mean 'small_cnn'?"]),
    "unknown-dataset": (
        [f"--config={DIGITS}", "--config.dataset.name=digts"],
        ["'digts'", "dataset.name", "Did you mean 'digits'?"]),
    "unknown-optimizer": (
        [f"--config={DIGITS}", "--config.optimizer.name=adamw2"],
        ["'adamw2'", "optimizer.name", "Did you mean 'adamw'?"]),
    "unknown-schedule": (
        [f"--config={DIGITS}", "--config.schedule.name=cosin"],
        ["'cosin'", "schedule.name", "Did you mean 'cosine'?"]),
    "batch-larger-than-dataset": (
        [f"--config={TINY}", "--config.train.batch_size=100000"],
        ["config.train.batch_size=100000", "larger than the train split", "use at most"]),
    "unknown-variant": (
        ["--config=experiments/fashion_mnist_mlp.py:tny"],
        ["--config=experiments/fashion_mnist_mlp.py:tny", "use 'tiny'"]),
    "unknown-flag": (
        [f"--config={TINY}", "--modee=evaluate"],
        ["'modee'", "Did you mean: mode"]),
}


def _no_dir(data_dir: Path) -> tuple[Path, list[str]]:
  missing = data_dir / "no_such_dir"
  return missing, [str(missing), "does not exist", "dataset.data_dir", "To get the files"]


def _missing_file(data_dir: Path) -> tuple[Path, list[str]]:
  write_fake_fashion(data_dir)
  (data_dir / "t10k-labels-idx1-ubyte.gz").unlink()
  return data_dir, [str(data_dir), "lacks t10k-labels-idx1-ubyte.gz", "To get the files"]


def _truncated(data_dir: Path) -> tuple[Path, list[str]]:
  write_fake_fashion(data_dir)
  path = data_dir / "train-images-idx3-ubyte.gz"
  write_idx(path, np.zeros((100, 28, 28)) + np.arange(28), cut_bytes=40)
  return data_dir, [str(path), "is truncated", "re-download it"]


def _not_gzip(data_dir: Path) -> tuple[Path, list[str]]:
  write_fake_fashion(data_dir)
  path = data_dir / "train-labels-idx1-ubyte.gz"
  path.write_bytes(b"<html>404 Not Found</html>")
  return data_dir, [str(path), "not a readable gzip file", "re-download it"]


def _labels_out_of_range(data_dir: Path) -> tuple[Path, list[str]]:
  write_fake_fashion(data_dir)
  path = data_dir / "train-labels-idx1-ubyte.gz"
  write_idx(path, np.array([3] * 97 + [10, 10, 255]))
  return data_dir, [str(path), "3 of 100 labels are outside [0, 10)", "10, 255", "re-download it"]


# id -> writes a damaged fake Fashion-MNIST under the given directory; returns the data_dir
# to pass and what the error message must contain.
DATA_CASES: dict[str, Callable[[Path], tuple[Path, list[str]]]] = {
    "data-dir-missing": _no_dir,
    "one-file-missing": _missing_file,
    "truncated-idx": _truncated,
    "corrupt-idx": _not_gzip,
    "labels-out-of-range": _labels_out_of_range,
}


class BadRun(NamedTuple):
  proc: Future
  workdir: Path
  needles: list[str]


@pytest.fixture(scope="module", autouse=True)
def bad_runs(request, tmp_path_factory) -> Iterator[dict[str, BadRun]]:
  """Starts the selected bad-input runs in the background as soon as this module starts.

  They are independent and each spends seconds importing JAX, so two at a time, beside the
  sequential workdir tests, keep the module's wall time well under the sum of its runs.
  """
  selected = {item.callspec.params["case"] for item in request.session.items
              if getattr(item, "module", None) is request.module
              and "case" in getattr(getattr(item, "callspec", None), "params", {})}
  with ThreadPoolExecutor(max_workers=2) as pool:
    runs = {}
    for case in sorted(selected):
      tmp = tmp_path_factory.mktemp(case)
      if case in CONFIG_CASES:
        args, needles = CONFIG_CASES[case]
      else:
        data_dir, needles = DATA_CASES[case](tmp / "data")
        args = [f"--config={FASHION}", "--config.dataset.source=local",
                f"--config.dataset.data_dir={data_dir}"]
      workdir = tmp / "run"
      runs[case] = BadRun(pool.submit(launch, *args, f"--workdir={workdir}"), workdir, needles)
    yield runs


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config_is_one_error_line_and_no_workdir(case, bad_runs):
  run = bad_runs[case]
  assert_user_error(run.proc.result(), *run.needles)
  assert not run.workdir.exists(), f"a refused run created {sorted(os.listdir(run.workdir))}"


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_data_is_one_error_line_and_no_workdir(case, bad_runs):
  run = bad_runs[case]
  assert_user_error(run.proc.result(), *run.needles)
  assert not run.workdir.exists(), f"a refused run created {sorted(os.listdir(run.workdir))}"


def test_missing_required_flags_are_named():
  assert_user_error(launch(), "--config and --workdir missing", "--config=experiments/NAME.py",
                    "--list")


# ---------------------------------------------------------------------------------------------
# Workdirs that hold something: refused without a change, or recovered from.


def test_different_config_is_refused_until_overwrite(trained, tmp_path):
  workdir = copy_run(trained, tmp_path)
  before = snapshot(workdir)
  changed = "--config.optimizer.learning_rate=0.05"
  proc = launch(f"--config={TINY}", changed, f"--workdir={workdir}")
  assert_user_error(proc, str(workdir), "config.optimizer.learning_rate: 0.1 -> 0.05",
                    "--overwrite")
  assert snapshot(workdir) == before, "a refused run changed the workdir"

  proc = launch(f"--config={TINY}", changed, f"--workdir={workdir}", "--overwrite")
  assert_success(proc)
  assert json.loads((workdir / "config.json").read_text())["optimizer"]["learning_rate"] == 0.05
  steps = [r["step"] for r in records(workdir, "train")]
  assert steps == sorted(set(steps)), f"old run's records survived the overwrite: {steps}"


def _corrupt(directory: Path) -> None:
  """Overwrites every regular file under `directory` with garbage."""
  files = [p for p in directory.rglob("*") if p.is_file()]
  assert files, f"nothing to corrupt in {directory}"
  for path in files:
    path.write_bytes(b"garbage\x00\xff")


def test_evaluate_with_every_checkpoint_unreadable_is_refused(trained, tmp_path):
  workdir = copy_run(trained, tmp_path)
  for step in checkpoint_steps(workdir):
    _corrupt(workdir / "checkpoints" / str(step))
  before = snapshot(workdir)
  proc = launch(f"--config={TINY}", f"--workdir={workdir}", "--mode=evaluate")
  assert_user_error(proc, f"no readable checkpoint in {workdir / 'checkpoints'}", "--overwrite")
  assert snapshot(workdir) == before, "a refused evaluation changed the workdir"


def test_evaluate_falls_back_when_the_latest_checkpoint_is_unreadable(trained, tmp_path):
  workdir = copy_run(trained, tmp_path)
  *_, previous, latest = checkpoint_steps(workdir)
  _corrupt(workdir / "checkpoints" / str(latest))
  proc = launch(f"--config={TINY}", f"--workdir={workdir}", "--mode=evaluate")
  assert_success(proc)
  assert re.search(rf"step {latest}\b.*unreadable", proc.stderr), proc.stderr[-4000:]
  assert "| test" in proc.stdout
  assert json.loads((workdir / "evaluation.json").read_text())["step"] == previous


def test_evaluate_on_an_empty_workdir_says_no_checkpoint(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  proc = launch(f"--config={TINY}", f"--workdir={workdir}", "--mode=evaluate")
  assert_user_error(proc, f"no checkpoint in {workdir}", "train first")
  assert not any(workdir.iterdir()), f"evaluation wrote {sorted(os.listdir(workdir))}"
