"""Magnitude pruning as an optax transformation: the masks live in the optimizer state.

`prune(...)` is appended to the update rule (see `research.training.optimizers`). Every
`update_every` steps between `start` and `end` it recomputes the masks so that the smallest
weights by magnitude are zero, at the sparsity of Zhu & Gupta's (2017, "To prune, or not to
prune") cubic ramp:

    s(t) = s_f * (1 - (1 - (t - start) / (end - start))^3)       for start <= t <= end

and s_f after `end`. Its update is `mask * (params + update) - params`: pruned weights are
set to zero and stay zero, and everything happens inside the compiled train step (no loop
change, and the masks are checkpointed with the optimizer state, so a resumed run keeps them).
`scope='global'` ranks all prunable weights together (layers end with different sparsities);
`scope='layer'` prunes every layer to the same sparsity. Prunable: weight matrices (ndim > 1)
whose path matches `include` (kernels by default); biases and norm scales never.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from research.errors import ConfigError
from research.training.transfer import _compile, _require_matches, path_name

SCOPES = ("global", "layer")
FIELD = "config.optimizer.prune"


def default_prune_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      sparsity=0.0,        # final fraction of prunable weights set to zero; 0 = no pruning
      scope="global",      # 'global': rank all prunable weights together | 'layer': each alone
      start=0.0,           # ramp start and end: a fraction of training if <= 1, else a step
      end=0.5,
      update_every=100,    # steps between mask updates during the ramp
      include=("kernel",),  # parameter-path regexes of prunable weights (ndim > 1 only)
  ))


class PruneState(NamedTuple):
  count: jax.Array  # calls so far: batches (with gradient accumulation, k per update)
  masks: Any        # bool per prunable weight; a () placeholder for the others


def _step(value: float, total_steps: int) -> int:
  return round(value * total_steps) if value <= 1 else int(value)


def check_config(prune: ml_collections.ConfigDict, total_steps: int) -> tuple[int, int]:
  """Validates `config.optimizer.prune`; returns the ramp's (start, end) steps."""
  sparsity = float(prune.sparsity)
  if not 0 <= sparsity < 1:
    raise ConfigError(f"{FIELD}.sparsity must be in [0, 1) (the fraction of prunable weights "
                      f"set to zero; 0 = off), got {prune.sparsity}.")
  if prune.scope not in SCOPES:
    raise ConfigError(f"{FIELD}.scope must be one of {SCOPES}, got {prune.scope!r}.")
  if int(prune.update_every) < 1:
    raise ConfigError(f"{FIELD}.update_every must be >= 1, got {prune.update_every}.")
  if prune.start < 0 or prune.end < 0:
    raise ConfigError(f"{FIELD}.start and .end must be >= 0 (fractions of training if <= 1, "
                      f"else steps), got start={prune.start}, end={prune.end}.")
  start, end = _step(prune.start, total_steps), _step(prune.end, total_steps)
  if end < start:
    raise ConfigError(f"{FIELD}.end ({prune.end} = step {end}) is before .start "
                      f"({prune.start} = step {start}); the ramp must go forward.")
  if not include_patterns(prune):
    raise ConfigError(f"{FIELD}.include is empty: name the weights to prune (e.g. 'kernel').")
  return start, end


def include_patterns(prune: ml_collections.ConfigDict) -> list[re.Pattern[str]]:
  return _compile(tuple(prune.include), f"{FIELD}.include")


def sparsity_schedule(final: float, start: int, end: int) -> optax.Schedule:
  """Zhu & Gupta's cubic ramp from 0 at `start` to `final` at `end` (a step function at
  `start` when end == start)."""

  def schedule(step):
    progress = jnp.clip((step - start) / max(end - start, 1), 0.0, 1.0)
    value = final * (1.0 - (1.0 - progress) ** 3)
    return jnp.where(step >= max(end, start), final, jnp.where(step < start, 0.0, value))

  return schedule


