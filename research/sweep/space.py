"""Search spaces: plain-data parameter specs, checked against the experiment's config.

A space maps a config field (`optimizer.learning_rate`) to how to sample it:

  {"type": "choice", "values": [32, 64, 128]}
  {"type": "uniform" | "loguniform", "low": 1e-4, "high": 1e-2}
  {"type": "int" | "logint", "low": 16, "high": 256, "step": 16}     # step: int only
  {"type": "switch", "values": ["l1", "l2"]}   # not a config field: only gates others
  ... any of them with "condition": {"penalty": ["l1", "elastic_net"]}

A conditional parameter is sampled only when the named choice or switch took one of the
listed values; otherwise its field keeps the config's value. Specs are validated here,
before anything is written, so that a typo fails in the terminal and not in 20 trials.
The command line writes the same specs as `NAME=TYPE:ARGS[@OTHER=V1,V2]` (`parse_flag`).
"""

from __future__ import annotations

import ast
import difflib
import json
import math
from typing import Any, Mapping

import ml_collections

from launch import overrides
from research.errors import ConfigError

CHOICE_TYPES = ("choice", "switch")
RANGE_TYPES = ("uniform", "loguniform", "int", "logint")
TYPES = CHOICE_TYPES + RANGE_TYPES
_KEYS = {"choice": {"values"}, "switch": {"values"}, "uniform": {"low", "high"},
         "loguniform": {"low", "high"}, "int": {"low", "high", "step"},
         "logint": {"low", "high"}}
_FLAG_HELP = ("expected NAME=TYPE:ARGS[@OTHER=V1,V2], e.g. optimizer.learning_rate="
              "loguniform:1e-4:1e-2, train.batch_size=choice:32,64, model.hidden_sizes="
              "choice:(256,),(512,), train.num_steps=int:100:1000:100, or "
              "optimizer.l1=loguniform:1e-5:1e-1@penalty=l1,elastic_net")

Space = dict[str, dict[str, Any]]


# ---------------------------------------------------------------------------------------------
# The command line: `--param=NAME=TYPE:ARGS[@OTHER=V1,V2]`.


def _literal(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare word: adam, relu, l1


def _values(text: str) -> list[Any]:
  """`32,64` -> [32, 64]; `(256,),(512,)` -> [(256,), (512,)]; `adam,sgd` -> ['adam', 'sgd']."""
  try:
    values = ast.literal_eval(f"[{text}]")
  except (ValueError, SyntaxError):
    values = [_literal(v.strip()) for v in text.split(",")]
  return list(values)


def parse_flag(text: str) -> tuple[str, dict[str, Any]]:
  """One `--param` flag -> (name, spec); the spec is validated later with the others."""
  name, eq, rest = text.partition("=")
  kind, colon, args = rest.partition(":")
  if not eq or not name or not colon or kind not in TYPES:
    raise ConfigError(f"--param={text}: {_FLAG_HELP}.")
  args, _, condition = args.partition("@")
  spec: dict[str, Any] = {"type": kind}
  if kind in CHOICE_TYPES:
    spec["values"] = _values(args)
  else:
    parts = args.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and kind != "int"):
      raise ConfigError(f"--param={text}: a {kind} range is {kind}:LOW:HIGH"
                        f"{'[:STEP]' if kind == 'int' else ''}; {_FLAG_HELP}.")
    spec.update(low=_literal(parts[0]), high=_literal(parts[1]))
    if len(parts) == 3:
      spec["step"] = _literal(parts[2])
  if condition:
    other, eq, values = condition.partition("=")
    if not eq or not other:
      raise ConfigError(f"--param={text}: a condition is @OTHER=V1,V2; {_FLAG_HELP}.")
    spec["condition"] = {other: _values(values)}
  return name, spec


# ---------------------------------------------------------------------------------------------
# Validation against the config.


def field_value(config: ml_collections.ConfigDict, name: str,
                what: str = "search space parameter") -> Any:
  """The field's current value, or an error naming `what` and the closest field."""
  try:
    value = overrides._lookup(config, name)  # pylint: disable=protected-access
  except ConfigError:
    valid = overrides._flat_keys(config)  # pylint: disable=protected-access
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    switch = " (A parameter that only gates others is type 'switch'.)" if "space" in what else ""
    raise ConfigError(f"{what} {name!r}: the config has no field {name!r}.{hint}"
                      f"{switch}") from None
  if isinstance(value, ml_collections.ConfigDict):
    raise ConfigError(f"{what} {name!r} is a config section, not a field; use one of its "
                      f"fields, e.g. {name}.{next(iter(value.keys()), '...')}.")
  return value


