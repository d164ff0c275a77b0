"""The sweep dir and the Optuna study stored in it.

  sweep.json     the study definition; a different one in the same dir is refused
  study.db       Optuna's RDB storage on SQLite: every trial, its params, state, values
  trials/NNNN/   each trial's workdir (config.json, checkpoints, metrics.jsonl, ...)
  logs/          one log per worker;  jax_cache/  the shared JAX compilation cache

SQLite (not Optuna's journal file) because one file holds everything and the standard
`optuna-dashboard sqlite:///...` reads it; several worker processes write to it, so each
connection waits up to 60 s for the database lock instead of failing.

The budget is exact: a worker asks for a trial only while holding `ask.lock` and only if
fewer than `num_trials` trials count. A trial counts once it starts, unless it was
interrupted (the sweep stopped under it): `recover` marks those failed and enqueues the
same parameters again, so the retry resumes from the trial's own checkpoint. Finished
trials (complete, pruned, failed) are never rerun.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from typing import Any, Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState

from research.errors import UserError
from research.sweep.definition import Definition, differences
from research.training.writers import atomic_write_json

STUDY_NAME = "sweep"
DEFINITION_FILE = "sweep.json"
DB_FILE = "study.db"
TRIALS_DIR = "trials"
INTERRUPTED = "interrupted"


class SweepError(UserError):
  """The sweep dir, the executor or the workers cannot run this sweep."""


def storage_url(sweep_dir: str) -> str:
  return f"sqlite:///{os.path.abspath(os.path.join(sweep_dir, DB_FILE))}"


def open_storage(sweep_dir: str) -> optuna.storages.RDBStorage:
  return optuna.storages.RDBStorage(storage_url(sweep_dir),
                                    engine_kwargs={"connect_args": {"timeout": 60}})


def read_definition(sweep_dir: str) -> Definition:
  with open(os.path.join(sweep_dir, DEFINITION_FILE)) as f:
    return Definition.from_json(json.load(f))


def check_sweep_dir(sweep_dir: str, definition: Definition) -> bool:
  """Raises unless the dir is new, empty, or holds this same study; True if it holds it."""
  path = os.path.join(sweep_dir, DEFINITION_FILE)
  if not os.path.exists(path):
    if os.path.isdir(sweep_dir) and [f for f in os.listdir(sweep_dir) if not f.startswith(".")]:
      raise SweepError(f"--sweep_dir={sweep_dir} is not empty and holds no {DEFINITION_FILE}: "
                       "it is not a sweep dir. Use a new or empty directory.")
    return False
  try:
    with open(path) as f:
      stored = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise SweepError(f"{path} is unreadable ({e}): use another --sweep_dir.") from None
  diffs = differences(stored, definition.to_json())
  if diffs:
    shown = "\n  ".join(diffs[:10]) + ("\n  ..." if len(diffs) > 10 else "")
    raise SweepError(
        f"--sweep_dir={sweep_dir} holds a different study ({len(diffs)} difference(s), "
        f"stored -> asked):\n  {shown}\nRerun with the stored definition to resume it "
        "(see its sweep.json), or use another --sweep_dir.")
  return True


def create(sweep_dir: str, definition: Definition) -> optuna.Study:
  """Writes sweep.json and creates (or reopens) the study."""
  os.makedirs(os.path.join(sweep_dir, TRIALS_DIR), exist_ok=True)
  atomic_write_json(os.path.join(sweep_dir, DEFINITION_FILE), definition.to_json())
  return optuna.create_study(storage=open_storage(sweep_dir), study_name=STUDY_NAME,
                             direction=definition.direction, load_if_exists=True)


def load(sweep_dir: str, sampler: optuna.samplers.BaseSampler | None = None,
         pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
  return optuna.load_study(study_name=STUDY_NAME, storage=open_storage(sweep_dir),
                           sampler=sampler, pruner=pruner)


@contextlib.contextmanager
def file_lock(path: str, blocking: bool = True) -> Iterator[bool]:
  """An exclusive `flock` on `path`; yields False if `blocking` is off and it is held."""
  with open(path, "a+") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
      yield False
      return
    try:
      yield True
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def counts_toward_budget(trial: FrozenTrial) -> bool:
  """Started and not interrupted (an enqueued retry counts once a worker takes it)."""
  if trial.state == TrialState.WAITING:
    return False
  return not (trial.state == TrialState.FAIL and trial.user_attrs.get(INTERRUPTED))


def used_budget(study: optuna.Study) -> int:
  return sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))


def ask_within_budget(study: optuna.Study, sweep_dir: str, num_trials: int) -> optuna.Trial | None:
  """A new (or enqueued) trial, or None once `num_trials` trials count."""
  with file_lock(os.path.join(sweep_dir, "ask.lock")):
    if used_budget(study) >= num_trials:
      return None
    return study.ask()


def set_user_attr(study: optuna.Study, number: int, key: str, value: Any) -> None:
  """Sets an attribute on a running trial owned by another process (e.g. a dead worker)."""
  # Optuna's public Trial API only reaches trials this process asked for.
  storage, study_id = study._storage, study._study_id  # pylint: disable=protected-access
  storage.set_trial_user_attr(
      storage.get_trial_id_from_study_id_trial_number(study_id, number), key, value)


def fail_running(study: optuna.Study, numbers: list[int], error: str,
                 interrupted: bool = False) -> None:
  """Marks running trials failed with `error` (a worker died, or the sweep stopped)."""
  for number in numbers:
    set_user_attr(study, number, "error", error)
    if interrupted:
      set_user_attr(study, number, INTERRUPTED, True)
    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)


def recover(study: optuna.Study) -> list[int]:
  """After an interruption: fail what was running, enqueue each interrupted trial again.

  Only call this while no worker runs (the launcher holds the sweep dir's lock). Returns
  the numbers of the trials that will be retried.
  """
  running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
  fail_running(study, running, "interrupted: the sweep stopped while this trial ran; it is "
               "retried from its checkpoint", interrupted=True)
  trials = study.get_trials(deepcopy=False)
  retried = {t.user_attrs.get("retry_of") for t in trials}
  todo = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get(INTERRUPTED)
          and t.number not in retried]
  for t in todo:
    study.enqueue_trial(t.params, user_attrs={"retry_of": t.number,
                                              "workdir": t.user_attrs.get("workdir")})
  return [t.number for t in todo]


def trial_workdir(sweep_dir: str, trial: optuna.Trial) -> str:
  """A retry reuses its original's workdir (and so resumes from its checkpoint)."""
  inherited = trial.user_attrs.get("workdir")
  relative = inherited or os.path.join(TRIALS_DIR, f"{trial.number:04d}")
  return os.path.join(sweep_dir, relative)
