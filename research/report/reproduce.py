"""Reproducing experiments' REFERENCE numbers: seeds per experiment, RESULTS.md, plots.

The library half of `launch/reproduce.py` (which parses flags and finds experiments by
name). Each experiment is trained once per seed in WORKDIR/NAME/seed_<s> (NAME.VARIANT for a
variant) through `research.training.runs`, so a finished run is read back, not retrained.
RESULTS.md is rendered from the runs' result.json and metrics.jsonl files alone: whether a
run was trained now or read back, the file comes out the same.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import types
from typing import Any, Sequence

import ml_collections

from research.errors import ConfigError, DataError, UserError, WorkdirError
from research.report import plots, results, results_md
from research.training import runs
from research.training.writers import atomic_write_json

RUN_INFO = "run_info.json"  # the device and JAX version a run was trained with
PLOTS_DIR = os.path.join("results", "plots")  # beside the output file
SUMMARY_JSON = os.path.join("results", "results.json")


@dataclasses.dataclass(frozen=True)
class Experiment:
  """An experiment module and its checked REFERENCE."""
  name: str
  module: types.ModuleType
  reference: results.Reference
  variant: str = ""  # asked for with the name (`--only=NAME:VARIANT`): wins over --variant/--fast

  @classmethod
  def from_module(cls, name: str, module: types.ModuleType, variant: str = "") -> Experiment:
    """Raises ConfigError naming the experiment when it has no (or a malformed) REFERENCE."""
    reference = getattr(module, "REFERENCE", None)
    if reference is None:
      path = os.path.relpath(getattr(module, "__file__", None) or f"experiments/{name}.py")
      raise ConfigError(
          f"experiment {name!r} has no REFERENCE, so there is nothing to reproduce: add "
          "REFERENCE = dict(metric='test/accuracy', value=..., goal='>=', source='...') to "
          f"{path}, or leave it out of --only.")
    return cls(name, module, results.Reference.from_module(name, reference), variant)


def experiment_config(exp: Experiment, variant: str = "",
                      fast: bool = False) -> tuple[ml_collections.ConfigDict, str]:
  """(config, variant used): `variant` if given; with `fast` ':cpu' where defined; else the recipe.

  An experiment without a ':cpu' variant is CPU-sized already (the scikit-learn ones), so
  `fast` runs its recipe rather than a shrunken one that would mean nothing.
  """
  variant = exp.variant or variant
  if variant:
    try:
      return exp.module.get_config(variant), variant
    except ValueError as e:
      raise ConfigError(f"--variant={variant}: experiment {exp.name!r}: {e}") from None
  if fast:
    try:
      return exp.module.get_config("cpu"), "cpu"
    except ValueError:  # get_config's convention for an unknown variant
      pass
  return exp.module.get_config(), ""


def environment() -> dict[str, Any]:
  """Where runs are made now: the device, JAX's version, the host CPU, the date."""
  import jax
  device = jax.devices()[0]
  return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
          "jax": jax.__version__, "platform": device.platform, "device_kind": device.device_kind,
          "num_devices": jax.device_count(), "host_cpu": _host_cpu()}


def _host_cpu() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
  except OSError:
    pass
  return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def device_label(info: dict[str, Any]) -> str:
  count = info.get("num_devices", 1)
  return info.get("device_kind", "?") + (f" x{count}" if count > 1 else "")


def _trained_on(workdir: str) -> str:
  try:
    with open(os.path.join(workdir, RUN_INFO)) as f:
      return device_label(json.load(f))
  except (OSError, ValueError):
    return "unknown"  # trained outside reproduce


