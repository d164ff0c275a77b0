"""The study definition: what a sweep searches, and what identifies it on disk.

A definition is built from the experiment module's `get_sweep(arg)` (plain data) updated
by the command line, and validated against the experiment's config before anything is
written. It is stored as `sweep.json` in the sweep dir; rerunning with a different
definition is refused, naming what differs, because the stored trials answer another
question. How many trials and where they run (workers, executor) are not part of it:
asking for more trials later extends the same study.

`get_sweep(arg)` returns a dict with any of:

  metric      'validation/NAME' (default: the task's default metric)
  mode        'max' | 'min' (default: the task's for its default metric)
  sampler     'grid' | 'random' | 'tpe' | 'gp' | 'cmaes', or {'name': ..., **options}
  pruner      'none' | 'median' | 'successive_halving' | 'hyperband', or {'name': ..., **options}
  num_trials  default number of trials (grid: always the grid's size)
  fixed       {'train.num_epochs': 3.0, ...}: config values for every trial
  params      the search space (see research/sweep/space.py)
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
from typing import Any, Mapping, Sequence

import ml_collections

from launch import overrides
from research.errors import ConfigError
from research.sweep import samplers, space as space_lib

SWEEP_KEYS = ("metric", "mode", "sampler", "pruner", "num_trials", "fixed", "params")
DEFAULT_SAMPLER = "tpe"
DEFAULT_PRUNER = "none"
DEFAULT_NUM_TRIALS = 20


@dataclasses.dataclass
class Definition:
  """Everything that identifies a study; `sweep.json` is `to_json()`."""
  experiment: str
  params: space_lib.Space
  fixed: dict[str, Any]
  metric: str
  mode: str
  sampler: dict[str, Any]
  pruner: dict[str, Any]
  seed: int = 0

  def to_json(self) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(self)))

  @classmethod
  def from_json(cls, data: Mapping[str, Any]) -> "Definition":
    return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})

  @property
  def direction(self) -> str:
    return "maximize" if self.mode == "max" else "minimize"

  @property
  def metric_key(self) -> str:
    """The metric's name inside the validation metrics (`accuracy`)."""
    return self.metric.split("/", 1)[1]

  def base_config(self) -> ml_collections.ConfigDict:
    """The experiment's config with the fixed values, before any sampled one."""
    return space_lib.apply(overrides.load_config(self.experiment), self.fixed)

  def trial_config(self, values: Mapping[str, Any]) -> ml_collections.ConfigDict:
    return space_lib.apply(self.base_config(), values, self.params)


def differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
  """`key: old -> new` for each leaf that differs between two stored definitions."""
  out = []
  for key in sorted(set(old) | set(new), key=str):
    a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
    if isinstance(a, Mapping) and isinstance(b, Mapping):
      out += differences(a, b, f"{prefix}{key}.")
    elif a != b:
      out.append(f"{prefix}{key}: {a!r} -> {b!r}")
  return out


def _named(value: Any, what: str) -> dict[str, Any]:
  """'tpe' or {'name': 'tpe', ...} -> {'name': 'tpe', ...}."""
  if isinstance(value, str):
    return {"name": value}
  if isinstance(value, Mapping) and isinstance(value.get("name"), str):
    return dict(value)
  raise ConfigError(f"get_sweep()['{what}'] must be a name or a dict with a 'name', got {value!r}.")


def _pick(flag: str | None, declared: Any, default: str, what: str) -> dict[str, Any]:
  """The flag's name wins; the module's options survive only if it names the same one."""
  declared = _named(declared if declared is not None else default, what)
  if flag and flag != declared["name"]:
    return {"name": flag}
  return declared


def parse_override(config: ml_collections.ConfigDict, key: str, text: str) -> Any:
  """`--config.KEY=TEXT` -> a value of the field's type (checked like launch.main's flags)."""
  current = space_lib.field_value(config, key, "--config override")
  overrides.check_value(key, current, text)
  if isinstance(current, bool):
    return overrides._BOOLS[text.lower()]  # pylint: disable=protected-access
  if isinstance(current, (int, float)):
    return type(current)(text)
  if isinstance(current, (tuple, list)):
    value = ast.literal_eval(text)
    return type(current)(value if isinstance(value, (tuple, list)) else (value,))
  return text