def coerce(name: str, current: Any, value: Any) -> Any:
  """`value` as the type of the field (ints for float fields, lists for tuple fields)."""
  ok = True
  if isinstance(current, bool):
    ok = isinstance(value, bool)
  elif isinstance(current, int):
    ok = isinstance(value, int) and not isinstance(value, bool)
  elif isinstance(current, float):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    value = float(value) if ok else value
  elif isinstance(current, (tuple, list)):
    ok = isinstance(value, (tuple, list))
    value = type(current)(value) if ok else value
  elif isinstance(current, str):
    ok = isinstance(value, str)
  if not ok:
    raise ConfigError(f"search space parameter {name!r}: value {value!r} is not a "
                      f"{type(current).__name__} like the field's current value {current!r}.")
  return value


def _number(name: str, spec: Mapping[str, Any], key: str) -> float:
  value = spec.get(key)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    raise ConfigError(f"search space parameter {name!r}: {key} must be a finite number, got "
                      f"{value!r}.")
  return value


def _check_range(name: str, spec: dict[str, Any], current: Any) -> None:
  kind = spec["type"]
  low, high = _number(name, spec, "low"), _number(name, spec, "high")
  if low > high:
    raise ConfigError(f"search space parameter {name!r}: inverted range, low={low!r} > "
                      f"high={high!r}; swap them.")
  if low == high:
    raise ConfigError(f"search space parameter {name!r}: empty range, low == high == {low!r}; "
                      f"widen it, or fix the value with --config.{name}={low!r} instead.")
  if kind.startswith("log") and low <= 0:
    raise ConfigError(f"search space parameter {name!r}: a {kind} range must be > 0, got "
                      f"low={low!r} (a log scale cannot include 0); use e.g. low=1e-6, or "
                      "type 'uniform'.")
  if kind in ("int", "logint"):
    step = spec.setdefault("step", 1) if kind == "int" else 1
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high, step)):
      raise ConfigError(f"search space parameter {name!r}: an {kind} range needs integer low, "
                        f"high and step, got {low!r}, {high!r}, {step!r}.")
    if step < 1:
      raise ConfigError(f"search space parameter {name!r}: step must be >= 1, got {step}.")
    if isinstance(current, bool) or not isinstance(current, (int, float)):
      raise ConfigError(f"search space parameter {name!r}: an {kind} range needs a numeric "
                        f"field; the current value is {current!r}. Use type 'choice'.")
  elif not isinstance(current, float):
    raise ConfigError(f"search space parameter {name!r}: a {kind} range samples floats, but "
                      f"the field holds {type(current).__name__} {current!r}. Use type "
                      f"'{'logint' if kind == 'loguniform' else 'int'}' or 'choice'.")


def _check_spec(name: str, spec: Any, config: ml_collections.ConfigDict) -> dict[str, Any]:
  if not isinstance(spec, Mapping) or spec.get("type") not in TYPES:
    got = spec.get("type") if isinstance(spec, Mapping) else spec
    close = difflib.get_close_matches(str(got), TYPES, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"search space parameter {name!r}: type {got!r} is not one of "
                      f"{list(TYPES)}.{hint}")
  spec = json.loads(json.dumps(dict(spec)))  # a plain, JSON-safe copy
  kind = spec["type"]
  unknown = set(spec) - _KEYS[kind] - {"type", "condition"}
  if unknown:
    raise ConfigError(f"search space parameter {name!r}: unknown key(s) {sorted(unknown)} for "
                      f"type {kind!r}; it takes {sorted(_KEYS[kind] | {'condition'})}.")
  current = None if kind == "switch" else field_value(config, name)
  if kind in CHOICE_TYPES:
    values = spec.get("values")
    if not isinstance(values, list) or not values:
      raise ConfigError(f"search space parameter {name!r}: 'values' must be a non-empty list, "
                        f"got {values!r}.")
    if kind == "choice":
      for v in values:
        coerce(name, current, v)
    if len({json.dumps(v) for v in values}) != len(values):
      raise ConfigError(f"search space parameter {name!r}: duplicate values in {values!r}.")
  else:
    _check_range(name, spec, current)
  return spec


