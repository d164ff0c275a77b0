"""Optuna samplers and pruners by name, with their options checked up front.

Every search strategy is Optuna's: grid, random, TPE (the default), Gaussian-process
Bayesian optimisation (`gp`, needs torch) and CMA-ES (`cmaes`, needs the cmaes package).
Options are the Optuna constructor's keyword arguments, e.g. `{'name': 'tpe',
'n_startup_trials': 5}` or `{'name': 'median', 'n_warmup_steps': 100}`.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
from typing import Any, Callable, Mapping

import optuna

from research.errors import ConfigError
from research.sweep import space as space_lib

class GridSampler(optuna.samplers.GridSampler):
  """Optuna's grid sampler, minus its `study.stop()` once the grid is used up.

  That call only works inside `study.optimize`; sweep workers ask and tell, and the budget
  (at most the grid's size) is what ends the sweep. Every worker must build it with the
  same seed: the seed shuffles the grid, and workers share grid ids through the study.
  """

  def after_trial(self, study, trial, state, values) -> None:  # noqa: D102
    del study, trial, state, values


SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "grid": GridSampler,
    "random": optuna.samplers.RandomSampler,
    "tpe": optuna.samplers.TPESampler,
    "gp": optuna.samplers.GPSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
}
PRUNERS: dict[str, Callable[..., optuna.pruners.BasePruner]] = {
    "none": optuna.pruners.NopPruner,
    "median": optuna.pruners.MedianPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
}
_NEEDS = {"gp": ("torch", "scipy"), "cmaes": ("cmaes",)}


def _construct(kind: str, table: Mapping[str, Callable[..., Any]], options: Mapping[str, Any],
               **extra: Any) -> Any:
  name = options["name"]
  if name not in table:
    close = difflib.get_close_matches(name, list(table), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"--{kind}={name!r} is not a {kind}.{hint} Choose one of {list(table)}.")
  for module in _NEEDS.get(name, ()):
    if importlib.util.find_spec(module) is None:
      raise ConfigError(f"--{kind}={name} needs the {module!r} package: pip install {module} "
                        "(or choose another sampler, e.g. tpe).")
  factory = table[name]
  kwargs = {k: v for k, v in options.items() if k != "name"}
  accepted = inspect.signature(factory).parameters
  for key in kwargs:
    if key not in accepted:
      close = difflib.get_close_matches(key, list(accepted), n=1)
      hint = f" Did you mean {close[0]!r}?" if close else ""
      raise ConfigError(f"{kind} {name!r} has no option {key!r}.{hint} Its options are "
                        f"{[p for p in accepted if p not in ('search_space', 'seed')]}.")
  try:
    return factory(**{**extra, **kwargs})
  except (TypeError, ValueError) as e:
    raise ConfigError(f"{kind} {name!r} with options {kwargs}: {e}") from None


def make_sampler(options: Mapping[str, Any], space: space_lib.Space,
                 seed: int | None) -> optuna.samplers.BaseSampler:
  """The named sampler; `grid` walks every combination of the space's choices."""
  extra: dict[str, Any] = {"seed": seed}
  if options.get("name") == "grid":
    extra["search_space"] = space_lib.grid(space)
  return _construct("sampler", SAMPLERS, options, **extra)


def make_pruner(options: Mapping[str, Any]) -> optuna.pruners.BasePruner:
  """The named pruner; it sees each trial's validation metric at every evaluation."""
  return _construct("pruner", PRUNERS, options)
