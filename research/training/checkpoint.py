"""Checkpoints with orbax-checkpoint: the last K, the best by a metric, resume with fallback.

Two `CheckpointManager`s: `checkpoints/` keeps the last `keep` saves (every N steps,
at the end, and on preemption), `checkpoints_best/` keeps the one save with the best
validation metric. Saves are asynchronous; orbax writes each step to a temporary
directory and renames it when complete, so a killed save never looks finished. If the
latest checkpoint is nonetheless unreadable (a corrupted file), resume warns and falls
back to the one before.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from research.errors import CheckpointError


def _manager(directory: str, keep: int, async_save: bool) -> ocp.CheckpointManager:
  # Barrier names per manager: with several processes, the latest and the best manager
  # saving the same step at once would otherwise share (and deadlock on) one barrier name.
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=async_save,
      cleanup_tmp_directories=True, multiprocessing_options=ocp.options.MultiprocessingOptions(
          barrier_sync_key_prefix=os.path.basename(os.path.normpath(directory))))
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def abstract_like(tree: Any) -> Any:
  """Shapes, dtypes and shardings of `tree`: what orbax restores into."""
  return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
  """Saves and restores (train state, JSON metadata) pairs under a workdir."""

  def __init__(self, workdir: str, keep: int = 3, async_save: bool = True):
    self.workdir = workdir
    self.latest_dir = os.path.join(workdir, "checkpoints")
    self.best_dir = os.path.join(workdir, "checkpoints_best")
    self._async = async_save
    self._keep = keep
    self._latest: ocp.CheckpointManager | None = None
    self._best: ocp.CheckpointManager | None = None

  # Managers are created lazily so that merely reading a workdir never creates files.
  @property
  def latest(self) -> ocp.CheckpointManager:
    if self._latest is None:
      self._latest = _manager(self.latest_dir, self._keep, self._async)
    return self._latest

  @property
  def best(self) -> ocp.CheckpointManager:
    if self._best is None:
      self._best = _manager(self.best_dir, 1, self._async)
    return self._best

  @staticmethod
  def _args(state: Any, meta: dict[str, Any]) -> ocp.args.Composite:
    return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))

  def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    if step in self.latest.all_steps():
      return
    self.latest.save(step, args=self._args(state, meta), force=True)

  def save_best(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    """Called only when the metric improved; max_to_keep=1 drops the previous best."""
    if step in self.best.all_steps():
      return
    self.best.save(step, args=self._args(state, meta), force=True)

  def has_checkpoint(self, best: bool = False) -> bool:
    directory = self.best_dir if best else self.latest_dir
    return os.path.isdir(directory) and bool((self.best if best else self.latest).all_steps())

  def restore(self, abstract_state: Any, best: bool = False) -> tuple[Any, dict[str, Any], int] | None:
    """Restores the newest readable checkpoint; None if there is none at all.

    An unreadable newest checkpoint is skipped with a warning; if none can be read the
    error names the directory and the reason.
    """
    if not self.has_checkpoint(best):
      return None
    manager = self.best if best else self.latest
    errors = []
    for step in sorted(manager.all_steps(), reverse=True):
      try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
      except Exception as e:  # orbax raises many types for unreadable files
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        errors.append((step, reason))
        logging.warning("Checkpoint step %d in %s is unreadable (%s); trying the previous one.",
                        step, manager.directory, reason)
        continue
      if errors:
        logging.warning("Using step %d: newer checkpoint(s) %s were unreadable.",
                        step, [s for s, _ in errors])
      return restored["state"], dict(restored["meta"]), step
    step, reason = errors[0]
    raise CheckpointError(
        f"no readable checkpoint in {manager.directory}: step {step} failed with {reason}. "
        "The files are corrupt or were written by a different config: retrain from scratch "
        "with --mode=train_and_evaluate --overwrite, or use another --workdir.")

  def restore_raw(self, best: bool = False) -> tuple[dict[str, Any], int]:
    """The newest (or best) saved train state as nested dicts of arrays, and its step.

    Restored without a target, so the caller rebuilds neither the optimizer nor the dataset
    (sampling, transfer learning, analysis). CheckpointError when there is no checkpoint or
    the newest one cannot be read.
    """
    directory = self.best_dir if best else self.latest_dir
    if not self.has_checkpoint(best):
      raise CheckpointError(f"no checkpoint in {directory}: train first (python -m launch.main "
                            f"--config=... --workdir={self.workdir}), or point at a trained run.")
    manager = self.best if best else self.latest
    step = manager.latest_step()
    try:
      restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    except Exception as e:  # orbax raises many types for unreadable files
      first_line = str(e).splitlines()[0][:200] if str(e) else ""
      raise CheckpointError(f"the checkpoint of step {step} in {directory} cannot be read "
                            f"({type(e).__name__}: {first_line}); retrain the run.") from e
    return restored["state"], int(step)

  def wait(self) -> None:
    for m in (self._latest, self._best):
      if m is not None:
        m.wait_until_finished()

  def close(self) -> None:
    for m in (self._latest, self._best):
      if m is not None:
        m.wait_until_finished()
        m.close()
