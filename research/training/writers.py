"""Where metrics go: metrics.jsonl, TensorBoard event files, a progress display.

Only process 0 writes (multi-host runs call these on every process).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, Mapping

import jax
import numpy as np
from absl import logging


def _scalar(value: Any) -> float | int | None:
  if isinstance(value, (bool, np.bool_)):
    return int(value)
  if isinstance(value, (int, float, np.integer, np.floating)) or (
      hasattr(value, "shape") and np.shape(value) == ()):
    return float(value)
  return None


def atomic_write_json(path: str, obj: Any) -> None:
  """Writes JSON so that a reader never sees a half-written file."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=float)
    f.write("\n")
  os.replace(tmp, path)


def import_tensorboardx():
  """tensorboardX, imported without torch.

  tensorboardX imports torch at import time whenever it is installed, only to accept torch
  tensors (about 4 s of CPU per process); torch is hidden from that one import only.
  """
  hidden = "torch" not in sys.modules
  if hidden:
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` -> ImportError
  try:
    import tensorboardX
  finally:
    if hidden:
      del sys.modules["torch"]
  return tensorboardX


class MetricWriter:
  """Appends `{"step", "split", **scalars}` records to jsonl and TensorBoard."""

  def __init__(self, workdir: str, resume_step: int = 0):
    self.active = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if not self.active:
      return
    self._truncate_after(resume_step)
    # purge_step drops events a killed run wrote past the checkpoint we resume from.
    self._tb = import_tensorboardx().SummaryWriter(os.path.join(workdir, "tensorboard"),
                             purge_step=resume_step or None, flush_secs=10)

  def _truncate_after(self, step: int) -> None:
    """On resume, forget records past the restored step: they will be written again."""
    if not os.path.exists(self.path):
      return
    with open(self.path) as f:
      lines = [l for l in f if l.strip()]
    kept = []
    for line in lines:
      try:
        if json.loads(line).get("step", 0) <= step:
          kept.append(line)
      except json.JSONDecodeError:  # a line cut by a kill
        continue
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(kept)
    os.replace(tmp, self.path)

  def write(self, step: int, split: str, values: Mapping[str, Any]) -> None:
    if not self.active:
      return
    scalars = {k: _scalar(v) for k, v in values.items()}
    scalars = {k: v for k, v in scalars.items() if v is not None}
    record = {"step": int(step), "split": split, **scalars}
    with open(self.path, "a") as f:
      f.write(json.dumps(record, allow_nan=True) + "\n")
    for name, value in scalars.items():
      if math.isfinite(value):
        self._tb.add_scalar(f"{split}/{name}", value, step)

  def image(self, step: int, tag: str, image: np.ndarray) -> None:
    """One (H, W, C) uint8 image (e.g. a grid of samples) as a TensorBoard image."""
    if self._tb is not None:
      self._tb.add_image(tag, np.asarray(image), step, dataformats="HWC")

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


class Progress:
  """A tqdm bar on a terminal; plain periodic log lines otherwise (CI, files)."""

  def __init__(self, total_steps: int, initial_step: int, batch_size: int):
    self.total = total_steps
    self.batch_size = batch_size
    self.interactive = sys.stderr.isatty() and jax.process_index() == 0
    self._bar = None
    self._last_time = time.perf_counter()
    self._last_step = initial_step
    self.steps_per_s = 0.0
    if self.interactive:
      from tqdm import tqdm
      self._bar = tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True)

  def update(self, step: int, values: Mapping[str, float] | None = None) -> dict[str, float]:
    """Advances to `step`; with `values` (a log interval) also reports rates."""
    now = time.perf_counter()
    if self._bar is not None and step > self._bar.n:  # a deferred log line may trail the bar
      self._bar.update(step - self._bar.n)
    if values is None:
      return {}
    elapsed = max(now - self._last_time, 1e-9)
    self.steps_per_s = (step - self._last_step) / elapsed
    self._last_time, self._last_step = now, step
    rates = {"steps_per_s": self.steps_per_s, "examples_per_s": self.steps_per_s * self.batch_size}
    eta = (self.total - step) / self.steps_per_s if self.steps_per_s > 0 else float("nan")
    shown = " ".join(f"{k}={v:.4g}" for k, v in values.items())
    if self._bar is not None:
      self._bar.set_postfix_str(f"{shown} {rates['examples_per_s']:.0f} ex/s")
    elif jax.process_index() == 0:
      eta_s = "?" if not math.isfinite(eta) else time.strftime("%H:%M:%S", time.gmtime(eta))
      logging.info("step %d/%d %s | %.1f steps/s %.0f ex/s ETA %s", step, self.total, shown,
                   rates["steps_per_s"], rates["examples_per_s"], eta_s)
    return rates

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
