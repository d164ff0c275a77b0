"""Quantise a trained workdir: int8 (or fewer-bit) weights on disk, metrics before and after.

`quantize_workdir(workdir)` restores the workdir's newest (or best) checkpoint with the
config it was trained with, writes `quantized/params_int8.npz` (int8 weights + per-channel
scales, float32 biases; `params_intN.npz` with `bits=N`) and `quantized/params_float32.npz` (the same parameters unquantised,
the baseline for bytes), evaluates the validation and test splits with the float and the
dequantised weights through the framework's `Evaluator`, and writes
`quantized/quantization.json`. The checkpoints are only read.
"""

from __future__ import annotations

import os
from typing import Any

from research.compress import quantize as Q
from research.errors import ConfigError
from research.training import batching, loop, pruning
from research.training.writers import atomic_write_json

OUTPUT_DIR = "quantized"
FLOAT_FILE, REPORT_FILE = "params_float32.npz", "quantization.json"
SPLITS = ("validation", "test")


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
  return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def quantized_file(bits: int) -> str:
  return f"params_int{bits}.npz"


def quantize_workdir(workdir: str, best: bool = False, bits: int = 8) -> dict[str, Any]:
  """Quantises `workdir`'s parameters; returns (and writes) the before/after report.

  The report's keys are `float32` and `int{bits}` (metrics) and `bytes`; with `bits` < 8 the
  values still take one byte each on disk (`*_compressed` shows what packing would save).
  """
  try:
    Q.levels(bits)
  except ValueError:
    raise ConfigError(f"--bits={bits}: use an integer from 2 to 8.") from None
  exp, state, step = loop.restore_workdir(workdir, best)
  arrays = Q.quantize_params(state.params, bits)
  baseline = Q.float_arrays(state.params)
  out = os.path.join(workdir, OUTPUT_DIR)
  quantized_path = os.path.join(out, quantized_file(bits))
  int8_bytes = Q.save(quantized_path, arrays)
  float_bytes = Q.save(os.path.join(out, FLOAT_FILE), baseline)
  # Read back what was written: the numbers below are those of the file on disk.
  dequantized = Q.dequantize_params(Q.load(quantized_path), state.params)
  # A QAT run evaluates through fake-quantised weights; here the float32 column is the float
  # model itself and the quantised column the weights read back from disk.
  exp.task.qat_bits = 0
  device_splits = {n: batching.put_split(s, exp.mesh) for n, s in exp.dataset.splits.items()}
  evaluate = loop.Evaluator(exp, device_splits)
  quantized_state = state.replace(params=dequantized)
  key = f"int{bits}"
  report = {
      "workdir": workdir, "step": step, "checkpoint": "best" if best else "latest",
      "metric": exp.best_metric, "bits": bits, "quantized": key,
      "float32": {s: _scalars(evaluate(state, s)) for s in SPLITS},
      key: {s: _scalars(evaluate(quantized_state, s)) for s in SPLITS},
      "bytes": {"float32_npz": float_bytes, "int8_npz": int8_bytes,
                "float32_arrays": Q.payload_bytes(baseline), "int8_arrays": Q.payload_bytes(arrays),
                "float32_npz_compressed": Q.npz_bytes(baseline, compressed=True),
                "int8_npz_compressed": Q.npz_bytes(arrays, compressed=True)},
      "weight_sparsity": pruning.sparsity_report(state.params)["sparsity"],
  }
  report["bytes"]["ratio"] = float_bytes / int8_bytes
  atomic_write_json(os.path.join(out, REPORT_FILE if bits == 8 else f"quantization_int{bits}.json"),
                    report)
  return report


def summary(report: dict[str, Any]) -> str:
  """A few lines for the terminal: the metric before/after per split, and the bytes."""
  metric, b, key = report["metric"], report["bytes"], report.get("quantized", "int8")
  lines = [f"{report['workdir']} (step {report['step']}, {report['checkpoint']} checkpoint)"]
  for split in SPLITS:
    before, after = report["float32"][split][metric], report[key][split][metric]
    lines.append(f"  {split}/{metric}: float32 {before:.4f} -> {key} {after:.4f} "
                 f"({after - before:+.4f})")
  lines.append(f"  bytes on disk: float32 {b['float32_npz']:,} -> {key} {b['int8_npz']:,} "
               f"({b['ratio']:.2f}x smaller); compressed npz {b['float32_npz_compressed']:,} "
               f"-> {b['int8_npz_compressed']:,}")
  return "\n".join(lines)
