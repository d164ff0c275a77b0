r"""Evaluate an ensemble: average the predictions of several trained runs.

  python -m launch.ensemble --workdirs=runs/reproduce/fashion_mnist_cnn/seed_0,\
runs/reproduce/fashion_mnist_cnn/seed_1,runs/reproduce/fashion_mnist_cnn/seed_2

Prints each member's metrics on the split and the ensemble's (probabilities averaged), and
writes them to --output (JSON) when given. Members are workdirs of `launch.main` runs on the
same dataset config (seeds, or different models/experiments). A bad flag or workdir ends with
one `error:` line and exit 2.
"""

from __future__ import annotations


from absl import flags

from launch.cli import report_error, run_command

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Comma-separated workdirs of trained runs (>= 2).")
_SPLIT = flags.DEFINE_enum("split", "test", ["validation", "test"], "The split to evaluate.")
_BEST = flags.DEFINE_bool("best", True, "Each run's best checkpoint (else its newest).")
_OUTPUT = flags.DEFINE_string("output", "", "Write the metrics as JSON to this file.")


def main() -> int:
  if not _WORKDIRS.value:
    return report_error("--workdirs missing: pass two or more trained workdirs, comma-separated.")
  from research.report.table import markdown_table
  from research.training.ensemble import evaluate_ensemble
  from research.training.writers import atomic_write_json
  result = evaluate_ensemble(_WORKDIRS.value, _SPLIT.value, _BEST.value)
  names = [k for k in result["ensemble"] if k != "loss"][:5] + ["loss"]
  rows = [[m["workdir"]] + [f"{m['metrics'][k]:.4f}" for k in names] for m in result["members"]]
  means = {k: sum(m["metrics"][k] for m in result["members"]) / len(rows) for k in names}
  rows.append(["mean of members"] + [f"{means[k]:.4f}" for k in names])
  rows.append([f"ensemble of {len(result['members'])}"]
              + [f"{result['ensemble'][k]:.4f}" for k in names])
  print(f"\n{_SPLIT.value} split, {result['checkpoint']} checkpoints:")
  print(markdown_table(["run"] + names, rows))
  if _OUTPUT.value:
    atomic_write_json(_OUTPUT.value, result)
  return 0


def run() -> None:
  run_command(main, "launch.ensemble")


if __name__ == "__main__":
  run()
