"""Quantise a trained workdir: int8 weights on disk, test metrics before and after.

`quantize_workdir(workdir)` restores the workdir's newest (or best) checkpoint with the
config it was trained with, writes `quantized/params_int8.npz` (int8 weights + per-channel
scales, float32 biases) and `quantized/params_float32.npz` (the same parameters unquantised,
the baseline for bytes), evaluates the validation and test splits with the float and the
dequantised weights through the framework's `Evaluator`, and writes
`quantized/quantization.json`. The checkpoints are only read.
"""

from __future__ import annotations

import os
from typing import Any

from research.compress import quantize as Q
from research.training import batching, loop, pruning
from research.training.writers import atomic_write_json

OUTPUT_DIR = "quantized"
INT8_FILE, FLOAT_FILE, REPORT_FILE = "params_int8.npz", "params_float32.npz", "quantization.json"
SPLITS = ("validation", "test")


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
  return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def quantize_workdir(workdir: str, best: bool = False) -> dict[str, Any]:
  """Quantises `workdir`'s parameters; returns (and writes) the before/after report."""
  exp, state, step = loop.restore_workdir(workdir, best)
  arrays = Q.quantize_params(state.params)
  baseline = Q.float_arrays(state.params)
  out = os.path.join(workdir, OUTPUT_DIR)
  int8_bytes = Q.save(os.path.join(out, INT8_FILE), arrays)
  float_bytes = Q.save(os.path.join(out, FLOAT_FILE), baseline)
  # Read back what was written: the numbers below are those of the file on disk.
  dequantized = Q.dequantize_params(Q.load(os.path.join(out, INT8_FILE)), state.params)
  device_splits = {n: batching.put_split(s, exp.mesh) for n, s in exp.dataset.splits.items()}
  evaluate = loop.Evaluator(exp, device_splits)
  quantized_state = state.replace(params=dequantized)
  report = {
      "workdir": workdir, "step": step, "checkpoint": "best" if best else "latest",
      "metric": exp.best_metric,
      "float32": {s: _scalars(evaluate(state, s)) for s in SPLITS},
      "int8": {s: _scalars(evaluate(quantized_state, s)) for s in SPLITS},
      "bytes": {"float32_npz": float_bytes, "int8_npz": int8_bytes,
                "float32_arrays": Q.payload_bytes(baseline), "int8_arrays": Q.payload_bytes(arrays),
                "float32_npz_compressed": Q.npz_bytes(baseline, compressed=True),
                "int8_npz_compressed": Q.npz_bytes(arrays, compressed=True)},
      "weight_sparsity": pruning.sparsity_report(state.params)["sparsity"],
  }
  report["bytes"]["ratio"] = float_bytes / int8_bytes
  atomic_write_json(os.path.join(out, REPORT_FILE), report)
  return report


def summary(report: dict[str, Any]) -> str:
  """A few lines for the terminal: the metric before/after per split, and the bytes."""
  metric, b = report["metric"], report["bytes"]
  lines = [f"{report['workdir']} (step {report['step']}, {report['checkpoint']} checkpoint)"]
  for split in SPLITS:
    before, after = report["float32"][split][metric], report["int8"][split][metric]
    lines.append(f"  {split}/{metric}: float32 {before:.4f} -> int8 {after:.4f} "
                 f"({after - before:+.4f})")
  lines.append(f"  bytes on disk: float32 {b['float32_npz']:,} -> int8 {b['int8_npz']:,} "
               f"({b['ratio']:.2f}x smaller); compressed npz {b['float32_npz_compressed']:,} "
               f"-> {b['int8_npz_compressed']:,}")
  return "\n".join(lines)
