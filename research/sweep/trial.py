"""One trial: sample a config, train it in its own workdir, tell Optuna how it went.

The trial runs in-process (the worker has JAX and the framework imported already, and
compiled functions in the shared cache) through the same `train_and_evaluate` as
`launch.main`, so a trial's workdir is an ordinary run that `launch.main` can resume or
evaluate. Every validation metric is reported to the pruner;
a pruned trial stops at once. Whatever goes wrong inside a trial (a bad sampled value, a
NaN loss, an exception in the model) is recorded on that trial and never leaves it.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from typing import Any

import optuna
from optuna.trial import TrialState

from research.errors import UserError
from research.sweep import space as space_lib, study as study_lib
from research.sweep.definition import Definition


class Interrupted(Exception):
  """The worker was asked to stop (SIGTERM) in the middle of a trial."""


class _CompileCounter:
  """Counts JAX persistent-cache hits and misses while a trial runs (for BENCHMARKS.md)."""

  def __init__(self):
    self.hits = self.misses = 0
    import jax.monitoring
    jax.monitoring.register_event_listener(self._on_event)

  def _on_event(self, event: str, **kwargs: Any) -> None:
    if event == "/jax/compilation_cache/cache_hits":
      self.hits += 1
    elif event == "/jax/compilation_cache/cache_misses":
      self.misses += 1


_COUNTER: _CompileCounter | None = None


def _short(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  first = text[0] if text else ""
  return f"{type(error).__name__}: {first}"[:300]


def run(study: optuna.Study, trial: optuna.Trial, definition: Definition, sweep_dir: str,
        worker: str) -> TrialState:
  """Trains one trial and tells the study; raises Interrupted after recording it."""
  import jax
  from research.training import loop  # JAX: only in workers

  global _COUNTER
  _COUNTER = _COUNTER or _CompileCounter()
  hits, misses = _COUNTER.hits, _COUNTER.misses
  workdir = study_lib.trial_workdir(sweep_dir, trial)
  trial.set_user_attr("workdir", os.path.relpath(workdir, sweep_dir))
  trial.set_user_attr("worker", worker)
  trial.set_user_attr("pid", os.getpid())
  trial.set_user_attr("devices", ",".join(f"{d.platform}:{d.id}" for d in jax.devices()))
  if os.environ.get("SLURM_JOB_ID"):
    trial.set_user_attr("slurm_job", os.environ["SLURM_JOB_ID"])
  key = definition.metric_key

  def report(step: int, validation: dict[str, Any]) -> None:
    trial.report(float(validation[key]), step)
    if trial.should_prune():
      raise optuna.TrialPruned(f"pruned at step {step}: validation {key}="
                               f"{float(validation[key]):.5g}")

  start = time.time()
  value, state, interrupted = None, TrialState.FAIL, None
  try:
    config = definition.trial_config(space_lib.suggest(trial, definition.params))
    result = loop.train_and_evaluate(config, workdir, test=False, on_eval=report)
    value = float(result["validation"][key])
    if not math.isfinite(value):
      raise FloatingPointError(f"validation {key} is {value}")
    state = TrialState.COMPLETE
  except optuna.TrialPruned as e:
    trial.set_user_attr("pruned", str(e))
    state = TrialState.PRUNED
  except (loop.Preempted, KeyboardInterrupt) as e:
    trial.set_user_attr("error", "interrupted: the worker was stopped; the trial is retried "
                        "from its checkpoint when the sweep resumes")
    trial.set_user_attr(study_lib.INTERRUPTED, True)
    interrupted = e
  except Exception as e:  # pylint: disable=broad-except
    # A failed trial is a result, not a crash: record it and let the worker go on.
    trial.set_user_attr("error", _short(e))
    if not isinstance(e, UserError) and os.path.isdir(workdir):
      with open(os.path.join(workdir, "error.txt"), "w") as f:
        f.write(traceback.format_exc())
  trial.set_user_attr("seconds", time.time() - start)
  trial.set_user_attr("compile_cache_hits", _COUNTER.hits - hits)
  trial.set_user_attr("compile_cache_misses", _COUNTER.misses - misses)
  study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
  if interrupted is not None:
    raise Interrupted(str(interrupted))
  return state
