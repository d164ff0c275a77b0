"""A whole sweep: validate, open (or resume) the study, run the workers, write the report.

Everything a user can get wrong (search space, sampler, metric, sweep dir holding another
study, workers, devices, SLURM missing) is checked before the sweep dir is touched. Then
the launcher takes the dir's lock (one launcher per sweep dir), recovers trials an earlier
run left interrupted, and lets the workers pull the remaining trials.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import Any, Sequence

import optuna
from optuna.trial import TrialState

from research import cluster as cluster_lib
from research.sweep import definition as definition_lib, executors, report, study as study_lib
from research.sweep.study import SweepError

EXECUTORS = ("local", "slurm")


@dataclasses.dataclass
class Plan:
  """A validated sweep: what to search (the definition) and how to run it."""
  definition: definition_lib.Definition
  sweep_dir: str
  num_trials: int
  workers: int
  executor: str
  devices: list[str | None]
  devices_per_worker: int
  slurm: dict[str, Any]
  cluster: str


def plan(experiment: str, sweep_dir: str, *, params: Sequence[str] = (),
         config_overrides: Sequence[tuple[str, str]] = (), sampler: str | None = None,
         pruner: str | None = None, metric: str | None = None, mode: str | None = None,
         num_trials: int | None = None, seed: int = 0, workers: int = 1,
         executor: str = "local", devices_per_worker: int = 0,
         slurm: dict[str, Any] | None = None, cluster: str = "slurm") -> Plan:
  """Checks everything and writes nothing; raises a UserError naming the bad input."""
  if not sweep_dir:
    raise SweepError("--sweep_dir is missing: name a directory for the study and its trials.")
  if workers < 1:
    raise SweepError(f"--workers={workers}: a sweep needs at least 1 worker.")
  if devices_per_worker < 0:
    raise SweepError(f"--devices_per_worker={devices_per_worker} must be >= 0 (0: automatic).")
  if executor not in EXECUTORS:
    raise SweepError(f"--executor={executor!r}: use one of {list(EXECUTORS)}.")
  if executor == "slurm" and cluster == "slurm":
    cluster_lib.check_slurm()
  definition, trials = definition_lib.build(
      experiment, params=params, config_overrides=config_overrides, sampler=sampler,
      pruner=pruner, metric=metric, mode=mode, num_trials=num_trials, seed=seed)
  devices = (executors.device_groups(workers, devices_per_worker) if executor == "local"
             else [None] * workers)
  from research.training import loop  # builds the task, loads the data: bad data fails here
  exp = loop.build(definition.base_config())
  definition_lib.check_metric(definition, exp.task.metric_names(), exp.task.default_metric,
                              exp.task.default_mode)
  study_lib.check_sweep_dir(sweep_dir, definition)
  return Plan(definition, sweep_dir, trials, workers, executor, devices, devices_per_worker,
              dict(slurm or {}), cluster)


class _Progress:
  """Prints each trial once it finishes, and the best so far."""

  def __init__(self, study: optuna.Study, definition: definition_lib.Definition):
    self.study, self.definition = study, definition
    self.seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}

  def __call__(self) -> None:
    trials = self.study.get_trials(deepcopy=False)
    new = [t for t in trials if t.state.is_finished() and t.number not in self.seen]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    sign = 1.0 if self.definition.mode == "max" else -1.0
    best = max(complete, key=lambda t: sign * t.value) if complete else None
    for t in new:
      self.seen.add(t.number)
      value = "" if t.value is None else f" {self.definition.metric}={t.value:.5g}"
      note = t.user_attrs.get("error") or t.user_attrs.get("pruned") or ""
      print(f"trial {t.number} {t.state.name}{value} {t.params}"
            + (f" ({note})" if note else "")
            + (f" [best: trial {best.number}, {best.value:.5g}]" if best else ""), flush=True)


def execute(p: Plan, prefork: executors.Prefork | None = None) -> dict[str, Any]:
  """Runs a planned sweep to its budget (resuming what the sweep dir holds) and reports."""
  os.makedirs(p.sweep_dir, exist_ok=True)
  with study_lib.file_lock(os.path.join(p.sweep_dir, ".lock"), blocking=False) as locked:
    if not locked:
      raise SweepError(f"--sweep_dir={p.sweep_dir} is in use by another running sweep; wait "
                       "for it to finish (or stop it) and rerun.")
    study = study_lib.create(p.sweep_dir, p.definition)
    before = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    retried = study_lib.recover(study)
    done = study_lib.used_budget(study)
    if done or retried:
      print(f"sweep: resuming {p.sweep_dir}: {done} trial(s) already done"
            + (f", retrying interrupted trial(s) {retried}" if retried else ""), flush=True)
    start_time = time.time()
    interrupted = False
    if done < p.num_trials:
      if p.executor == "local":
        start = executors.local(p.sweep_dir, p.num_trials, p.devices, prefork)
      else:
        start = executors.submitit_jobs(p.sweep_dir, p.num_trials, p.devices_per_worker,
                                        p.slurm, p.cluster)
      threading.Thread(target=report.preload, daemon=True).start()
      try:
        executors.supervise(study, p.num_trials, p.workers, start,
                            _Progress(study, p.definition))
      except KeyboardInterrupt:
        interrupted = True
    summary = report.write(study, p.definition, p.sweep_dir)
  ran = [t for t in study.get_trials(deepcopy=False)
         if t.state.is_finished() and t.number not in before and "seconds" in t.user_attrs]
  summary.update(interrupted=interrupted, seconds=time.time() - start_time, ran=len(ran),
                 trial_seconds=sum(t.user_attrs["seconds"] for t in ran),
                 states={s.name: len(study.get_trials(deepcopy=False, states=(s,)))
                         for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)})
  return summary


def run_sweep(experiment: str, sweep_dir: str, prefork: bool = False,
              **kwargs: Any) -> dict[str, Any]:
  """`plan` then `execute`: the whole sweep, as `python -m launch.sweep` runs it.

  `prefork` forks the local workers first, before `plan` starts JAX (see
  `executors.Prefork`); the command line does, a caller that already runs JAX need not.
  """
  workers = kwargs.get("workers", 1)
  local = kwargs.get("executor", "local") == "local"
  if prefork and local and isinstance(workers, int) and workers >= 1:
    from research.sweep import worker
    worker.warm_up()
    forked = executors.Prefork(workers)
  else:
    forked = None
  try:
    return execute(plan(experiment, sweep_dir, **kwargs), forked)
  finally:
    if forked is not None:
      forked.close()