def load_sweep(experiment: str) -> dict[str, Any]:
  """The module's `get_sweep(arg)` (or {} without one), with its keys checked."""
  path, _, arg = experiment.partition(":")
  module = overrides.load_module(path)
  if not hasattr(module, "get_sweep"):
    return {}
  try:
    sweep = module.get_sweep(arg) if arg else module.get_sweep()
  except ValueError as e:
    raise ConfigError(f"--config={experiment}: get_sweep: {e}") from None
  unknown = [k for k in sweep if k not in SWEEP_KEYS]
  if unknown:
    close = difflib.get_close_matches(unknown[0], SWEEP_KEYS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"{path}: get_sweep() has unknown key {unknown[0]!r}.{hint} "
                      f"Its keys are {list(SWEEP_KEYS)}.")
  return dict(sweep)


def build(experiment: str, *, params: Sequence[str] = (),
          config_overrides: Sequence[tuple[str, str]] = (), sampler: str | None = None,
          pruner: str | None = None, metric: str | None = None, mode: str | None = None,
          num_trials: int | None = None, seed: int = 0) -> tuple[Definition, int]:
  """The validated definition and the number of trials asked for (flags win over the module).

  `params` are `--param` texts; given, they are the whole search space (the module's
  `params` are not used, its other keys are). `config_overrides` are `--config.KEY=VALUE`
  pairs, fixed for every trial. The
  metric is checked against the task later (`check_metric`), when the experiment is built.
  """
  sweep = load_sweep(experiment)
  config = overrides.load_config(experiment)
  fixed = {}
  for key, value in dict(sweep.get("fixed", {})).items():
    current = space_lib.field_value(config, key, "get_sweep()['fixed'] field")
    fixed[key] = space_lib.coerce(key, current, value)
  for key, text in config_overrides:
    fixed[key] = parse_override(config, key, text)
  space_lib.apply(config, fixed)
  declared = dict(space_lib.parse_flag(text) for text in params) or dict(sweep.get("params", {}))
  checked = space_lib.validate(declared, config)
  definition = Definition(
      experiment=experiment, params=checked, fixed=json.loads(json.dumps(fixed)),
      metric=_metric_name(metric or sweep.get("metric") or ""), mode=mode or sweep.get("mode", ""),
      sampler=_pick(sampler, sweep.get("sampler"), DEFAULT_SAMPLER, "sampler"),
      pruner=_pick(pruner, sweep.get("pruner"), DEFAULT_PRUNER, "pruner"), seed=seed)
  if definition.mode not in ("", "max", "min"):
    raise ConfigError(f"--mode={definition.mode!r}: use 'max' or 'min'.")
  samplers.make_sampler(definition.sampler, checked, seed)  # checks the name and options
  samplers.make_pruner(definition.pruner)
  trials = num_trials if num_trials is not None else sweep.get("num_trials")
  if definition.sampler["name"] == "grid":  # the grid, unless --num_trials asks for fewer
    size = space_lib.grid_size(checked)
    trials = size if num_trials is None else min(num_trials, size)
  trials = DEFAULT_NUM_TRIALS if trials is None else trials
  if not isinstance(trials, int) or trials < 1:
    raise ConfigError(f"--num_trials={trials!r}: a sweep needs at least 1 trial.")
  return definition, trials


def _metric_name(metric: str) -> str:
  if not metric:
    return ""
  split, slash, name = metric.rpartition("/")
  if not slash:
    return f"validation/{metric}"
  if split != "validation":
    raise ConfigError(f"--metric={metric}: a sweep selects on the validation split only "
                      "(validation/NAME); the test split is for the final run of the best "
                      "config.")
  return metric


def check_metric(definition: Definition, metric_names: Sequence[str], default_metric: str,
                 default_mode: str) -> None:
  """Fills in the task's default metric / mode and checks the metric exists."""
  if not definition.metric:
    definition.metric = f"validation/{default_metric}"
  name = definition.metric_key
  if name not in metric_names:
    close = difflib.get_close_matches(name, list(metric_names), n=1)
    hint = f" Did you mean validation/{close[0]}?" if close else ""
    raise ConfigError(f"--metric={definition.metric}: the task has no validation metric {name!r}."
                      f"{hint} Its metrics are {sorted(metric_names)}.")
  if not definition.mode:
    if name != default_metric:
      raise ConfigError(f"--metric={definition.metric}: say whether to maximise or minimise it "
                        "with --mode=max or --mode=min (or 'mode' in get_sweep).")
    definition.mode = default_mode
