"""Learning-curve plots (PNG) from runs' metrics.jsonl.

Drawn from the files a run writes, never from memory, so a plot can be redrawn for any
finished or half-finished workdir, and reproduce draws the same picture whether it trained
the runs or read them back. matplotlib's Agg backend: no display is needed.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The records of `workdir/metrics.jsonl` ([] if absent); a line cut by a kill is skipped."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return records


def curve(records: list[dict[str, Any]], split: str, metric: str) -> tuple[list[int], list[float]]:
  """(steps, values) of `metric` in the `split` records, in step order."""
  points = sorted((r["step"], r[metric]) for r in records
                  if r.get("split") == split and metric in r)
  return [s for s, _ in points], [v for _, v in points]


def learning_curves(runs: Mapping[str, str], validation_metric: str, path: str,
                    title: str = "") -> str:
  """Writes a PNG of train loss and validation `validation_metric` against step.

  `runs` maps a label (e.g. 'seed 0') to its workdir: one line per run in each panel.
  Returns `path`.
  """
  import matplotlib
  matplotlib.use("Agg")  # no display; must precede pyplot's import
  from matplotlib import pyplot as plt

  fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=80)
  for label, workdir in runs.items():
    records = read_metrics(workdir)
    loss_ax.plot(*curve(records, "train", "loss"), label=label, linewidth=1.2)
    metric_ax.plot(*curve(records, "validation", validation_metric), label=label,
                   linewidth=1.2, marker=".")
  loss_ax.set(xlabel="step", ylabel="train loss", title="train loss")
  metric_ax.set(xlabel="step", ylabel=f"validation {validation_metric}",
                title=f"validation {validation_metric}")
  for ax in (loss_ax, metric_ax):
    ax.grid(alpha=0.3)
  if runs:
    metric_ax.legend(fontsize="small")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp.png"
  fig.savefig(tmp, format="png")
  plt.close(fig)
  os.replace(tmp, path)
  return path
