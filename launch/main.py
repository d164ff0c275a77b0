r"""Train or evaluate one experiment.

  python -m launch.main --config=experiments/digits_cnn.py --workdir=runs/digits
  python -m launch.main --config=experiments/mnist_mlp.py:cpu --config.train.batch_size=128 \
      --workdir=runs/mnist_mlp --mode=train_and_evaluate
  python -m launch.main --config=experiments/iris_softmax.py --workdir=runs/iris --seeds=0,1,2
  python -m launch.main --config=experiments/iris_softmax.py --workdir=runs/iris_cv \
      --mode=cross_validate --config.dataset.cv_folds=10
  python -m launch.main --list
  # Two processes (hosts) of one run; under SLURM `srun python -m launch.main ...` needs none:
  python -m launch.main --config=... --workdir=runs/x --coordinator_address=host0:1234 \
      --num_processes=2 --process_id=0   # and --process_id=1 on the other host

Rerunning the same command resumes from the workdir's newest checkpoint; with several runs
(seeds, folds) finished runs are read back and only the missing ones are trained.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from launch import overrides
from launch.cli import EXIT_BAD_INPUT, EXIT_PREEMPTED, QuietLibraries, parse_flags, report_error

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config: experiments/NAME.py[:variant].", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_MODE = flags.DEFINE_enum(
    "mode", "train_and_evaluate", ["train", "evaluate", "train_and_evaluate", "cross_validate"],
    "What to do. cross_validate: k-fold cross-validation (k = config.dataset.cv_folds, 5 if "
    "0), one run per fold in WORKDIR/fold_<i>, mean ± std in WORKDIR/cv_result.json.")
_SEEDS = flags.DEFINE_list(
    "seeds", None, "Train one run per training seed (config.seed) in WORKDIR/seed_<s> and "
    "report mean ± std in WORKDIR/seeds_result.json, e.g. --seeds=0,1,2.")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", None, "Shorthand for --seeds=0,1,...,N-1.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Discard what the workdir holds if its config differs.")
_BEST = flags.DEFINE_bool("best", False, "With --mode=evaluate: use the best checkpoint.")
_LIST = flags.DEFINE_bool("list", False, "List the experiments and exit.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-process runs: HOST:PORT of process 0, which hosts the "
    "coordinator (else $JAX_COORDINATOR_ADDRESS; SLURM is detected by itself).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Multi-process runs: how many processes (hosts).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "Multi-process runs: this process's index, 0 .. N-1.")
_DISTRIBUTED_TIMEOUT = flags.DEFINE_integer(
    "distributed_timeout", 300, "Seconds to wait for the other processes / the coordinator.")


def list_experiments() -> str:
  from research.report.table import markdown_table
  rows = []
  for name in overrides.experiment_names():
    module = overrides.load_module(os.path.join(overrides.EXPERIMENTS_DIR, f"{name}.py"))
    description = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
    ref = getattr(module, "REFERENCE", None)
    reference = (f"{ref['metric']} {ref.get('goal', '>=')} {ref['value']} ({ref['source']})"
                 if ref else "-")
    rows.append([name, description, reference])
  return markdown_table(["experiment", "description", "reference"], rows)


def main(argv) -> int:
  del argv
  logging.get_absl_handler().addFilter(QuietLibraries())
  if _LIST.value:
    print(list_experiments())
    return 0
  if _CONFIG.value is None or not _WORKDIR.value:
    missing = [name for name, absent in (("--config", _CONFIG.value is None),
                                         ("--workdir", not _WORKDIR.value)) if absent]
    return report_error(f"{' and '.join(missing)} missing: pass --config=experiments/NAME.py and "
                        "--workdir=DIR (or --list to see the experiments).")
  from research.errors import UserError
  try:
    seeds = requested_seeds(_SEEDS.value, _NUM_SEEDS.value, _MODE.value)
  except UserError as e:
    return report_error(str(e))
  # Imported here, not at the top, so that a bad flag is reported before JAX loads.
  from research.training import distributed
  try:
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                           _DISTRIBUTED_TIMEOUT.value)
  except UserError as e:
    return report_error(str(e))
  from research.report.table import results_table
  from research.training import loop

  config = _CONFIG.value
  try:
    if seeds is not None or _MODE.value == "cross_validate":
      return run_several(config, _WORKDIR.value, seeds)
    if _MODE.value == "evaluate":
      result = loop.evaluate(config, _WORKDIR.value, best=_BEST.value)
    else:
      result = loop.train_and_evaluate(config, _WORKDIR.value, overwrite=_OVERWRITE.value,
                                       test=_MODE.value == "train_and_evaluate")
  except loop.Preempted as e:
    logging.warning("%s", e)
    print(str(e), file=sys.stderr)
    return EXIT_PREEMPTED
  except UserError as e:
    return report_error(str(e))
  import jax
  if jax.process_index() == 0:  # one table for a multi-process run
    print(f"\nResults ({_WORKDIR.value}, step {result['step']}):")
    print(results_table(result))
  return 0


def requested_seeds(seeds: list[str] | None, num_seeds: int | None, mode: str) -> list[int] | None:
  """The seeds of --seeds / --num_seeds (None when neither is given), checked."""
  from research.errors import ConfigError
  if seeds is None and num_seeds is None:
    return None
  if seeds is not None and num_seeds is not None:
    raise ConfigError("--seeds and --num_seeds both given: pass one of them "
                      "(--num_seeds=N means --seeds=0,...,N-1).")
  if mode == "evaluate":
    raise ConfigError("--seeds / --num_seeds train several runs, which --mode=evaluate does "
                      "not: use --mode=train_and_evaluate, train or cross_validate.")
  if num_seeds is not None:
    if num_seeds <= 0:
      raise ConfigError(f"--num_seeds={num_seeds}: it must be >= 1.")
    return list(range(num_seeds))
  try:
    return [int(s) for s in seeds]
  except ValueError:
    raise ConfigError(f"--seeds={','.join(seeds)}: seeds must be integers, e.g. "
                      "--seeds=0,1,2.") from None


def run_several(config, workdir: str, seeds: list[int] | None) -> int:
  """Seeds and/or cross-validation folds: trains the missing runs, prints mean ± std."""
  from research.training import runs
  if _MODE.value == "cross_validate":
    summary = runs.cross_validate(config, workdir, seeds=seeds, overwrite=_OVERWRITE.value)
    written, what = runs.CV_RESULT, f"{summary['folds']}-fold cross-validation"
  else:
    summary = runs.run_seeds(config, workdir, seeds, overwrite=_OVERWRITE.value,
                             test=_MODE.value == "train_and_evaluate")
    written, what = runs.SEEDS_RESULT, f"{len(seeds)} seeds"
  print(f"\nResults ({what}, {workdir}/{written}; std over {summary['num_runs']} runs):")
  print(runs.summary_table(summary))
  return 0


def _parse_flags(argv: list[str]) -> list[str]:
  return parse_flags(argv, "launch.main")


def run() -> None:
  from research.errors import UserError
  try:
    overrides.validate_flags(sys.argv[1:])
  except UserError as e:
    sys.exit(report_error(str(e)))
  app.run(lambda argv: sys.exit(main(argv)), flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
