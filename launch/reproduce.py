r"""Reproduce experiments' REFERENCE numbers over several seeds and write RESULTS.md.

  python -m launch.reproduce --only=digits_cnn,iris_softmax --seeds=3 \
      --workdir=runs/reproduce --output=RESULTS.md
  python -m launch.reproduce --fast      # every experiment with a REFERENCE, CPU-sized

Each experiment is trained once per seed in WORKDIR/NAME/seed_<s> (WORKDIR/NAME.VARIANT/...
for a variant); a finished run is read back, not retrained, so rerunning the command after
an interruption only trains what is missing. RESULTS.md gets one row per experiment (mean ±
std over seeds against the reference) and links to learning curves drawn into
results/plots/ beside it. An experiment whose data is absent gets a 'data not available'
row instead of stopping the others. Exit code: 0 when RESULTS.md was written and every run
could be made, 1 when a run failed (its row says why), 2 for bad input.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import TYPE_CHECKING, Sequence

from absl import app, flags, logging

from launch import cli, overrides

if TYPE_CHECKING:
  from research.report.reproduce import Experiment

_ONLY = flags.DEFINE_list(
    "only", None, "Experiments to reproduce, by name (digits_cnn) or file "
    "(path/to/exp.py), each optionally with its variant (fashion_mnist_resnet18:cpu); "
    "default: every experiment that has a REFERENCE.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Number of training seeds per experiment (0..N-1).")
_FAST = flags.DEFINE_bool("fast", False, "CPU-sized runs: each experiment's ':cpu' variant "
                          "where it has one (MNIST family), else its recipe.")
_VARIANT = flags.DEFINE_string("variant", "", "Run this variant of every experiment (e.g. "
                               "'tiny', seconds per run: for tests).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/reproduce", "Parent directory of the runs.")
_OUTPUT = flags.DEFINE_string("output", "RESULTS.md", "The Markdown file to write; plots go "
                              "to results/plots/ in its directory.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Retrain runs whose workdir holds a "
                               "different config (default: refuse, naming the differences).")


def resolve_experiments(only: Sequence[str] | None) -> list[Experiment]:
  """The experiments to reproduce: `--only`'s names or files, else all with a REFERENCE.

  A name that is unknown (the closest is suggested) or an experiment without REFERENCE is
  an error: the user asked for something that cannot be reproduced.
  """
  from research.errors import ConfigError
  from research.registry import unknown_name_message
  from research.report.reproduce import Experiment
  names = overrides.experiment_names()
  chosen = []
  for item in (only if only is not None else names):
    item, _, variant = item.strip().partition(":")
    if item.endswith(".py"):
      path, name = item, os.path.splitext(os.path.basename(item))[0]
    elif item in names:
      path, name = os.path.join(overrides.EXPERIMENTS_DIR, f"{item}.py"), item
    else:
      raise ConfigError(unknown_name_message("experiment", item, names, "--only"))
    module = overrides.load_module(path)
    if only is None and getattr(module, "REFERENCE", None) is None:
      continue
    chosen.append(Experiment.from_module(name, module, variant))
  if not chosen:
    raise ConfigError("--only names no experiment: list some, e.g. --only=digits_cnn.")
  return chosen


def command_line(argv: Sequence[str]) -> str:
  return shlex.join(["python", "-m", "launch.reproduce", *argv[1:]])


def main(argv: Sequence[str]) -> int:
  logging.get_absl_handler().addFilter(cli.QuietLibraries())
  if len(argv) > 1:
    return cli.report_error(f"unexpected arguments {' '.join(argv[1:])}: every option is "
                            "a --flag (`python -m launch.reproduce --helpshort`).")
  from research.errors import UserError
  from research.report import results_md
  from research.report.reproduce import reproduce
  from research.report.table import markdown_table
  from research.training import loop
  try:
    experiments = resolve_experiments(_ONLY.value)
    rows = reproduce(experiments, _SEEDS.value, _WORKDIR.value, _OUTPUT.value,
                     command_line(sys.argv), _VARIANT.value, _FAST.value, _OVERWRITE.value)
  except loop.Preempted as e:
    print(str(e), file=sys.stderr)
    return cli.EXIT_PREEMPTED
  except UserError as e:
    return cli.report_error(str(e))
  print(f"\nWrote {_OUTPUT.value}:")
  numbers = results_md.note_numbers(rows)
  short = [results_md.table_row(r, numbers.get(i))[:7] for i, r in enumerate(rows)]
  print(markdown_table(results_md.TABLE_HEADER[:7], short))
  for i, n in numbers.items():
    print(f"note {n}: {rows[i].note}")
  failed = [r.experiment for r in rows
            if r.note and not r.note.startswith(results_md.DATA_NOT_AVAILABLE)]
  if failed:
    print(f"runs failed for {', '.join(failed)}: see {_OUTPUT.value}.", file=sys.stderr)
    return 1
  return 0


def run() -> None:
  app.run(lambda argv: sys.exit(main(argv)),
          flags_parser=lambda argv: cli.parse_flags(argv, "launch.reproduce"))


if __name__ == "__main__":
  run()
