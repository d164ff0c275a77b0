r"""Train or evaluate one experiment.

  python -m launch.main --config=experiments/digits_cnn.py --workdir=runs/digits
  python -m launch.main --config=experiments/mnist_mlp.py:cpu --config.train.batch_size=128 \
      --workdir=runs/mnist_mlp --mode=train_and_evaluate
  python -m launch.main --list

Rerunning the same command resumes from the workdir's newest checkpoint.
"""

from __future__ import annotations

import logging as pylogging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from launch import overrides

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config: experiments/NAME.py[:variant].", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_MODE = flags.DEFINE_enum("mode", "train_and_evaluate",
                          ["train", "evaluate", "train_and_evaluate"], "What to do.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Discard what the workdir holds if its config differs.")
_BEST = flags.DEFINE_bool("best", False, "With --mode=evaluate: use the best checkpoint.")
_LIST = flags.DEFINE_bool("list", False, "List the experiments and exit.")

EXIT_BAD_INPUT = 2
EXIT_PREEMPTED = 143  # 128 + SIGTERM, after a clean checkpoint


def report_error(message: str) -> int:
  """Prints `error: <message>` to stderr and returns EXIT_BAD_INPUT.

  A multi-line message (e.g. the list of config fields that differ) keeps its lines but
  indents them, so exactly one line starts with `error:` for a user or script to find.
  """
  lines = str(message).splitlines() or [""]
  print("error: " + "\n  ".join(lines), file=sys.stderr)
  return EXIT_BAD_INPUT


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


class _QuietLibraries(pylogging.Filter):
  """Drops INFO chatter of orbax and JAX internals; their warnings still show."""

  def filter(self, record: pylogging.LogRecord) -> bool:
    noisy = any(p in record.pathname for p in ("/orbax/", "/jax/_src/", "/etils/"))
    return record.levelno >= pylogging.WARNING or not noisy


def main(argv) -> int:
  del argv
  logging.get_absl_handler().addFilter(_QuietLibraries())
  if _LIST.value:
    print(list_experiments())
    return 0
  if _CONFIG.value is None or not _WORKDIR.value:
    missing = [name for name, absent in (("--config", _CONFIG.value is None),
                                         ("--workdir", not _WORKDIR.value)) if absent]
    return report_error(f"{' and '.join(missing)} missing: pass --config=experiments/NAME.py and "
                        "--workdir=DIR (or --list to see the experiments).")
  # Imported here, not at the top, so that a bad flag is reported before JAX loads.
  from research.errors import UserError
  from research.report.table import results_table
  from research.training import loop

  config = _CONFIG.value
  try:
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
  print(f"\nResults ({_WORKDIR.value}, step {result['step']}):")
  print(results_table(result))
  return 0


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with a bad flag reported like any other bad input.

  absl's default prints `FATAL Flags parsing error` and exits 1, which scripts cannot tell
  from a crash; a mistyped `--workdirr` is the user's to fix, so it gets exit code 2.
  """
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(report_error(f"{e} (`python -m launch.main --helpshort` lists the flags)"))


def run() -> None:
  from research.errors import UserError
  try:
    overrides.validate_flags(sys.argv[1:])
  except UserError as e:
    sys.exit(report_error(str(e)))
  app.run(lambda argv: sys.exit(main(argv)), flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
