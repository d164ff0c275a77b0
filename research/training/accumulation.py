"""Gradient accumulation, constant or ramped: how many batches make one optimizer update.

`config.optimizer.accumulate_steps=k` averages the gradients of k consecutive batches of
`train.batch_size` into one update (optax.MultiSteps). `config.optimizer.accumulate_ramp`
makes k grow during training instead, which is a batch-size ramp (GPT-3's, and Megatron's
`--rampup-batch-size`, which ramps the number of micro-batches the same way): the compiled
step keeps one batch shape, and the effective batch is k x `train.batch_size`.

  accumulate_ramp = "0:1,2000:2,6000:4"   # batches 0-1999: k=1; 2000-5999: k=2; then k=4

Steps (`train.num_steps`, the ramp's boundaries, checkpoints) count batches, never updates,
so the data order, a pure function of (seed, batch), is the same with or without a ramp, and
resume is exact (MultiSteps' counters are in the optimizer state). Learning-rate schedules
count updates. Each phase must hold whole updates: an update never straddles a boundary.
"""

from __future__ import annotations

import dataclasses
import math
import jax.numpy as jnp
import ml_collections
import optax

from research.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Accumulation:
  """Phases of (first batch, batches per update); the last phase runs to the end."""
  starts: tuple[int, ...]
  ks: tuple[int, ...]

  @property
  def constant(self) -> bool:
    return len(self.ks) == 1

  @property
  def max_k(self) -> int:
    return max(self.ks)

  @property
  def group(self) -> int:
    """Batches that every phase divides into whole updates (epochs hold a multiple)."""
    return math.lcm(*self.ks)

  def updates_at(self, batch: int) -> int:
    """Optimizer updates completed after `batch` batches (at a phase's whole updates)."""
    done = 0
    for i, (start, k) in enumerate(zip(self.starts, self.ks)):
      end = self.starts[i + 1] if i + 1 < len(self.starts) else batch
      if batch <= start:
        break
      done += (min(batch, end) - start) // k
    return done

  def batches_for(self, updates: int) -> int:
    """The batch count at which `updates` updates are complete (inverse of updates_at)."""
    batch = done = 0
    for i, (start, k) in enumerate(zip(self.starts, self.ks)):
      in_phase = ((self.starts[i + 1] - start) // k if i + 1 < len(self.starts)
                  else updates - done)
      take = min(in_phase, updates - done)
      batch, done = start + take * k, done + take
      if done >= updates:
        break
    return batch

  def every_k(self, gradient_step: jnp.ndarray) -> jnp.ndarray:
    """k as a function of MultiSteps' update counter (its `every_k_schedule`)."""
    k = jnp.asarray(self.ks[0], jnp.int32)
    for start, phase_k in zip(self.starts[1:], self.ks[1:]):
      k = jnp.where(gradient_step >= self.updates_at(start), phase_k, k)
    return k

  def check_total(self, total_batches: int) -> None:
    """Raises unless every phase up to `total_batches` ends on a whole update."""
    ends = list(self.starts[1:]) + [total_batches]
    for start, end, k in zip(self.starts, ends, self.ks):
      if start >= total_batches:
        break
      length = min(end, total_batches) - start
      if length % k:
        field = ("config.optimizer.accumulate_steps" if self.constant
                 else "config.optimizer.accumulate_ramp")
        raise ConfigError(
            f"{field}: batches {start}-{min(end, total_batches) - 1} accumulate {k} per "
            f"update, but {length} is not a multiple of {k}, so an update would be left "
            f"incomplete (train.num_steps={total_batches}); make each phase, and "
            "train.num_steps, whole updates.")

  def wrap(self, tx: optax.GradientTransformation) -> optax.GradientTransformation:
    if self.ks == (1,):
      return tx
    k = self.ks[0] if self.constant else self.every_k
    return optax.MultiSteps(tx, every_k_schedule=k).gradient_transformation()


def _positive_int(value: object) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def parse_ramp(text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """'0:1,2000:2' -> ((0, 2000), (1, 2)); a ConfigError naming the field if malformed."""
  where = f"config.optimizer.accumulate_ramp={text!r}"
  starts, ks = [], []
  for part in text.split(","):
    start, colon, k = part.strip().partition(":")
    try:
      if not colon:
        raise ValueError(part)
      starts.append(int(start))
      ks.append(int(k))
    except ValueError:
      raise ConfigError(f"{where}: {part.strip()!r} is not BATCH:K; write e.g. "
                        "'0:1,2000:2,6000:4' (from batch 2000 on, 2 batches per update).")
  if starts[0] != 0:
    raise ConfigError(f"{where}: the first phase must start at batch 0, not {starts[0]}.")
  if any(b <= a for a, b in zip(starts, starts[1:])):
    raise ConfigError(f"{where}: phase starts {starts} must increase strictly.")
  if not all(_positive_int(k) for k in ks):
    raise ConfigError(f"{where}: every K must be an integer >= 1, got {ks}.")
  return tuple(starts), tuple(ks)


def from_config(opt: ml_collections.ConfigDict) -> Accumulation:
  """The accumulation that `config.optimizer` asks for (constant k, or a ramp)."""
  k = opt.get("accumulate_steps", 1)
  if not _positive_int(k):
    raise ConfigError(f"config.optimizer.accumulate_steps must be an integer >= 1, got {k!r}.")
  ramp = opt.get("accumulate_ramp", "") or ""
  if not ramp.strip():
    return Accumulation((0,), (k,))
  if k != 1:
    raise ConfigError(f"config.optimizer.accumulate_steps={k} and accumulate_ramp={ramp!r} "
                      "both set the batches per update; keep one (set accumulate_steps=1 to "
                      "ramp).")
  return Accumulation(*parse_ramp(ramp))