def reproduce_experiment(exp: Experiment, num_seeds: int, workdir: str, plots_dir: str,
                         variant: str = "", fast: bool = False, overwrite: bool = False,
                         env: dict[str, Any] | None = None) -> results_md.ReproducedRow:
  """Trains (or reads back) one experiment's seeds, draws its curves; returns its row.

  Missing data (DataError) or a failed run (a NaN loss, say) becomes the row's note instead
  of an exception, so one absent dataset does not stop the others. A workdir holding a
  different config is still refused: whether to discard it is the user's decision.
  """
  config, used = experiment_config(exp, variant, fast)
  label = f"{exp.name}:{used}" if used else exp.name
  slug = f"{exp.name}.{used}" if used else exp.name
  folds = exp.reference.folds
  if folds:  # a cross-validated number: every fold, once per seed
    specs = runs.fold_runs(config, os.path.join(workdir, slug), folds, range(num_seeds))
  else:
    specs = runs.seed_runs(config, os.path.join(workdir, slug), range(num_seeds))
  env = env or environment()

  def on_done(outcome: runs.Outcome) -> None:
    if outcome.trained:
      atomic_write_json(os.path.join(outcome.spec.workdir, RUN_INFO), env)
    how = "trained" if outcome.trained else "read back"
    print(f"  {label} {outcome.spec.name}: {how}", flush=True)

  try:
    outcomes = runs.run_all(specs, overwrite=overwrite, test=True, on_done=on_done)
  except DataError as e:
    return results_md.ReproducedRow(label, exp.reference,
                                    note=f"{results_md.DATA_NOT_AVAILABLE}: {e}")
  except WorkdirError:
    raise  # the user's to settle (--overwrite or another --workdir), not a result
  except UserError as e:  # e.g. a NaN loss: the row says so, the other experiments go on
    return results_md.ReproducedRow(label, exp.reference, note=f"error: {e}")
  values = []
  for outcome in outcomes:
    metrics = results.scalar_metrics(outcome.result)
    if exp.reference.metric not in metrics:
      raise ConfigError(f"experiments/{exp.name}.py: REFERENCE metric "
                        f"{exp.reference.metric!r} is not in the runs' results; use one of "
                        f"{sorted(metrics)}.")
    values.append(metrics[exp.reference.metric])
  times = [o.result["wall_time_s"] for o in outcomes if "wall_time_s" in o.result]
  plot = plots.learning_curves(
      {o.spec.name.replace("_", " ").replace("/", ", "): o.spec.workdir for o in outcomes},
      exp.reference.metric.partition("/")[2], os.path.join(plots_dir, f"{slug}.png"),
      title=f"{label} ({f'{folds} folds x ' if folds else ''}{num_seeds} seeds)")
  return results_md.ReproducedRow(
      label, exp.reference, seeds=tuple(sorted({o.spec.labels["seed"] for o in outcomes})),
      values=tuple(values), wall_time_s=sum(times) / len(times) if times else None,
      device=", ".join(sorted({_trained_on(o.spec.workdir) for o in outcomes})),
      plot=os.path.basename(plot))


def reproduce(experiments: Sequence[Experiment], num_seeds: int, workdir: str, output: str,
              command: str, variant: str = "", fast: bool = False,
              overwrite: bool = False) -> list[results_md.ReproducedRow]:
  """Reproduces each experiment, then writes `output` (RESULTS.md), its plots and a JSON copy.

  Plots go to results/plots/ beside `output` and are linked relative to it, so the file and
  its pictures can be committed or moved together. results/results.json holds the same
  rows with unrounded numbers, for scripts.
  """
  if num_seeds <= 0:
    raise ConfigError(f"--seeds={num_seeds}: it is the number of seeds per experiment, so it "
                      "must be >= 1 (e.g. --seeds=3).")
  if variant and fast:
    raise ConfigError(f"--variant={variant} and --fast both given: --fast picks each "
                      "experiment's ':cpu' variant, --variant one for all; pass one of them.")
  out_dir = os.path.dirname(os.path.abspath(output))
  env = environment()
  rows = []
  for i, exp in enumerate(experiments):
    print(f"[{i + 1}/{len(experiments)}] {exp.name}", flush=True)
    row = reproduce_experiment(exp, num_seeds, workdir, os.path.join(out_dir, PLOTS_DIR),
                               variant, fast, overwrite, env)
    if row.plot:
      row = dataclasses.replace(row, plot=f"{PLOTS_DIR.replace(os.sep, '/')}/{row.plot}")
    rows.append(row)
  tmp = f"{output}.tmp"
  with open(tmp, "w") as f:
    f.write(results_md.results_markdown(rows, command, env))
  os.replace(tmp, output)
  atomic_write_json(os.path.join(out_dir, SUMMARY_JSON), {
      "command": command, "environment": env,
      "experiments": [dict(dataclasses.asdict(r), status=r.status) for r in rows]})
  return rows