def _check_conditions(space: Space) -> None:
  for name, spec in space.items():
    for other, allowed in spec.get("condition", {}).items():
      if other not in space or space[other]["type"] not in CHOICE_TYPES:
        choices = [n for n, s in space.items() if s["type"] in CHOICE_TYPES and n != name]
        raise ConfigError(f"search space parameter {name!r}: its condition names {other!r}, "
                          f"which is not a choice or switch of this space (those are "
                          f"{choices}).")
      allowed = allowed if isinstance(allowed, list) else [allowed]
      spec["condition"][other] = allowed
      missing = [v for v in allowed if v not in space[other]["values"]]
      if missing:
        raise ConfigError(f"search space parameter {name!r}: condition value(s) {missing} are "
                          f"not among {other!r}'s values {space[other]['values']}.")
  order(space)  # raises on a cycle


def validate(space: Mapping[str, Any], config: ml_collections.ConfigDict) -> Space:
  """The checked, JSON-safe space; raises ConfigError naming the first bad parameter."""
  if not isinstance(space, Mapping) or not space:
    raise ConfigError("the search space is empty: declare params in get_sweep() or pass "
                      "--param=NAME=TYPE:ARGS.")
  checked = {name: _check_spec(name, spec, config) for name, spec in space.items()}
  _check_conditions(checked)
  return checked


def order(space: Space) -> list[str]:
  """Parameter names with every condition's target before the parameters it gates."""
  done: list[str] = []
  pending = list(space)
  while pending:
    ready = [n for n in pending if all(o in done for o in space[n].get("condition", {}))]
    if not ready:
      raise ConfigError(f"search space parameters {pending} have conditions that form a cycle.")
    done += ready
    pending = [n for n in pending if n not in ready]
  return done


# ---------------------------------------------------------------------------------------------
# Sampling: one Optuna trial -> values.


def encode(value: Any) -> Any:
  """Optuna's categorical choices are scalars: a list value travels as its JSON text."""
  return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def decode(spec: dict[str, Any], label: Any) -> Any:
  """The choice value whose `encode` is `label` (what Optuna stored)."""
  return spec["values"][[encode(v) for v in spec["values"]].index(label)]


def suggest(trial: Any, space: Space) -> dict[str, Any]:
  """Samples the space through an `optuna.Trial` (define-by-run: conditions are just ifs)."""
  values: dict[str, Any] = {}
  for name in order(space):
    spec = space[name]
    gates = spec.get("condition", {})
    if any(o not in values or values[o] not in allowed for o, allowed in gates.items()):
      continue
    kind = spec["type"]
    if kind in CHOICE_TYPES:
      label = trial.suggest_categorical(name, [encode(v) for v in spec["values"]])
      values[name] = decode(spec, label)
    elif kind in ("uniform", "loguniform"):
      values[name] = trial.suggest_float(name, spec["low"], spec["high"], log=kind == "loguniform")
    else:
      values[name] = trial.suggest_int(name, spec["low"], spec["high"], step=spec.get("step", 1),
                                       log=kind == "logint")
  return values


def grid(space: Space) -> dict[str, list[Any]]:
  """The grid of a space of choices (Optuna's GridSampler takes the encoded labels)."""
  bad = [n for n, s in space.items() if s["type"] not in CHOICE_TYPES]
  if bad:
    raise ConfigError(f"the grid sampler needs every parameter to be a choice; {bad} are "
                      "ranges. Make them choices (--param=NAME=choice:V1,V2) or use "
                      "--sampler=random or tpe.")
  gated = [n for n, s in space.items() if s.get("condition")]
  if gated:
    raise ConfigError(f"the grid sampler does not support conditional parameters {gated}; "
                      "use --sampler=random or tpe.")
  return {n: [encode(v) for v in s["values"]] for n, s in space.items()}


def grid_size(space: Space) -> int:
  return math.prod(len(v) for v in grid(space).values())


def apply(config: ml_collections.ConfigDict, values: Mapping[str, Any],
          space: Space | None = None) -> ml_collections.ConfigDict:
  """Sets each sampled (or fixed) field on `config`; switches are not fields and are skipped."""
  for name, value in values.items():
    if space is not None and space.get(name, {}).get("type") == "switch":
      continue
    parent, _, key = name.rpartition(".")
    node = config
    for part in filter(None, parent.split(".")):
      node = node[part]
    node[key] = coerce(name, node[key], value)
  return config
