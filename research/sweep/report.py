"""What a sweep leaves for its reader: trials.md / trials.csv, best_command.txt, plots/.

Trials are sorted by the objective (complete ones first, then pruned ones by their last
reported value, then failed and unfinished ones), one column per swept parameter. The best
config is written as the `launch.main` command that trains it from scratch, test split
included. Plots: the objective against each swept parameter and the optimisation history
(Optuna's matplotlib plots), and the learning curves of the top trials read from their
workdirs' metrics.jsonl.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from research.report.table import markdown_table
from research.sweep import space as space_lib, study as study_lib
from research.sweep.definition import Definition

_ORDER = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.FAIL: 2,
          TrialState.RUNNING: 3, TrialState.WAITING: 4}


def sorted_trials(study: optuna.Study, definition: Definition) -> list[FrozenTrial]:
  sign = -1.0 if definition.mode == "max" else 1.0

  def key(t: FrozenTrial):
    value = t.value if t.value is not None and math.isfinite(t.value) else math.inf * sign
    return (_ORDER.get(t.state, 5), sign * value, t.number)

  return sorted(study.get_trials(deepcopy=False), key=key)


def _cell(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return "-" if value is None else str(value)


def rows(study: optuna.Study, definition: Definition) -> tuple[list[str], list[list[Any]]]:
  params = list(definition.params)
  header = (["trial", "state", definition.metric] + params +
            ["step", "seconds", "note", "workdir"])
  trials = sorted_trials(study, definition)
  retries = {t.user_attrs["retry_of"]: t.number for t in trials if "retry_of" in t.user_attrs}
  out = []
  for t in trials:
    state, note = t.state.name, t.user_attrs.get("error") or t.user_attrs.get("pruned") or ""
    if t.user_attrs.get(study_lib.INTERRUPTED):
      state = "INTERRUPTED"
      note = f"retried as trial {retries[t.number]}" if t.number in retries else note
    elif "retry_of" in t.user_attrs:
      note = f"retry of interrupted trial {t.user_attrs['retry_of']}; {note}".rstrip("; ")
    out.append([t.number, state, t.value] + [t.params.get(p) for p in params] +
               [t.last_step, t.user_attrs.get("seconds"), note, t.user_attrs.get("workdir")])
  return header, out


def _flag_value(value: Any) -> str:
  if isinstance(value, (list, tuple)):
    return repr(tuple(value))
  return repr(value) if isinstance(value, float) else str(value)


def best_command(definition: Definition, trial: FrozenTrial, workdir: str) -> str:
  """`python -m launch.main ...` training the best trial's config from scratch."""
  values = {**definition.fixed}
  for name, spec in definition.params.items():
    if name in trial.params and spec["type"] != "switch":
      raw = trial.params[name]
      values[name] = space_lib.decode(spec, raw) if spec["type"] == "choice" else raw
  args = ["python", "-m", "launch.main", f"--config={definition.experiment}",
          f"--workdir={workdir}"] + [f"--config.{k}={_flag_value(v)}" for k, v in values.items()]
  return " ".join(shlex.quote(a) for a in args)


def preload() -> None:
  """Imports the plotting stack while the workers run (the launcher is idle then)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot  # noqa: F401
  import optuna.visualization.matplotlib  # noqa: F401


def _plots(study: optuna.Study, definition: Definition, sweep_dir: str, top: list[FrozenTrial],
           out_dir: str) -> list[str]:
  preload()
  import matplotlib.pyplot as plt
  import numpy as np
  from optuna.visualization import matplotlib as optuna_plots

  written = []

  def save(ax: Any, name: str) -> None:
    figure = np.ravel(ax)[0].figure
    figure.set_size_inches(6.4, 4.4)
    figure.tight_layout()
    path = os.path.join(out_dir, name)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    written.append(path)

  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
    save(optuna_plots.plot_optimization_history(study, target_name=definition.metric),
         "history.png")
    for name in definition.params:
      if any(name in t.params for t in study.get_trials(states=(TrialState.COMPLETE,))):
        save(optuna_plots.plot_slice(study, params=[name], target_name=definition.metric),
             f"objective_vs_{name}.png")
  figure, (val_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
  for t in top:
    records = _metrics(os.path.join(sweep_dir, t.user_attrs.get("workdir", "")))
    label = f"trial {t.number} ({definition.metric_key}={t.value:.4g})"
    val = [(r["step"], r[definition.metric_key]) for r in records
           if r.get("split") == "validation" and definition.metric_key in r]
    train = [(r["step"], r["loss"]) for r in records if r.get("split") == "train" and "loss" in r]
    if val:
      val_ax.plot(*zip(*val), marker="o", label=label)
    if train:
      loss_ax.plot(*zip(*train), label=label)
  val_ax.set(xlabel="step", ylabel=definition.metric, title=f"top {len(top)} trials")
  loss_ax.set(xlabel="step", ylabel="train/loss", title="training loss")
  val_ax.legend(fontsize=8)
  figure.tight_layout()
  path = os.path.join(out_dir, "learning_curves.png")
  figure.savefig(path, dpi=100)
  plt.close(figure)
  return written + [path]


def _metrics(workdir: str) -> list[dict[str, Any]]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip().startswith("{")]


def write(study: optuna.Study, definition: Definition, sweep_dir: str,
          top_k: int = 5) -> dict[str, Any]:
  """Writes the table, the best command and the plots; returns what the launcher prints."""
  header, table = rows(study, definition)
  text = markdown_table(header, [[_cell(v) for v in row] for row in table])
  with open(os.path.join(sweep_dir, "trials.md"), "w") as f:
    f.write(f"# Sweep: {definition.experiment}, {definition.mode} {definition.metric}\n\n"
            f"{text}\n")
  with open(os.path.join(sweep_dir, "trials.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in table])
  complete = [t for t in sorted_trials(study, definition) if t.state == TrialState.COMPLETE]
  summary: dict[str, Any] = {"table": text, "best": None, "command": None, "plots": []}
  if not complete:
    return summary
  name = os.path.basename(os.path.normpath(sweep_dir))
  command = best_command(definition, complete[0], os.path.join("runs", f"{name}_best"))
  with open(os.path.join(sweep_dir, "best_command.txt"), "w") as f:
    f.write(command + "\n")
  out_dir = os.path.join(sweep_dir, "plots")
  os.makedirs(out_dir, exist_ok=True)
  summary.update(best=complete[0], command=command,
                 plots=_plots(study, definition, sweep_dir, complete[:top_k], out_dir))
  return summary
