"""Checks `--config=...` and `--config.a.b=value` flags before absl parses them.

ml_collections' own errors for a mistyped key or a value of the wrong type are long
tracebacks; here each becomes one line naming the field, the closest valid key or the
expected type.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import types
from typing import Any, Sequence

import ml_collections

from research.errors import ConfigError

EXPERIMENTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "experiments")


def experiment_names() -> list[str]:
  return sorted(f[:-3] for f in os.listdir(EXPERIMENTS_DIR)
                if f.endswith(".py") and not f.startswith("_"))


def load_module(path: str) -> types.ModuleType:
  """Imports an experiment file; a missing file names the closest experiment."""
  if not os.path.isfile(path):
    name = os.path.splitext(os.path.basename(path))[0]
    close = difflib.get_close_matches(name, experiment_names(), n=1)
    hint = f" Did you mean experiments/{close[0]}.py?" if close else ""
    raise ConfigError(f"experiment file {path!r} does not exist.{hint} "
                      "`python -m launch.main --list` shows every experiment.")
  spec = importlib.util.spec_from_file_location(
      f"experiments.{os.path.splitext(os.path.basename(path))[0]}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"{path} has no get_config(arg=None) function: is it an experiment?")
  return module


def load_config(spec: str) -> ml_collections.ConfigDict:
  """`path/to/exp.py[:variant]` -> the experiment's config."""
  path, _, arg = spec.partition(":")
  module = load_module(path)
  try:
    return module.get_config(arg) if arg else module.get_config()
  except ValueError as e:
    # By convention get_config raises ValueError for a variant it does not know (`:tny`):
    # that is a typo on the command line, not a bug, so it gets one line, not a traceback.
    raise ConfigError(f"--config={spec}: {e}") from None


def _flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  keys = []
  for key, value in config.items():
    keys.append(prefix + key)
    if isinstance(value, ml_collections.ConfigDict):
      keys.extend(_flat_keys(value, f"{prefix}{key}."))
  return keys


def _lookup(config: ml_collections.ConfigDict, dotted: str) -> Any:
  node: Any = config
  for part in dotted.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      valid = _flat_keys(config)
      close = difflib.get_close_matches(dotted, valid, n=1, cutoff=0.5)
      hint = f" Did you mean --config.{close[0]}?" if close else ""
      raise ConfigError(f"--config.{dotted}: the config has no field {dotted!r}.{hint}")
    node = node[part]
  return node


_BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def check_value(dotted: str, current: Any, text: str) -> None:
  """Raises unless `text` parses as the type of the field's current value."""
  expected = type(current)
  try:
    if isinstance(current, bool):
      if text.lower() not in _BOOLS:
        raise ValueError
    elif isinstance(current, int):
      int(text)
    elif isinstance(current, float):
      float(text)
    elif isinstance(current, (tuple, list)):
      value = ast.literal_eval(text)
      if not isinstance(value, (tuple, list, int, float, str)):
        raise ValueError
    else:
      return  # strings and None-typed fields take any text
  except (ValueError, SyntaxError):
    raise ConfigError(f"--config.{dotted}={text!r}: expected a value of type "
                      f"{expected.__name__} (current value {current!r}).") from None


def parse_config_flags(argv: Sequence[str]) -> tuple[str | None, list[tuple[str, str]]]:
  """The `--config` spec and the `(key, value)` overrides in argv."""
  spec, overrides = None, []
  args = list(argv)
  i = 0
  while i < len(args):
    arg = args[i]
    name, eq, value = arg.partition("=")
    if name in ("--config", "-config") or name.startswith(("--config.", "-config.")):
      if not eq and i + 1 < len(args):
        value = args[i + 1]
        i += 1
      if name.lstrip("-") == "config":
        spec = value
      else:
        overrides.append((name.lstrip("-")[len("config."):], value))
    i += 1
  return spec, overrides


def validate_flags(argv: Sequence[str]) -> None:
  """Loads the experiment named by --config and checks every override against it."""
  spec, overrides = parse_config_flags(argv)
  if spec is None:
    if overrides:
      raise ConfigError("--config.* overrides given without --config=experiments/NAME.py.")
    return
  config = load_config(spec)
  for dotted, text in overrides:
    current = _lookup(config, dotted)
    if isinstance(current, ml_collections.ConfigDict):
      raise ConfigError(f"--config.{dotted} is a section, not a field; set one of its "
                        f"fields, e.g. --config.{dotted}.{next(iter(current.keys()), '...')}=...")
    check_value(dotted, current, text)
