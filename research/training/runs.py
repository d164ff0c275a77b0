"""Several runs of one experiment: training seeds and cross-validation folds, as mean ± std.

Each run is an ordinary workdir under the parent one (`DIR/seed_1`, `DIR/fold_3`,
`DIR/fold_3/seed_1`), so it resumes and refuses a different config like any run. A
finished run is read back from its result.json without rebuilding the experiment, so
rerunning the same command after an interruption trains only what is missing and costs
no data loading for what is done. The summary (`seeds_result.json`, `cv_result.json`) is
rewritten from the runs' result.json files every time, never accumulated.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from typing import Any, Callable, Sequence

import ml_collections

from research.errors import ConfigError
from research.report import results as results_lib
from research.training import loop, workdir as workdir_lib
from research.training.writers import atomic_write_json

SEEDS_RESULT = "seeds_result.json"
CV_RESULT = "cv_result.json"
DEFAULT_FOLDS = 5


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run: its name (relative workdir), config and workdir, and what varies (fold, seed)."""
  name: str
  config: ml_collections.ConfigDict
  workdir: str
  labels: dict[str, int]


@dataclasses.dataclass(frozen=True)
class Outcome:
  """A run's result.json, and whether this call trained it (False: read back)."""
  spec: RunSpec
  result: dict[str, Any]
  trained: bool


