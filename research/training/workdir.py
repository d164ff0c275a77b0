"""The workdir contract: one experiment per directory; the same command resumes it.

`config.json` records the resolved config. Running a different config in a workdir
that already holds one is refused (naming the differing fields) unless the caller asks
to overwrite, which removes only what a run writes.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from typing import Any

import ml_collections

from research.errors import WorkdirError
from research.training.writers import atomic_write_json

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"  # held while a process trains the workdir (see `WorkdirLock`)
RUN_OUTPUTS = ("checkpoints", "checkpoints_best", "tensorboard", "metrics.jsonl",
               "result.json", "evaluation.json", "dataset.json", "samples", "quantized",
               CONFIG_FILE)


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as JSON-compatible data (tuples become lists)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
  """The fields that differ, as 'config.key: old -> new' lines.

  A field present on one side only and at its schema default there is not a difference:
  the schema gained (or lost) a field since the run was made, and the run used what the
  default means. So adding a config field never strands existing workdirs.
  """
  from research.config import base_config  # the schema; imported late to avoid a cycle
  a, b = _flatten(old), _flatten(new)
  defaults = _flatten(config_to_dict(base_config()))

  def differs(k: str) -> bool:
    if k in a and k in b:
      return a[k] != b[k]
    present = a[k] if k in a else b[k]
    return k not in defaults or defaults[k] != present

  return [f"config.{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
          for k in sorted(set(a) | set(b)) if differs(k) and not k.startswith(EXECUTION_ONLY)]


# How a run is executed, not what it computes, so a run may resume with other values:
# config.mesh is where arrays live (orbax reshards the checkpoint to another device layout
# or process count), and steps per dispatch give the same numbers (tested) at another speed.
EXECUTION_ONLY = ("mesh.", "train.steps_per_dispatch")


def with_defaults(saved: dict[str, Any]) -> ml_collections.ConfigDict:
  """A saved config.json as a ConfigDict, completed with the schema's defaults for fields
  added since it was written (which `config_differences` treats as equal)."""
  from research.config import base_config

  def merge(defaults: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    out = dict(defaults)
    for key, value in values.items():
      out[key] = (merge(defaults[key], value)
                  if isinstance(value, dict) and isinstance(defaults.get(key), dict) else value)
    return out

  return ml_collections.ConfigDict(merge(config_to_dict(base_config()), saved))


def read_config(workdir: str) -> dict[str, Any] | None:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise WorkdirError(f"{path} is not valid JSON ({e}); pass --overwrite to start this "
                       "workdir over, or use another --workdir.") from e


def check(workdir: str, config: ml_collections.ConfigDict, overwrite: bool) -> None:
  """Raises if the workdir holds a different experiment (and overwrite is off)."""
  old = read_config(workdir)
  if old is None or overwrite:
    return
  diffs = config_differences(old, config_to_dict(config))
  if diffs:
    shown = "\n  ".join(diffs[:10]) + ("\n  ..." if len(diffs) > 10 else "")
    raise WorkdirError(
        f"workdir {workdir} holds a different config ({len(diffs)} field(s) differ):\n  "
        f"{shown}\nUse another --workdir, or pass --overwrite to discard that run.")


def prepare(workdir: str, config: ml_collections.ConfigDict, overwrite: bool) -> None:
  """Creates the workdir (or clears a run's outputs on overwrite) and writes config.json."""
  check(workdir, config, overwrite)
  if overwrite:
    for name in RUN_OUTPUTS:
      path = os.path.join(workdir, name)
      if os.path.isdir(path):
        shutil.rmtree(path)
      elif os.path.exists(path):
        os.remove(path)
  os.makedirs(workdir, exist_ok=True)
  atomic_write_json(os.path.join(workdir, CONFIG_FILE), config_to_dict(config))


class WorkdirLock:
  """An exclusive lock on WORKDIR/.lock while one process trains the workdir.

  Two processes training the same workdir (the same command started twice, a sweep and a
  reproduction sharing a directory) would interleave their checkpoints and metrics; the
  second is refused, naming the first's PID. It is an advisory `flock`, which the OS
  releases when the holder exits in any way (SIGKILL included), so a crash never leaves a
  stale lock behind. `enabled=False` (processes other than 0 of a multi-process run, which
  never write the workdir) makes it a no-op.
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self.path = os.path.join(workdir, LOCK_FILE)
    self.enabled = enabled
    self._fd: int | None = None

  def __enter__(self) -> WorkdirLock:
    if not self.enabled:
      return self
    os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
      os.close(fd)
      raise WorkdirError(
          f"workdir {os.path.dirname(self.path)} is being trained by another process (pid "
          f"{holder}): wait for it to finish (rerunning then resumes), or use another "
          "--workdir.") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    self._fd = fd
    return self

  def __exit__(self, *exc: Any) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None
