"""`launch.reproduce`: RESULTS.md reports exactly what the runs measured, and reruns read back.

The reproduction runs in-process (research.report.reproduce, the library half of the
command) on the `:tiny` iris recipe, once for the module; the command line itself is run as
a subprocess where its contract is about what a user sees: the rerun that reads everything
back, and bad input (exit code 2, one `error:` line naming the input).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from launch import overrides
from research.errors import ConfigError
from research.report import plots, results, results_md
from research.report import reproduce as reproduce_lib

ROOT = Path(__file__).resolve().parents[1]
ENV = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "JAX_PLATFORMS": "cpu"}
SEEDS = 2


def reproduce_cli(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "launch.reproduce", *args], cwd=ROOT, env=ENV,
                        capture_output=True, text=True, timeout=300)


def iris() -> reproduce_lib.Experiment:
  return reproduce_lib.Experiment.from_module(
      "iris_softmax", importlib.import_module("experiments.iris_softmax"))


def cli_args(tmp: Path) -> list[str]:
  return ["--only=iris_softmax", "--variant=tiny", f"--seeds={SEEDS}",
          f"--workdir={tmp / 'runs'}", f"--output={tmp / 'RESULTS.md'}"]


def table_rows(markdown: str) -> dict[str, dict[str, str]]:
  """The RESULTS.md table as {experiment: {column: cell}}."""
  lines = [l for l in markdown.splitlines() if l.startswith("| ")]
  cells = lambda line: [c.strip() for c in line.strip("|").split(" | ")]
  header = cells(lines[0])
  return {row[0].strip("`"): dict(zip(header, row)) for row in map(cells, lines[2:])}


def digest(path: Path) -> tuple[int, str]:
  return path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> tuple[Path, list[results_md.ReproducedRow]]:
  tmp = tmp_path_factory.mktemp("reproduce")
  rows = reproduce_lib.reproduce(
      [iris()], SEEDS, str(tmp / "runs"), str(tmp / "RESULTS.md"),
      command="python -m launch.reproduce " + " ".join(cli_args(tmp)), variant="tiny")
  return tmp, rows


def test_results_md_numbers_equal_the_runs_result_json(reproduced):
  tmp, rows = reproduced
  values = [json.loads((tmp / "runs" / "iris_softmax.tiny" / f"seed_{s}" / "result.json")
                       .read_text())["test"]["accuracy"] for s in range(SEEDS)]
  mean, std = np.mean(values), np.std(values)
  markdown = (tmp / "RESULTS.md").read_text()
  row = table_rows(markdown)["iris_softmax:tiny"]
  shown = re.fullmatch(r"([\d.]+) ± ([\d.]+) \((\d+)\)", row["mean ± std (runs)"])
  assert shown, row
  assert float(shown[1]) == pytest.approx(mean, abs=5e-5)
  assert float(shown[2]) == pytest.approx(std, abs=5e-5)
  assert int(shown[3]) == SEEDS
  reference = iris().reference
  assert row["metric"] == "test/accuracy" and row["reference"] == f">= {reference.value:g}"
  assert row["source"] == reference.source
  assert row["pass/fail"] == ("pass" if mean >= reference.value else "FAIL")
  assert row["device"] == "cpu"
  # The unrounded copy for scripts holds exactly the runs' values.
  summary = json.loads((tmp / "results" / "results.json").read_text())
  assert summary["experiments"][0]["values"] == values
  assert rows[0].values == tuple(values)


def test_cross_validated_reference_trains_every_fold_and_seed(tmp_path):
  """A REFERENCE with folds=k is a k-fold number: the row is the mean over folds x seeds."""
  import dataclasses
  exp = iris()
  exp = dataclasses.replace(exp, reference=dataclasses.replace(exp.reference, folds=2))
  rows = reproduce_lib.reproduce([exp], 1, str(tmp_path / "runs"), str(tmp_path / "RESULTS.md"),
                                 command="python -m launch.reproduce ...", variant="tiny")
  values = [json.loads((tmp_path / "runs" / "iris_softmax.tiny" / f"fold_{k}" / "seed_0" /
                        "result.json").read_text())["test"]["accuracy"] for k in range(2)]
  assert rows[0].values == tuple(values)
  row = table_rows((tmp_path / "RESULTS.md").read_text())["iris_softmax:tiny"]
  assert row["mean ± std (runs)"].endswith("(2 folds x 1 seeds)")
  assert row["mean ± std (runs)"].startswith(f"{np.mean(values):.4f}")


def test_results_md_says_how_it_was_made(reproduced):
  tmp, _ = reproduced
  markdown = (tmp / "RESULTS.md").read_text()
  assert "python -m launch.reproduce --only=iris_softmax --variant=tiny --seeds=2" in markdown
  assert "do not edit by hand" in markdown
  import jax
  assert f"jax {jax.__version__}" in markdown and "UTC" in markdown


def test_learning_curves_are_linked_png_files(reproduced):
  tmp, _ = reproduced
  markdown = (tmp / "RESULTS.md").read_text()
  links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", markdown)
  assert links == ["results/plots/iris_softmax.tiny.png"]
  png = tmp / links[0]
  data = png.read_bytes()
  assert data.startswith(plots.PNG_SIGNATURE) and 5_000 < len(data) < 200_000
  from matplotlib import image
  height, width, _ = image.imread(png).shape
  assert width > height > 100


def test_rerun_reads_back_without_retraining(reproduced):
  tmp, _ = reproduced
  seed_dirs = [tmp / "runs" / "iris_softmax.tiny" / f"seed_{s}" for s in range(SEEDS)]
  before = {d: digest(d / "metrics.jsonl") for d in seed_dirs}
  row_before = table_rows((tmp / "RESULTS.md").read_text())["iris_softmax:tiny"]
  proc = reproduce_cli(*cli_args(tmp))
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert proc.stdout.count("read back") == SEEDS and "trained" not in proc.stdout
  assert {d: digest(d / "metrics.jsonl") for d in seed_dirs} == before
  row_after = table_rows((tmp / "RESULTS.md").read_text())["iris_softmax:tiny"]
  assert row_after == row_before


def test_absent_data_is_a_row_not_a_crash(tmp_path):
  module = types.ModuleType("absent")
  module.REFERENCE = dict(metric="test/accuracy", value=0.9, goal=">=", source="nowhere")

  def get_config(arg=None):
    config = importlib.import_module("experiments.fashion_mnist_mlp").get_config("tiny")
    config.dataset.source = "local"
    config.dataset.data_dir = str(tmp_path / "no_such_dir")
    return config

  module.get_config = get_config
  exp = reproduce_lib.Experiment.from_module("absent", module)
  row = reproduce_lib.reproduce_experiment(exp, 1, str(tmp_path / "runs"),
                                           str(tmp_path / "plots"))
  assert row.note.startswith("data not available: fashion_mnist:")
  assert "no_such_dir" in row.note and row.status == "not run" and row.plot is None
  assert not (tmp_path / "runs" / "absent" / "seed_0").exists()
  markdown = results_md.results_markdown([row], "cmd", reproduce_lib.environment())
  assert "data not available (note 1)" in markdown and "1. `absent`: data not available" in markdown


@pytest.mark.parametrize("reference,pattern", [
    (dict(metric="test/rmse", value=1.0, source="s", folds=1), "folds=1"),
    (dict(metric="test/accuracy", value=0.9, goal=">", source="s"), "goal='>'"),
    (dict(metric="accuracy", value=0.9, source="s"), "metric='accuracy'"),
    (dict(metric="test/accuracy", value=0.9), "lacks source"),
])
def test_malformed_reference_names_the_experiment(reference, pattern):
  with pytest.raises(ConfigError, match=f"experiments/x.py: REFERENCE .*{re.escape(pattern)}"):
    results.Reference.from_module("x", reference)


def test_goal_and_tolerance_decide_pass():
  higher = results.Reference("test/accuracy", 0.9, ">=", "s", tolerance=0.01)
  assert higher.passes(0.9) and higher.passes(0.891) and not higher.passes(0.889)
  lower = results.Reference("test/rmse", 50.0, "<=", "s")
  assert lower.passes(50.0) and not lower.passes(50.01) and not lower.passes(float("nan"))


def test_bad_input_is_refused_naming_it(tmp_path):
  no_reference = tmp_path / "no_reference.py"
  no_reference.write_text((ROOT / "experiments" / "iris_softmax.py").read_text()
                          .replace("REFERENCE = dict(", "_NOT_A_REFERENCE = dict("))
  cases = {
      f"--only={no_reference}": ["'no_reference' has no REFERENCE", str(no_reference.name)],
      "--only=digts_cnn": ["unknown experiment 'digts_cnn' (--only)", "Did you mean 'digits_cnn'?"],
      "--seeds=0": ["--seeds=0", "must be >= 1"],
  }
  procs = {arg: subprocess.Popen(
      [sys.executable, "-m", "launch.reproduce", arg, f"--workdir={tmp_path / 'runs'}",
       f"--output={tmp_path / 'RESULTS.md'}"], cwd=ROOT, env=ENV, text=True,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE) for arg in cases}
  for arg, needles in cases.items():
    _, stderr = procs[arg].communicate(timeout=300)
    assert procs[arg].returncode == 2, f"{arg}: exit {procs[arg].returncode}\n{stderr[-3000:]}"
    errors = [l for l in stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    for needle in needles:
      assert needle in errors[0], (arg, errors[0])
  assert not (tmp_path / "RESULTS.md").exists() and not (tmp_path / "runs").exists()


def test_only_accepts_a_variant_per_experiment():
  # Through a subprocess: importing launch.reproduce here would define its absl flags in
  # this process, beside those of other launch modules that tests import.
  from research.report.reproduce import Experiment, experiment_config
  probe = ("from launch.reproduce import resolve_experiments as r; "
           "print([(e.name, e.variant) for e in r(['iris_softmax:tiny', 'wine_softmax'])])")
  out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=ENV, capture_output=True,
                       text=True)
  assert out.stdout.strip() == "[('iris_softmax', 'tiny'), ('wine_softmax', '')]", out.stderr
  load = lambda name: overrides.load_module(str(ROOT / "experiments" / f"{name}.py"))
  tiny = Experiment.from_module("iris_softmax", load("iris_softmax"), "tiny")
  recipe = Experiment.from_module("wine_softmax", load("wine_softmax"))
  assert (tiny.variant, recipe.variant) == ("tiny", "")
  config, used = experiment_config(tiny, variant="", fast=True)  # the item's own variant wins
  assert used == "tiny" and config.train.num_steps > 0
  assert experiment_config(recipe, fast=True)[1] == ""  # no ':cpu' variant: its recipe