def prunable(params: Any, include: list[re.Pattern[str]]) -> Any:
  """A tree of bools: which leaves the masks cover (weights matching `include`)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, p: jnp.ndim(p) > 1 and any(r.search(path_name(path)) for r in include),
      params)


def _keep_largest(magnitudes: jax.Array, sparsity: jax.Array) -> jax.Array:
  """True for all but the round(sparsity * n) smallest entries (ties broken by position),
  so the sparsity is exact whatever the values."""
  flat = magnitudes.reshape(-1)
  num_pruned = jnp.round(sparsity * flat.size).astype(jnp.int32)
  rank = jnp.argsort(jnp.argsort(flat, stable=True), stable=True)
  return (rank >= num_pruned).reshape(magnitudes.shape)


def magnitude_masks(params: Any, covered: Any, sparsity: jax.Array, scope: str) -> Any:
  """Masks keeping the largest-magnitude weights: over all covered weights (global) or
  per weight (layer). Leaves not covered get a () True placeholder."""
  leaves, treedef = jax.tree_util.tree_flatten(params)
  flags = treedef.flatten_up_to(covered)
  chosen = [jnp.abs(p.astype(jnp.float32)) for p, f in zip(leaves, flags) if f]
  if scope == "layer":
    kept = [_keep_largest(m, sparsity) for m in chosen]
  else:
    joined = _keep_largest(jnp.concatenate([m.reshape(-1) for m in chosen]), sparsity)
    ends = np.cumsum([m.size for m in chosen])[:-1]
    kept = [part.reshape(m.shape) for part, m in zip(jnp.split(joined, ends), chosen)]
  kept_iter = iter(kept)
  masks = [next(kept_iter) if f else jnp.ones((), bool) for f in flags]
  return jax.tree_util.tree_unflatten(treedef, masks)


def prune(sparsity: float, scope: str, start: int, end: int, update_every: int,
          include: list[re.Pattern[str]]) -> optax.GradientTransformation:
  """The pruning transformation; put it last in the chain (it needs the final update)."""
  schedule = sparsity_schedule(sparsity, start, end)

  def covered_of(params):
    weights = [path_name(p) for p, v in jax.tree_util.tree_leaves_with_path(params)
               if jnp.ndim(v) > 1]
    _require_matches(include, weights, f"{FIELD}.include (weights with ndim > 1)")
    return prunable(params, include)

  def init(params):
    covered = covered_of(params)
    masks = jax.tree_util.tree_map(
        lambda p, c: jnp.ones(jnp.shape(p), bool) if c else jnp.ones((), bool), params, covered)
    return PruneState(count=jnp.zeros((), jnp.int32), masks=masks)

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("pruning needs the parameters: call tx.update(grads, state, params).")
    covered = covered_of(params)
    step = state.count
    ramp_step = (step >= start) & (step <= end) & (((step - start) % update_every == 0)
                                                   | (step == end))
    # After the ramp the masks are fixed; the update at `end` sets the final sparsity.
    new_params = jax.tree_util.tree_map(lambda p, u: p + u, params, updates)
    masks = jax.lax.cond(
        ramp_step, lambda: magnitude_masks(new_params, covered, schedule(step), scope),
        lambda: state.masks)
    masked = jax.tree_util.tree_map(
        lambda u, p, m, c: jnp.where(m, u, -p).astype(u.dtype) if c else u,
        updates, params, masks, covered)
    return masked, PruneState(count=optax.safe_increment(step), masks=masks)

  return optax.GradientTransformation(init, update)


def maybe_prune(opt: ml_collections.ConfigDict, total_steps: int,
                tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """`tx` followed by pruning when `opt.prune.sparsity` > 0; `tx` itself otherwise (so runs
  without pruning keep their optimizer state, and their old checkpoints, unchanged)."""
  cfg = opt.get("prune")
  if cfg is None:
    return tx
  start, end = check_config(cfg, total_steps)
  if float(cfg.sparsity) == 0:
    return tx
  return optax.chain(tx, prune(float(cfg.sparsity), cfg.scope, start, end,
                               int(cfg.update_every), include_patterns(cfg)))


def sparsity_report(params: Any, include: tuple[str, ...] = ("kernel",)) -> dict[str, Any]:
  """Fraction of exact zeros among the prunable weights: overall and per weight (host)."""
  covered = prunable(params, _compile(tuple(include), f"{FIELD}.include"))
  per_layer, zeros, total = {}, 0, 0
  for (path, p), c in zip(jax.tree_util.tree_leaves_with_path(params),
                          jax.tree_util.tree_leaves(covered)):
    if not c:
      continue
    p = np.asarray(p)
    n_zero = int(np.count_nonzero(p == 0))
    per_layer[path_name(path)] = n_zero / p.size
    zeros, total = zeros + n_zero, total + p.size
  return {"sparsity": zeros / max(total, 1), "sparsity_per_layer": per_layer,
          "prunable_weights": total}


def result_fields(opt: ml_collections.ConfigDict, params: Any) -> dict[str, Any]:
  """What result.json reports of a pruned run (nothing when pruning is off)."""
  cfg = opt.get("prune")
  if cfg is None or float(cfg.sparsity) == 0:
    return {}
  return sparsity_report(jax.device_get(params), tuple(cfg.include))
