"""Hyperparameter sweeps on Optuna: search spaces, samplers, workers, reports.

  definition  what a study searches (`get_sweep(arg)` + flags), stored as sweep.json
  space       parameter specs: validation against the config, sampling, grids
  samplers    Optuna samplers and pruners by name
  study       the sweep dir, the SQLite study, the trial budget, recovery
  trial       one trial: sample, train in its workdir, tell
  worker      the process that pulls trials;  executors  local processes or SLURM
  report      trials.md / .csv, best_command.txt, plots;  run  the whole sweep

`python -m launch.sweep` is the entry point; `run.run_sweep` the same from Python.
"""
