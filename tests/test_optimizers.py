"""Tests for research.training.optimizers: the optimizer factory, schedules, penalties.

The factory is thin glue over optax, so most tests compare it against the plain optax
call it should amount to: a hyperparameter dropped or mis-mapped on the way shows up as
a numerical mismatch rather than as a silently worse training run.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from research.errors import ConfigError
from research.training.optimizers import (OPTIMIZER_NAMES, SCHEDULE_NAMES,
                                          default_optimizer_config,
                                          default_schedule_config, make_optimizer,
                                          make_schedule, penalty)

TOTAL = 100
CORE = ("sgd", "momentum", "nesterov", "adam", "adamw", "adagrad", "rmsprop")


def _configs(name: str = "sgd", schedule: str = "constant", **fields: Any
             ) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
  """(optimizer, schedule) configs from the defaults; fields go where they belong."""
  opt, sched = default_optimizer_config(), default_schedule_config()
  opt.name, sched.name = name, schedule
  for key, value in fields.items():
    (opt if key in opt else sched)[key] = value
  return opt, sched


def _params(seed: int = 0) -> dict[str, jax.Array]:
  """A kernel (decayed / penalised) and a bias (exempt): the two cases the mask separates."""
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  return {"dense": {"kernel": jax.random.normal(k1, (3, 2)),
                    "bias": jax.random.normal(k2, (2,))}}


def _quadratic(params: Any) -> jax.Array:
  """||w - 3||^2 over every leaf: minimum at 3, far from the N(0, 1) start."""
  return sum(jnp.sum(jnp.square(p - 3.0)) for p in jax.tree_util.tree_leaves(params))


def _run(tx: optax.GradientTransformation, params: Any, steps: int) -> Any:
  """`steps` updates on `_quadratic`, compiled as one loop (one compile per optimizer)."""

  def body(_, carry):
    params, state = carry
    updates, state = tx.update(jax.grad(_quadratic)(params), state, params)
    return optax.apply_updates(params, updates), state

  run = jax.jit(lambda p: jax.lax.fori_loop(0, steps, body, (p, tx.init(p)))[0])
  return run(params)


def _lrs(schedule: Callable, steps: list[int]) -> np.ndarray:
  return np.array([float(schedule(s)) for s in steps])


# -- every optimizer ----------------------------------------------------------------


@functools.cache
def _trained(name: str) -> tuple[float, float, bool]:
  """(start objective, objective after 30 steps, all finite) for one optimizer.

  Cached: both tests below read it, and compiling ~27 optimizers twice is most of the cost.
  """
  opt, sched = _configs(name, learning_rate=0.1)
  params = _params()
  final = _run(make_optimizer(opt, sched, TOTAL), params, steps=30)
  assert jax.tree_util.tree_structure(final) == jax.tree_util.tree_structure(params)
  finite = all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree_util.tree_leaves(final))
  return float(_quadratic(params)), float(_quadratic(final)), finite


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_every_optimizer_builds_and_runs(name):
  start, end, finite = _trained(name)
  assert finite, name
  # Exotic optimizers (adadelta with the config's eps, lars' small trust coefficient)
  # may move slowly at this LR; that they run and stay finite is what is checked here.
  if name in CORE:
    assert end < 0.8 * start, name


def test_most_optimizers_decrease_the_objective():
  """Allow at most two exotic optimizers to be too slow at a shared LR and budget."""
  slow = [name for name in OPTIMIZER_NAMES if not _trained(name)[1] < _trained(name)[0]]
  assert not set(slow) & set(CORE)
  assert len(slow) <= 2, slow


# -- the named optimizers equal plain optax --------------------------------------------

# Non-default hyperparameters, so a dropped one cannot go unnoticed.
HP = dict(learning_rate=0.03, momentum=0.7, b1=0.8, b2=0.95, eps=1e-3, decay=0.8,
          weight_decay=0.02)
REFERENCE = {
    "sgd": lambda: optax.sgd(HP["learning_rate"]),
    "momentum": lambda: optax.sgd(HP["learning_rate"], momentum=HP["momentum"]),
    "nesterov": lambda: optax.sgd(HP["learning_rate"], momentum=HP["momentum"], nesterov=True),
    "adam": lambda: optax.adam(HP["learning_rate"], b1=HP["b1"], b2=HP["b2"], eps=HP["eps"]),
    "adamw": lambda: optax.adamw(HP["learning_rate"], b1=HP["b1"], b2=HP["b2"], eps=HP["eps"],
                                 weight_decay=HP["weight_decay"],
                                 mask=lambda p: jax.tree_util.tree_map(lambda x: x.ndim > 1, p)),
    "adagrad": lambda: optax.adagrad(HP["learning_rate"], eps=HP["eps"]),
    # Textbook RMSProp: the config's `decay`, no momentum.
    "rmsprop": lambda: optax.rmsprop(HP["learning_rate"], decay=HP["decay"], eps=HP["eps"]),
}


@pytest.mark.parametrize("name", CORE)
def test_named_optimizer_matches_optax(name):
  fields = dict(HP) if name == "adamw" else {k: v for k, v in HP.items() if k != "weight_decay"}
  opt, sched = _configs(name, **fields)
  ours, ref = make_optimizer(opt, sched, TOTAL), REFERENCE[name]()
  params = _params()
  ours_state, ref_state = ours.init(params), ref.init(params)
  p_ours, p_ref = params, params
  for step in range(4):
    grads = jax.tree_util.tree_map(
        lambda p: jax.random.normal(jax.random.PRNGKey(10 + step), p.shape), params)
    u_ours, ours_state = ours.update(grads, ours_state, p_ours)
    u_ref, ref_state = ref.update(grads, ref_state, p_ref)
    for a, b in zip(jax.tree_util.tree_leaves(u_ours), jax.tree_util.tree_leaves(u_ref)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=f"{name} step {step}")
    p_ours, p_ref = optax.apply_updates(p_ours, u_ours), optax.apply_updates(p_ref, u_ref)


def test_hyperparameters_change_the_update():
  """Guards the comparison above: the chosen values differ visibly from optax defaults."""
  opt, sched = _configs("adam", **{k: v for k, v in HP.items() if k != "weight_decay"})
  params = _params()
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  tx_default = optax.adam(HP["learning_rate"])
  tx = make_optimizer(opt, sched, TOTAL)
  u1, s1 = tx.update(grads, tx.init(params), params)
  u2, s2 = tx_default.update(grads, tx_default.init(params), params)
  grads2 = jax.tree_util.tree_map(lambda g: -3 * g, grads)
  u1, _ = tx.update(grads2, s1, params)
  u2, _ = tx_default.update(grads2, s2, params)
  assert not np.allclose(u1["dense"]["kernel"], u2["dense"]["kernel"], rtol=1e-3)


def test_scalar_lr_optimizers_with_schedules():
  """optax.sm3 / optax.rprop reject a schedule as learning_rate; the factory copes."""
  params = _params()
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  # sm3 follows the schedule: zero LR at the first warmup step, then a nonzero step.
  opt, sched = _configs("sm3", schedule="cosine", learning_rate=0.1, warmup_steps=2)
  tx = make_optimizer(opt, sched, TOTAL)
  updates, state = tx.update(grads, tx.init(params), params)
  assert float(optax.tree.norm(updates)) == 0.0
  _, state = tx.update(grads, state, params)
  updates, _ = tx.update(grads, state, params)
  assert float(optax.tree.norm(updates)) > 0.0
  # Rprop adapts its own step sizes: a schedule is refused rather than ignored.
  opt, sched = _configs("rprop", schedule="cosine")
  with pytest.raises(ConfigError, match="rprop"):
    make_optimizer(opt, sched, TOTAL)


def test_unknown_optimizer_suggests_close_name():
  opt, sched = _configs("adamm")
  with pytest.raises(ConfigError, match="Did you mean 'adam'"):
    make_optimizer(opt, sched, TOTAL)


def test_negative_weight_decay_is_a_config_error():
  opt, sched = _configs("sgd", weight_decay=-0.1)
  with pytest.raises(ConfigError, match="weight_decay"):
    make_optimizer(opt, sched, TOTAL)


# -- schedules ----------------------------------------------------------------------


def test_constant_schedule():
  opt, sched = _configs(learning_rate=0.3)
  np.testing.assert_allclose(_lrs(make_schedule(opt, sched, TOTAL), [0, 1, 50, 99, 100]),
                             0.3, rtol=1e-6)


def test_linear_warmup_starts_at_zero_and_reaches_lr():
  opt, sched = _configs(learning_rate=0.2, warmup_steps=10)
  lrs = _lrs(make_schedule(opt, sched, TOTAL), [0, 5, 10, 11, 60])
  np.testing.assert_allclose(lrs, [0.0, 0.1, 0.2, 0.2, 0.2], rtol=1e-6, atol=1e-9)


def test_cosine_ends_at_alpha_times_lr():
  opt, sched = _configs(schedule="cosine", learning_rate=0.4, alpha=0.1)
  lrs = _lrs(make_schedule(opt, sched, TOTAL), [0, TOTAL // 2, TOTAL])
  np.testing.assert_allclose(lrs, [0.4, 0.4 * (0.1 + 0.9 * 0.5), 0.04], rtol=1e-5)


@pytest.mark.parametrize("name", ["cosine", "warmup_cosine"])
def test_warmup_then_cosine(name):
  opt, sched = _configs(schedule=name, learning_rate=0.4, warmup_steps=20, alpha=0.0)
  s = make_schedule(opt, sched, TOTAL)
  lrs = _lrs(s, [0, 10, 20, 60, TOTAL])
  # Cosine runs over the 80 steps after warmup: halfway (step 60) is lr / 2.
  np.testing.assert_allclose(lrs, [0.0, 0.2, 0.4, 0.2, 0.0], rtol=1e-5, atol=1e-7)
  assert np.all(np.diff(_lrs(s, list(range(20, TOTAL + 1)))) <= 1e-9)


def test_step_decay_at_fractional_boundaries():
  opt, sched = _configs(schedule="step", learning_rate=1.0, boundaries=(0.5, 0.75),
                        decay_rate=0.1)
  lrs = _lrs(make_schedule(opt, sched, TOTAL), [0, 49, 50, 74, 75, 99])
  np.testing.assert_allclose(lrs, [1.0, 1.0, 0.1, 0.1, 0.01, 0.01], rtol=1e-5)


def test_step_decay_boundaries_are_absolute_steps_after_warmup():
  opt, sched = _configs(schedule="step", learning_rate=1.0, boundaries=(0.5, 0.75),
                        decay_rate=0.1, warmup_steps=10)
  lrs = _lrs(make_schedule(opt, sched, TOTAL), [0, 10, 49, 50, 75])
  np.testing.assert_allclose(lrs, [0.0, 1.0, 1.0, 0.1, 0.01], rtol=1e-5)


def test_step_decay_fractions_round_to_the_nearest_step():
  # 0.29 * 100 is 28.999... in floating point: the drop belongs at step 29, not 28.
  opt, sched = _configs(schedule="step", learning_rate=1.0, boundaries=(0.29,), decay_rate=0.5)
  np.testing.assert_allclose(_lrs(make_schedule(opt, sched, TOTAL), [28, 29]), [1.0, 0.5])


def test_step_decay_coinciding_boundaries_compound():
  # With 4 steps, 0.5 and 0.6 both land on step 2: both decays must apply.
  opt, sched = _configs(schedule="step", learning_rate=1.0, boundaries=(0.5, 0.6),
                        decay_rate=0.1)
  np.testing.assert_allclose(_lrs(make_schedule(opt, sched, 4), [1, 2]), [1.0, 0.01],
                             rtol=1e-5)


def test_step_decay_every_n_steps():
  opt, sched = _configs(schedule="step", learning_rate=1.0, decay_every_steps=30,
                        decay_rate=0.5)
  lrs = _lrs(make_schedule(opt, sched, TOTAL), [0, 29, 30, 59, 60, 90])
  np.testing.assert_allclose(lrs, [1.0, 1.0, 0.5, 0.5, 0.25, 0.125], rtol=1e-6)


def test_step_without_boundaries_is_a_config_error():
  opt, sched = _configs(schedule="step")
  with pytest.raises(ConfigError, match="boundaries"):
    make_schedule(opt, sched, TOTAL)


def test_exponential_decays_smoothly_to_rate_at_the_end():
  opt, sched = _configs(schedule="exponential", learning_rate=1.0, decay_rate=0.01)
  lrs = _lrs(make_schedule(opt, sched, TOTAL), [0, TOTAL // 2, TOTAL])
  np.testing.assert_allclose(lrs, [1.0, 0.1, 0.01], rtol=1e-5)


def test_polynomial_and_linear_reach_end_value():
  opt, sched = _configs(schedule="polynomial", learning_rate=1.0, end_value=0.1, power=2.0)
  lrs = _lrs(make_schedule(opt, sched, TOTAL), [0, TOTAL // 2, TOTAL, TOTAL + 10])
  np.testing.assert_allclose(lrs, [1.0, 0.1 + 0.9 * 0.25, 0.1, 0.1], rtol=1e-5)
  opt, sched = _configs(schedule="linear", learning_rate=1.0, end_value=0.2)
  lrs = _lrs(make_schedule(opt, sched, TOTAL), [0, TOTAL // 2, TOTAL])
  np.testing.assert_allclose(lrs, [1.0, 0.6, 0.2], rtol=1e-5)


def test_rsqrt_is_continuous_after_warmup():
  opt, sched = _configs(schedule="rsqrt", learning_rate=1.0, warmup_steps=16)
  lrs = _lrs(make_schedule(opt, sched, TOTAL), [8, 16, 64])
  # lr * sqrt(warmup / step) on the absolute step: peak lr at the end of warmup.
  np.testing.assert_allclose(lrs, [0.5, 1.0, 0.5], rtol=1e-5)


def test_every_schedule_name_builds():
  for name in SCHEDULE_NAMES:
    fields = {"boundaries": (0.5,)} if name == "step" else {}
    opt, sched = _configs(schedule=name, learning_rate=0.1, warmup_steps=5, **fields)
    lrs = _lrs(make_schedule(opt, sched, TOTAL), [0, 5, 50, TOTAL])
    assert np.all(np.isfinite(lrs)) and np.all(lrs >= 0) and lrs.max() <= 0.1 + 1e-7, name


def test_unknown_schedule_suggests_close_name():
  opt, sched = _configs(schedule="cosin")
  with pytest.raises(ConfigError, match="Did you mean 'cosine'"):
    make_schedule(opt, sched, TOTAL)


@pytest.mark.parametrize("warmup", [TOTAL, TOTAL + 1])
def test_warmup_as_long_as_training_is_a_config_error(warmup):
  opt, sched = _configs(warmup_steps=warmup)
  with pytest.raises(ConfigError, match="warmup_steps"):
    make_schedule(opt, sched, TOTAL)


@pytest.mark.parametrize("lr", [0.0, -1e-3])
def test_non_positive_learning_rate_is_a_config_error(lr):
  opt, sched = _configs(learning_rate=lr)
  with pytest.raises(ConfigError, match="learning_rate"):
    make_optimizer(opt, sched, TOTAL)


def test_schedule_drives_the_optimizer_step_size():
  """The schedule is wired into the update, not only built: SGD steps follow it."""
  opt, sched = _configs("sgd", schedule="step", learning_rate=1.0, decay_every_steps=1,
                        decay_rate=0.5)
  tx = make_optimizer(opt, sched, TOTAL)
  params = _params()
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  state = tx.init(params)
  steps = []
  for _ in range(3):
    updates, state = tx.update(grads, state, params)
    steps.append(float(updates["dense"]["bias"][0]))
  np.testing.assert_allclose(steps, [-1.0, -0.5, -0.25], rtol=1e-6)


# -- clipping and weight decay ------------------------------------------------------


def test_clip_norm_bounds_the_global_gradient_norm():
  lr, clip = 0.1, 2.0
  opt, sched = _configs("sgd", learning_rate=lr, clip_norm=clip)
  tx = make_optimizer(opt, sched, TOTAL)
  params = _params()
  grads = jax.tree_util.tree_map(lambda p: 1e4 * jnp.sign(p + 0.01), params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(optax.tree.norm(updates), lr * clip, rtol=1e-5)
  # Clipping rescales, so the direction is the gradient's.
  scale = -lr * clip / optax.tree.norm(grads)
  for u, g in zip(jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(grads)):
    np.testing.assert_allclose(u, scale * g, rtol=1e-5)
  # A gradient already within the bound passes unchanged.
  small = jax.tree_util.tree_map(lambda p: 0.01 * p, params)
  updates, _ = tx.update(small, tx.init(params), params)
  for u, g in zip(jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(small)):
    np.testing.assert_allclose(u, -lr * g, rtol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_weight_decay_shrinks_kernels_not_biases(name):
  lr, wd = 0.1, 0.05
  opt, sched = _configs(name, learning_rate=lr, weight_decay=wd)
  tx = make_optimizer(opt, sched, TOTAL)
  params = _params()
  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  # With zero gradient, Adam's own step is 0, so only the decay moves the kernel.
  np.testing.assert_allclose(updates["dense"]["kernel"], -lr * wd * params["dense"]["kernel"],
                             rtol=1e-5)
  np.testing.assert_array_equal(updates["dense"]["bias"], 0.0)


def test_no_weight_decay_by_default():
  opt, sched = _configs("sgd", learning_rate=0.1)
  tx = make_optimizer(opt, sched, TOTAL)
  params = _params()
  updates, _ = tx.update(jax.tree_util.tree_map(jnp.zeros_like, params), tx.init(params), params)
  assert float(optax.tree.norm(updates)) == 0.0


# -- penalty ------------------------------------------------------------------------


@pytest.mark.parametrize("l1,l2", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.7), (0.3, 0.7)])
def test_penalty_value_and_gradient(l1, l2):
  params = _params()
  params["conv"] = {"kernel": jax.random.normal(jax.random.PRNGKey(3), (2, 2, 1, 3)),
                    "scale": jnp.full((3,), 2.0)}
  kernels = [params["dense"]["kernel"], params["conv"]["kernel"]]
  expected = sum(l1 * np.abs(w).sum() + 0.5 * l2 * np.square(w).sum() for w in kernels)
  value = penalty(params, l1, l2)
  assert value.dtype == jnp.float32 and value.shape == ()
  np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-7)

  grads = jax.grad(lambda p: penalty(p, l1, l2))(params)
  for path in (("dense", "kernel"), ("conv", "kernel")):
    w = params[path[0]][path[1]]
    np.testing.assert_allclose(grads[path[0]][path[1]], l1 * np.sign(w) + l2 * np.asarray(w),
                               rtol=1e-5, atol=1e-7)
  # Biases and normalisation scales are never penalised.
  np.testing.assert_array_equal(grads["dense"]["bias"], 0.0)
  np.testing.assert_array_equal(grads["conv"]["scale"], 0.0)
