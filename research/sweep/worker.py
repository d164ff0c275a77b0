"""A sweep worker: one process that pulls trials from the study until the budget is spent.

The command line forks its local workers from the launcher (`executors.Prefork`, which then
calls `run_worker`); a replacement worker is a `python -m research.sweep.worker SWEEP_DIR
--worker=I --num_trials=N` subprocess, and SLURM workers run `run_worker` through submitit.
Either way the worker keeps JAX, the data and compiled functions warm across its trials, and
shares one persistent compilation cache (`SWEEP_DIR/jax_cache`) with the others, so a trial
whose shapes and constants were seen before does not compile again.

SIGTERM (the launcher stopping the sweep, SLURM preemption) lets the running trial save a
checkpoint and be recorded as interrupted; SIGINT is left to the launcher.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import traceback
import zlib

import numpy as np

CACHE_DIR = "jax_cache"


def cache_env(sweep_dir: str) -> dict[str, str]:
  """Environment for a worker: the shared persistent compilation cache, for every compile."""
  return {"JAX_COMPILATION_CACHE_DIR": os.path.abspath(os.path.join(sweep_dir, CACHE_DIR)),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}


def _configure_jax(sweep_dir: str) -> None:
  os.environ.update(cache_env(sweep_dir))
  import jax
  jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def exit_with_parent() -> None:
  """A local worker whose launcher died (kill -9) stops too, saving its trial's checkpoint."""
  parent = os.getppid()

  def watch():
    while os.getppid() == parent:
      time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)

  threading.Thread(target=watch, daemon=True).start()


def warm_up() -> None:
  """Imports what every trial needs, so that the first trial does not pay for it."""
  import optuna  # noqa: F401
  # SQLAlchemy, the study tables and alembic: ~0.5 s that opening the SQLite study would pay.
  import alembic.command, alembic.migration, alembic.script  # noqa: F401,E401
  import optuna.storages._rdb.models  # noqa: F401
  from research.training import loop, writers  # noqa: F401  (JAX, Flax, orbax, data registry)
  writers.import_tensorboardx()


def run_worker(sweep_dir: str, worker: str, num_trials: int) -> int:
  """Runs trials until `num_trials` count in the study (or SIGTERM); returns how many it ran."""
  _configure_jax(sweep_dir)
  warm_up()
  import optuna
  from absl import logging as absl_logging
  from research.sweep import samplers, study as study_lib, trial as trial_lib

  absl_logging.set_verbosity(absl_logging.WARNING)
  stop = threading.Event()
  signal.signal(signal.SIGTERM, lambda *_: stop.set())
  definition = study_lib.read_definition(sweep_dir)
  study = study_lib.load(sweep_dir)
  # Each worker (and each resumption) draws its own random stream, reproducibly; the grid
  # is the exception: its seed orders the grid, which all workers must agree on.
  seed = definition.seed if definition.sampler["name"] == "grid" else int(
      np.random.SeedSequence([definition.seed, zlib.crc32(worker.encode()),
                              len(study.trials)]).generate_state(1)[0])
  study.sampler = samplers.make_sampler(definition.sampler, definition.params, seed)
  study.pruner = samplers.make_pruner(definition.pruner)
  ran = 0
  while not stop.is_set():
    trial = study_lib.ask_within_budget(study, sweep_dir, num_trials)
    if trial is None:
      break
    try:
      state = trial_lib.run(study, trial, definition, sweep_dir, worker)
    except trial_lib.Interrupted:
      break
    ran += 1
    print(f"worker {worker}: trial {trial.number} {state.name}", flush=True)
  optuna.logging.get_logger("optuna").info("worker %s done after %d trial(s)", worker, ran)
  return ran


def log_path(sweep_dir: str, worker: str) -> str:
  return os.path.join(sweep_dir, "logs", f"worker_{worker}.log")


def main(argv: list[str] | None = None) -> None:
  """A local worker process; it exits at once when done (skipping JAX's slow teardown)."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("sweep_dir")
  parser.add_argument("--worker", required=True)
  parser.add_argument("--num_trials", type=int, required=True)
  args = parser.parse_args(argv)
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the launcher's to handle
  serve_and_exit(args.sweep_dir, args.worker, args.num_trials)


def serve_and_exit(sweep_dir: str, worker: str, num_trials: int) -> None:
  """A local worker's life, subprocess or forked: trials until done, then exit at once.

  Exit code 0, or 1 after printing the traceback of a crash (the launcher shows the log's
  tail); `os._exit` skips JAX's interpreter teardown (about a second).
  """
  exit_with_parent()
  code = 0
  try:
    run_worker(sweep_dir, worker, num_trials)
  except BaseException:  # pylint: disable=broad-except
    traceback.print_exc()
    code = 1
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)


if __name__ == "__main__":
  main()
