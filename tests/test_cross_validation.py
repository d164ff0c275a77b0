"""k-fold cross-validation and multi-seed runs.

The folds must be exactly scikit-learn's (StratifiedKFold / KFold with the same seed), so a
cross-validated number here can be compared with, or recomputed by, any scikit-learn user;
every example must be tested exactly once; and the runners' mean ± std must be the plain
numpy statistics of the runs' own result.json files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn import datasets as sk_datasets
from sklearn import model_selection

from research.data import DATASETS, Split, load_dataset, splits
from research.data.sources import Source
from research.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
TINY = "experiments/iris_softmax.py:tiny"
ENV = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "JAX_PLATFORMS": "cpu"}


def launch(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "launch.main", *args], cwd=ROOT, env=ENV,
                        capture_output=True, text=True, timeout=300)


def raw_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
  loader = {"iris": sk_datasets.load_iris, "diabetes": sk_datasets.load_diabetes}[name]
  x, y = loader(return_X_y=True)
  return x.astype(np.float32), y


def fold_config(name: str, k: int, fold: int, **fields) -> dict:
  return dict(name=name, cv_folds=k, cv_fold=fold, standardize=False, **fields)


# ---------------------------------------------------------------------------------------------
# The folds.


@pytest.mark.parametrize("seed", [0, 7])
def test_fold_indices_equal_sklearn_stratified_kfold(seed):
  _, y = raw_dataset("iris")
  ours = splits.fold_indices(y, 5, seed, stratify=True)
  theirs = model_selection.StratifiedKFold(5, shuffle=True, random_state=seed).split(
      np.zeros((len(y), 1)), y)
  for (rest, held), (sk_rest, sk_held) in zip(ours, theirs, strict=True):
    np.testing.assert_array_equal(rest, sk_rest)
    np.testing.assert_array_equal(held, sk_held)


def test_fold_indices_equal_sklearn_kfold_for_regression():
  _, y = raw_dataset("diabetes")
  ours = splits.fold_indices(y, 4, 3, stratify=False)
  theirs = model_selection.KFold(4, shuffle=True, random_state=3).split(np.zeros((len(y), 1)))
  for (rest, held), (sk_rest, sk_held) in zip(ours, theirs, strict=True):
    np.testing.assert_array_equal(rest, sk_rest)
    np.testing.assert_array_equal(held, sk_held)


@pytest.mark.parametrize("name,stratify,k", [("iris", True, 5), ("diabetes", False, 3)])
def test_every_example_is_held_out_in_exactly_one_fold(name, stratify, k):
  _, y = raw_dataset(name)
  folds = splits.fold_indices(y, k, 0, stratify)
  held = np.concatenate([h for _, h in folds])
  np.testing.assert_array_equal(np.sort(held), np.arange(len(y)))
  for rest, h in folds:
    assert not set(rest) & set(h)
    assert len(rest) + len(h) == len(y)


@pytest.mark.parametrize("fold", [0, 3])
def test_dataset_test_split_is_the_sklearn_fold(fold):
  x, y = raw_dataset("iris")
  dataset = load_dataset(fold_config("iris", 5, fold, split_seed=4, validation_fraction=0.0))
  sk_rest, sk_held = list(model_selection.StratifiedKFold(5, shuffle=True, random_state=4)
                          .split(x, y))[fold]
  np.testing.assert_array_equal(dataset.splits["test"].inputs, x[sk_held])
  np.testing.assert_array_equal(dataset.splits["test"].labels, y[sk_held])
  np.testing.assert_array_equal(dataset.splits["train"].inputs, x[sk_rest])


def test_regression_test_split_is_the_sklearn_kfold_fold_in_dataset_order():
  x, y = raw_dataset("diabetes")
  dataset = load_dataset(fold_config("diabetes", 4, 2, split_seed=1, validation_fraction=0.0))
  _, sk_held = list(model_selection.KFold(4, shuffle=True, random_state=1).split(x))[2]
  np.testing.assert_array_equal(dataset.splits["test"].inputs, x[np.sort(sk_held)])
  np.testing.assert_allclose(dataset.splits["test"].labels, y[np.sort(sk_held)])


def test_validation_is_carved_from_the_folds_training_part():
  x, _ = raw_dataset("iris")
  dataset = load_dataset(fold_config("iris", 5, 1, validation_fraction=0.2))
  sizes = {name: len(split) for name, split in dataset.splits.items()}
  assert sizes == {"train": 96, "validation": 24, "test": 30}
  rows = lambda split: {tuple(r) for r in split.inputs}
  assert not rows(dataset.splits["validation"]) & rows(dataset.splits["test"]) - rows(
      dataset.splits["train"]), "a validation example is also a test example"


def test_test_folds_of_the_dataset_cover_every_example_once():
  x, _ = raw_dataset("iris")
  tests = [load_dataset(fold_config("iris", 3, k)).splits["test"].inputs for k in range(3)]
  pooled = np.concatenate(tests)
  assert len(pooled) == len(x)
  order = lambda a: a[np.lexsort(a.T[::-1])]
  np.testing.assert_array_equal(order(pooled), order(x))  # the same multiset of rows


def test_stratification_falls_back_to_kfold_when_a_class_is_rarer_than_k():
  y = np.array([0] * 8 + [1] * 2)
  ours = splits.fold_indices(y, 3, 0, stratify=True)
  theirs = model_selection.KFold(3, shuffle=True, random_state=0).split(np.zeros((10, 1)))
  for (_, held), (_, sk_held) in zip(ours, theirs, strict=True):
    np.testing.assert_array_equal(held, sk_held)


def test_more_folds_than_examples_is_a_data_error():
  with pytest.raises(DataError, match="10 examples into dataset.cv_folds = 20 folds"):
    splits.fold_indices(np.arange(10), 20, 0, stratify=False)


@pytest.mark.parametrize("fields,pattern", [
    (dict(cv_folds=1), r"dataset\.cv_folds = 1 is invalid: .*>= 2"),
    (dict(cv_folds=-3), r"dataset\.cv_folds = -3 is invalid"),
    (dict(cv_folds=5, cv_fold=5), r"dataset\.cv_fold = 5 is invalid: it must be in \[0, 5\)"),
    (dict(cv_fold=2), r"dataset\.cv_fold = 2 is invalid: cross-validation is off"),
])
def test_bad_fold_fields_name_the_field(fields, pattern):
  with pytest.raises(ConfigError, match=pattern):
    load_dataset(dict(name="iris", **fields))


# ---------------------------------------------------------------------------------------------
# Datasets with a fixed test split; predefined folds (the MovieLens u1-u5 hook).


def _fake_split(n: int, offset: int = 0) -> Split:
  inputs = (np.arange(n, dtype=np.float32) + offset)[:, None].repeat(2, axis=1)
  return Split(inputs=inputs, labels=(np.arange(n) % 2).astype(np.int32))


def test_fixed_test_split_refuses_cross_validation(monkeypatch):
  monkeypatch.setitem(DATASETS._entries, "fake_fixed",
                      lambda config: Source(train=_fake_split(20), test=_fake_split(10, 100),
                                            num_classes=2))
  assert len(load_dataset(dict(name="fake_fixed")).splits["test"]) == 10
  with pytest.raises(ConfigError, match=r"'fake_fixed' has a fixed test split.*cv_folds=0"):
    load_dataset(dict(name="fake_fixed", cv_folds=3))


def test_predefined_folds_are_used_as_given(monkeypatch):
  # 20 train + 10 test examples; the pool is train then test; fold k holds out 6 examples.
  folds = tuple(np.arange(30).reshape(5, 6)[[4, 0, 2, 1, 3]])
  monkeypatch.setitem(DATASETS._entries, "fake_folds",
                      lambda config: Source(train=_fake_split(20), test=_fake_split(10, 20),
                                            num_classes=2, folds=folds))
  for k in range(5):
    dataset = load_dataset(dict(name="fake_folds", cv_folds=5, cv_fold=k, standardize=False,
                                validation_fraction=0.0))
    np.testing.assert_array_equal(dataset.splits["test"].inputs[:, 0], folds[k])
    np.testing.assert_array_equal(dataset.splits["train"].inputs[:, 0],
                                  np.setdiff1d(np.arange(30), folds[k]))
  with pytest.raises(ConfigError, match=r"comes with 5 predefined folds: set dataset.cv_folds=5"):
    load_dataset(dict(name="fake_folds", cv_folds=3))


def test_predefined_fold_out_of_range_is_a_data_error():
  with pytest.raises(DataError, match=r"outside \[0, 10\)"):
    splits.predefined_fold(10, np.array([3, 12]))


# ---------------------------------------------------------------------------------------------
# The runners.


def test_cross_validate_mode_runs_every_fold_and_reports_mean_std(tmp_path):
  workdir = tmp_path / "cv"
  proc = launch(f"--config={TINY}", f"--workdir={workdir}", "--mode=cross_validate",
                "--config.dataset.cv_folds=3")
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert sorted(p.name for p in workdir.iterdir()) == ["cv_result.json", "fold_0", "fold_1",
                                                       "fold_2"]
  summary = json.loads((workdir / "cv_result.json").read_text())
  assert summary["kind"] == "cross_validation" and summary["folds"] == 3
  accuracies, test_sizes = [], 0
  for k in range(3):
    config = json.loads((workdir / f"fold_{k}" / "config.json").read_text())
    assert (config["dataset"]["cv_folds"], config["dataset"]["cv_fold"]) == (3, k)
    result = json.loads((workdir / f"fold_{k}" / "result.json").read_text())
    accuracies.append(result["test"]["accuracy"])
    test_sizes += int(np.sum(result["test"]["confusion_matrix"]))
    assert summary["runs"][k]["metrics"]["test/accuracy"] == result["test"]["accuracy"]
  assert test_sizes == 150, "every iris flower is tested exactly once"
  assert summary["mean"]["test/accuracy"] == pytest.approx(np.mean(accuracies), abs=1e-12)
  assert summary["std"]["test/accuracy"] == pytest.approx(np.std(accuracies), abs=1e-12)
  assert f"{np.mean(accuracies):.4f} ± {np.std(accuracies):.4f}" in proc.stdout


def test_multi_seed_runs_differ_and_aggregate_with_numpy(tmp_path):
  from launch import overrides
  from research.training import runs
  config = overrides.load_config(TINY)
  summary = runs.run_seeds(config, str(tmp_path), [0, 1])
  results = [json.loads((tmp_path / f"seed_{s}" / "result.json").read_text()) for s in (0, 1)]
  for s in (0, 1):
    assert json.loads((tmp_path / f"seed_{s}" / "config.json").read_text())["seed"] == s
  assert results[0]["test"]["loss"] != results[1]["test"]["loss"], "both seeds trained alike"
  on_disk = json.loads((tmp_path / runs.SEEDS_RESULT).read_text())
  assert on_disk == json.loads(json.dumps(summary))
  for name in ("test/loss", "test/accuracy", "validation/loss"):
    split, metric = name.split("/")
    values = [r[split][metric] for r in results]
    assert summary["mean"][name] == pytest.approx(np.mean(values), abs=1e-12)
    assert summary["std"][name] == pytest.approx(np.std(values), abs=1e-12)
  # A rerun reads both runs back: nothing is trained again.
  trained = []
  outcomes = runs.run_all(runs.seed_runs(config, str(tmp_path), [0, 1]),
                          train=lambda *a, **k: trained.append(a) or {})
  assert not trained and [o.trained for o in outcomes] == [False, False]


@pytest.mark.parametrize("args,needle", [
    (["--num_seeds=0"], "--num_seeds=0: it must be >= 1"),
    (["--seeds=0,x"], "--seeds=0,x: seeds must be integers"),
])
def test_bad_seed_flags_are_refused(tmp_path, args, needle):
  proc = launch(f"--config={TINY}", f"--workdir={tmp_path / 'w'}", *args)
  assert proc.returncode == 2, proc.stderr[-4000:]
  assert needle in proc.stderr and "Traceback" not in proc.stderr
  assert not (tmp_path / "w").exists()
