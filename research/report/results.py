"""Results of several runs: metrics as flat names, mean ± std, and checks against references.

A run's result.json nests metrics by split (`{"test": {"accuracy": ...}}`); multi-run reports
use the flat names of experiments' REFERENCE (`test/accuracy`), so one name means the same
number in result.json, in seeds_result.json / cv_result.json, and in RESULTS.md. The spread
is numpy's default (population) standard deviation, the convention of scikit-learn's
cross-validation reports (`scores.mean(), scores.std()`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

from research.errors import ConfigError
from research.report.table import markdown_table

SPLITS = ("validation", "test")
GOALS = (">=", "<=")


def scalar_metrics(result: Mapping[str, Any]) -> dict[str, float]:
  """`{"split/metric": value}` for every scalar metric of a result.json (matrices skipped).

  Sorted by name within a split, so a table reads the same whether the run was just trained
  or read back from its (key-sorted) result.json.
  """
  flat = {}
  for split in SPLITS:
    for name, value in sorted(result.get(split, {}).items()):
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        flat[f"{split}/{name}"] = float(value)
  return flat


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """numpy's mean and (population, ddof=0) standard deviation."""
  array = np.asarray(values, dtype=np.float64)
  return float(np.mean(array)), float(np.std(array))


def aggregate(runs: Sequence[Mapping[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
  """Mean and std of each metric every run has, as two `{"split/metric": value}` dicts."""
  if not runs:
    return {}, {}
  names = [n for n in runs[0] if all(n in r for r in runs[1:])]
  pairs = {n: mean_std([r[n] for r in runs]) for n in names}
  return {n: m for n, (m, _) in pairs.items()}, {n: s for n, (_, s) in pairs.items()}


def format_mean_std(mean: float, std: float, digits: int = 4) -> str:
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def runs_table(names: Sequence[str], runs: Sequence[Mapping[str, float]],
               mean: Mapping[str, float], std: Mapping[str, float],
               metrics: Sequence[str] | None = None) -> str:
  """One row per run and a last `mean ± std` row; columns are `metrics` (default: test ones)."""
  if metrics is None:
    metrics = [n for n in mean if n.startswith("test/")] or list(mean)
  rows = [[name] + [run.get(m, "") for m in metrics] for name, run in zip(names, runs)]
  rows.append(["mean ± std"] + [format_mean_std(mean[m], std[m]) for m in metrics])
  return markdown_table(["run"] + list(metrics), rows)


@dataclasses.dataclass(frozen=True)
class Reference:
  """An experiment's REFERENCE: the published number its recipe must reach.

  metric: a flat result name, e.g. 'test/accuracy'. goal: '>=' (higher is better) or '<='.
  tolerance: how far short of `value` still counts as reproduced (0 unless the experiment
  says otherwise, e.g. for a number read off a plot). folds: k >= 2 when the number is a
  k-fold cross-validated mean (reproduce then trains every fold for every seed), e.g.
  MovieLens-100k's official u1-u5 folds; 0 for a fixed test split.
  """

  metric: str
  value: float
  goal: str
  source: str
  tolerance: float = 0.0
  folds: int = 0  # k >= 2: the number is a k-fold cross-validated mean, not one test split

  @classmethod
  def from_module(cls, experiment: str, reference: Any) -> Reference:
    """Checks an experiment module's REFERENCE dict; a malformed one names the experiment."""
    where = f"experiments/{experiment}.py: REFERENCE"
    if not isinstance(reference, Mapping):
      raise ConfigError(f"{where} must be a dict with metric, value, goal and source, "
                        f"got {type(reference).__name__}.")
    missing = [k for k in ("metric", "value", "source") if k not in reference]
    if missing:
      raise ConfigError(f"{where} lacks {', '.join(missing)}: add them (e.g. metric="
                        "'test/accuracy', value=0.97, goal='>=', source='...').")
    goal = reference.get("goal", ">=")
    if goal not in GOALS:
      raise ConfigError(f"{where} has goal={goal!r}; use '>=' (higher is better) or '<='.")
    metric = str(reference["metric"])
    if metric.partition("/")[0] not in SPLITS:
      raise ConfigError(f"{where} has metric={metric!r}; name it by split, e.g. "
                        "'test/accuracy' or 'validation/rmse'.")
    tolerance = float(reference.get("tolerance", 0.0))
    if tolerance < 0:
      raise ConfigError(f"{where} has tolerance={tolerance}; it must be >= 0.")
    folds = reference.get("folds", 0)
    if not isinstance(folds, int) or folds == 1 or folds < 0:
      raise ConfigError(f"{where} has folds={folds!r}; use an integer k >= 2 for a k-fold "
                        "cross-validated number, or leave it out for the test split.")
    return cls(metric=metric, value=float(reference["value"]), goal=goal,
               source=str(reference["source"]), tolerance=tolerance, folds=folds)

  def passes(self, value: float) -> bool:
    """Whether `value` (the mean over seeds) meets the goal, within the tolerance."""
    if not math.isfinite(value):
      return False
    if self.goal == ">=":
      return value >= self.value - self.tolerance
    return value <= self.value + self.tolerance

  def describe(self) -> str:
    return f"{self.goal} {self.value:g}"
