r"""Hyperparameter sweep of one experiment: Optuna samplers and pruners, parallel workers.

  python -m launch.sweep --config=experiments/mnist_mlp.py:cpu --sweep_dir=sweeps/mnist_mlp \
      --workers=2
  python -m launch.sweep --config=experiments/iris_softmax.py:tiny --sweep_dir=sweeps/iris \
      --sampler=grid --param=optimizer.learning_rate=choice:0.01,0.1,1.0 \
      --param=train.batch_size=choice:8,16 --config.train.num_steps=40

The search space is the experiment's `get_sweep(arg)`, or the `--param` flags if given;
`--config.KEY=VALUE` fixes a field for every trial. Rerunning the same command resumes the
study (finished trials are never rerun); a larger --num_trials extends it. The sweep dir
ends with trials.md / trials.csv, best_command.txt and plots/.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from launch import overrides

_CONFIG = flags.DEFINE_string("config", None, "Experiment: experiments/NAME.py[:variant].")
_SWEEP_DIR = flags.DEFINE_string("sweep_dir", None, "Directory of the study and its trials.")
_PARAM = flags.DEFINE_multi_string(
    "param", [], "A swept field, NAME=TYPE:ARGS[@OTHER=V1,V2]; TYPE is choice, switch, uniform, "
    "loguniform, int or logint (e.g. optimizer.learning_rate=loguniform:1e-4:1e-2). Given, "
    "these flags are the search space instead of the module's get_sweep()['params'].")
_SAMPLER = flags.DEFINE_string("sampler", None, "grid, random, tpe, gp or cmaes (default: "
                               "the module's, else tpe).")
_PRUNER = flags.DEFINE_string("pruner", None, "none, median, successive_halving or hyperband "
                              "(default: the module's, else none).")
_METRIC = flags.DEFINE_string("metric", None, "Objective, validation/NAME (default: the "
                              "module's, else the task's default metric).")
_MODE = flags.DEFINE_string("mode", None, "max or min (default: the module's or the task's).")
_NUM_TRIALS = flags.DEFINE_integer("num_trials", None, "Trials in the study (default: the "
                                   "module's; grid: the grid's size; else 20).")
_WORKERS = flags.DEFINE_integer("workers", 1, "Worker processes (local) or jobs (SLURM).")
_EXECUTOR = flags.DEFINE_string("executor", "local", "local or slurm (through submitit).")
_DEVICES = flags.DEFINE_integer("devices_per_worker", 0, "GPUs per worker (0: the visible "
                                "GPUs split evenly; none on CPU).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the sampler.")
_PARTITION = flags.DEFINE_string("slurm_partition", None, "SLURM partition.")
_ACCOUNT = flags.DEFINE_string("slurm_account", None, "SLURM account.")
_TIMEOUT = flags.DEFINE_integer("slurm_timeout_min", 60, "Time limit of each SLURM worker job.")
_CPUS = flags.DEFINE_integer("slurm_cpus_per_task", None, "CPUs of each SLURM worker job.")

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def report_error(message: str) -> int:
  """One `error:` line (later lines indented) on stderr, as launch.main does."""
  lines = str(message).splitlines() or [""]
  print("error: " + "\n  ".join(lines), file=sys.stderr)
  return EXIT_BAD_INPUT


def split_config_flags(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """argv without its `--config.KEY=VALUE` flags (absl does not know them), and those flags."""
  _, pairs = overrides.parse_config_flags(argv)
  rest, i = [], 0
  while i < len(argv):
    name, eq, _ = argv[i].partition("=")
    if name.lstrip("-").startswith("config."):
      i += 1 if eq else 2
      continue
    rest.append(argv[i])
    i += 1
  return rest, pairs


def main(config_overrides: list[tuple[str, str]]) -> int:
  if not _CONFIG.value or not _SWEEP_DIR.value:
    missing = [f for f, v in (("--config", _CONFIG.value), ("--sweep_dir", _SWEEP_DIR.value))
               if not v]
    return report_error(f"{' and '.join(missing)} missing: pass --config=experiments/NAME.py "
                        "and --sweep_dir=DIR.")
  logging.set_verbosity(logging.WARNING)  # JAX's and matplotlib's INFO lines are noise here
  from research.errors import UserError
  from research.sweep import run

  slurm = {"partition": _PARTITION.value, "account": _ACCOUNT.value,
           "timeout_min": _TIMEOUT.value, "cpus_per_task": _CPUS.value}
  try:
    summary = run.run_sweep(
        _CONFIG.value, _SWEEP_DIR.value, params=_PARAM.value, config_overrides=config_overrides,
        sampler=_SAMPLER.value, pruner=_PRUNER.value, metric=_METRIC.value, mode=_MODE.value,
        num_trials=_NUM_TRIALS.value, seed=_SEED.value, workers=_WORKERS.value,
        executor=_EXECUTOR.value, devices_per_worker=_DEVICES.value, slurm=slurm,
        prefork=True)
  except UserError as e:
    return report_error(str(e))
  print(f"\nTrials ({_SWEEP_DIR.value}/trials.md; {summary['states']}):")
  print("\n".join(summary["table"].splitlines()[:12]))
  if summary["command"]:
    print(f"\nBest config (best_command.txt):\n{summary['command']}")
  if summary["ran"]:
    own = summary["trial_seconds"] / _WORKERS.value
    print(f"\n{summary['ran']} trial(s) ran in {summary['seconds']:.1f} s; their own times sum "
          f"to {summary['trial_seconds']:.1f} s, {own:.1f} s per worker "
          f"({summary['seconds'] / own:.2f}x).")
  if summary["interrupted"]:
    print("\nInterrupted: rerun the same command to resume.", file=sys.stderr)
    return EXIT_INTERRUPTED
  return 0


def run_cli() -> None:
  argv, config_overrides = split_config_flags(sys.argv)

  def parse(args: list[str]) -> list[str]:
    try:
      return flags.FLAGS(args)
    except flags.Error as e:
      sys.exit(report_error(f"{e} (`python -m launch.sweep --helpshort` lists the flags)"))

  def run_main(_) -> None:
    code = main(config_overrides)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # everything is written and closed: skip a second of JAX teardown

  app.run(run_main, argv=argv, flags_parser=parse)


if __name__ == "__main__":
  run_cli()