def with_seed(config: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
  """A copy of `config` with training seed `seed`."""
  config = copy.deepcopy(config)
  config.seed = seed
  return config


def with_fold(config: ml_collections.ConfigDict, num_folds: int,
              fold: int) -> ml_collections.ConfigDict:
  """A copy of `config` whose test split is fold `fold` of `num_folds`."""
  config = copy.deepcopy(config)
  config.dataset.cv_folds = num_folds
  config.dataset.cv_fold = fold
  return config


def check_seeds(seeds: Sequence[int]) -> list[int]:
  """The seeds as a list; empty, negative or repeated seeds are the user's to fix."""
  seeds = [int(s) for s in seeds]
  if not seeds:
    raise ConfigError("no seeds given: pass --seeds=0,1,2 or --num_seeds=3.")
  if any(s < 0 for s in seeds):
    raise ConfigError(f"--seeds={','.join(map(str, seeds))}: seeds must be >= 0.")
  if len(set(seeds)) != len(seeds):
    raise ConfigError(f"--seeds={','.join(map(str, seeds))} repeats a seed: each seed is "
                      "one run, so list each once.")
  return seeds


def seed_runs(config: ml_collections.ConfigDict, workdir: str,
              seeds: Sequence[int]) -> list[RunSpec]:
  """One run per training seed (`config.seed`) in `workdir/seed_<s>`.

  Only the training seed changes (initialisation, data order, dropout); the data splits
  are fixed by `dataset.split_seed`, so every seed is evaluated on the same examples.
  """
  return [RunSpec(f"seed_{s}", with_seed(config, s), os.path.join(workdir, f"seed_{s}"),
                  {"seed": s}) for s in check_seeds(seeds)]


def fold_runs(config: ml_collections.ConfigDict, workdir: str, num_folds: int = 0,
              seeds: Sequence[int] | None = None) -> list[RunSpec]:
  """One run per fold in `workdir/fold_<k>` (per fold and seed: `fold_<k>/seed_<s>`).

  `num_folds` 0 takes `config.dataset.cv_folds`, or DEFAULT_FOLDS when that is 0 too.
  """
  k = num_folds or config.dataset.cv_folds or DEFAULT_FOLDS
  if k < 2:
    raise ConfigError(f"cross-validation needs at least 2 folds, got {k}: set "
                      "--config.dataset.cv_folds=5 (or another k >= 2).")
  specs = []
  for fold in range(k):
    folded = with_fold(config, k, fold)
    fold_dir = os.path.join(workdir, f"fold_{fold}")
    if seeds is None:
      specs.append(RunSpec(f"fold_{fold}", folded, fold_dir,
                           {"fold": fold, "seed": int(config.seed)}))
    else:
      specs.extend(RunSpec(f"fold_{fold}/{s.name}", s.config, s.workdir, {"fold": fold, **s.labels})
                   for s in seed_runs(folded, fold_dir, seeds))
  return specs


def finished_result(config: ml_collections.ConfigDict, workdir: str,
                    test: bool = True) -> dict[str, Any] | None:
  """The result.json of a finished run of exactly `config` in `workdir`, else None.

  result.json is written only when a run ends, so its presence (with test metrics when
  `test`) and an identical config.json mean there is nothing left to train.
  """
  path = os.path.join(workdir, "result.json")
  old = workdir_lib.read_config(workdir)
  if old is None or not os.path.exists(path):
    return None
  if workdir_lib.config_differences(old, workdir_lib.config_to_dict(config)):
    return None
  try:
    with open(path) as f:
      result = json.load(f)
  except json.JSONDecodeError:
    return None  # half-written by hand or a crash: let the loop redo it
  return result if (not test or "test" in result) else None


Train = Callable[..., dict[str, Any]]


def run_all(specs: Sequence[RunSpec], overwrite: bool = False, test: bool = True,
            train: Train = loop.train_and_evaluate,
            on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
  """Runs each spec in turn (reading back finished ones) and returns their outcomes."""
  outcomes = []
  for spec in specs:
    result = None if overwrite else finished_result(spec.config, spec.workdir, test)
    trained = result is None
    if trained:
      result = train(spec.config, spec.workdir, overwrite=overwrite, test=test)
    outcome = Outcome(spec, result, trained)
    if on_done is not None:
      on_done(outcome)
    outcomes.append(outcome)
  return outcomes


def summarize(outcomes: Sequence[Outcome], kind: str, **extra: Any) -> dict[str, Any]:
  """The summary JSON: each run's flat metrics, and their mean and std over runs."""
  per_run = [results_lib.scalar_metrics(o.result) for o in outcomes]
  mean, std = results_lib.aggregate(per_run)
  return {
      "kind": kind, **extra, "num_runs": len(outcomes),
      "runs": [{"name": o.spec.name, "workdir": o.spec.workdir, **o.spec.labels,
                "metrics": m, "wall_time_s": o.result.get("wall_time_s")}
               for o, m in zip(outcomes, per_run)],
      "mean": mean, "std": std,
  }


def summary_table(summary: dict[str, Any]) -> str:
  """Per-run metrics and a last `mean ± std` row, for the terminal."""
  runs = summary["runs"]
  return results_lib.runs_table([r["name"] for r in runs], [r["metrics"] for r in runs],
                                summary["mean"], summary["std"])


def run_seeds(config: ml_collections.ConfigDict, workdir: str, seeds: Sequence[int],
              overwrite: bool = False, test: bool = True) -> dict[str, Any]:
  """Trains one run per seed and writes `workdir/seeds_result.json` (mean ± std)."""
  specs = seed_runs(config, workdir, seeds)
  summary = summarize(run_all(specs, overwrite, test), "seeds",
                      seeds=[s.labels["seed"] for s in specs])
  atomic_write_json(os.path.join(workdir, SEEDS_RESULT), summary)
  return summary


def cross_validate(config: ml_collections.ConfigDict, workdir: str, num_folds: int = 0,
                   seeds: Sequence[int] | None = None,
                   overwrite: bool = False) -> dict[str, Any]:
  """k-fold cross-validation: one run per fold (and seed); writes `workdir/cv_result.json`.

  Fold k's held-out examples are its test split (see `research.data.cross_validation_split`),
  so the mean ± std of the test metrics is the cross-validated estimate.
  """
  specs = fold_runs(config, workdir, num_folds, seeds)
  summary = summarize(run_all(specs, overwrite, test=True), "cross_validation",
                      folds=specs[-1].labels["fold"] + 1,
                      seeds=sorted({s.labels["seed"] for s in specs}))
  atomic_write_json(os.path.join(workdir, CV_RESULT), summary)
  return summary
