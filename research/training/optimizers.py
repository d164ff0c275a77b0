"""Optimizers and learning-rate schedules from config strings, on optax.

`make_optimizer(config.optimizer, config.schedule, total_steps)` returns one
`optax.GradientTransformation`: [clip by global norm] -> [weight decay added to the
gradient] -> optimizer, with the learning rate a schedule (AdamW decays inside its own
update instead). L1/L2 penalties are terms of the loss, not of
the optimizer (see `penalty`), so that "L2 regularisation" means what textbooks
mean; decoupled weight decay is `optimizer.weight_decay`.
"""

from __future__ import annotations

import inspect
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from research.errors import ConfigError
from research.training import accumulation as accumulation_lib
from research.training.pruning import default_prune_config, maybe_prune
from research.training.transfer import parameter_groups
from research.registry import unknown_name_message

# Optimizers with their own constructor (hyperparameter names differ from optax's).
_NAMED = ("sgd", "momentum", "nesterov", "adam", "adamw", "adagrad", "rmsprop")
# Any other optax optimizer taking `learning_rate` may be named too.
_OPTAX_EXTRA = ("lamb", "lion", "lars", "nadam", "nadamw", "radam", "adamax", "adamaxw",
                "adabelief", "adadelta", "adafactor", "amsgrad", "novograd", "yogi",
                "fromage", "sm3", "noisy_sgd", "sign_sgd", "rprop", "adan")
OPTIMIZER_NAMES = tuple(sorted(_NAMED + tuple(n for n in _OPTAX_EXTRA if hasattr(optax, n))))
SCHEDULE_NAMES = ("constant", "step", "exponential", "polynomial", "cosine", "linear",
                  "warmup_cosine", "rsqrt")


def default_optimizer_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      name="adam", learning_rate=1e-3,
      momentum=0.9,           # momentum / nesterov
      b1=0.9, b2=0.999,       # adam / adamw
      eps=1e-8,               # adam / adamw / adagrad / rmsprop
      decay=0.9,              # rmsprop's moving average of squared gradients
      weight_decay=0.0, clip_norm=0.0, l1=0.0, l2=0.0,
      # Parameter-path regexes (see research/training/transfer.py): kept fixed, or trained at
      # scale_lr_factor x the learning rate (e.g. pretrained layers while a new head learns).
      freeze=(), scale_lr=(), scale_lr_factor=0.1,
      # Gradient accumulation (optax.MultiSteps): the mean gradient of this many consecutive
      # batches of train.batch_size makes one update; train.num_steps counts batches.
      accumulate_steps=1,
      # A batch-size ramp instead: "BATCH:K,..." (e.g. "0:1,2000:2,6000:4": from batch 2000
      # on, 2 batches per update); see research/training/accumulation.py.
      accumulate_ramp="",
      # Magnitude pruning (research/training/pruning.py); sparsity 0 = off.
      prune=default_prune_config()))


def default_schedule_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      name="constant", warmup_steps=0, decay_rate=0.1, decay_every_steps=0,
      boundaries=(), end_value=0.0, power=1.0, alpha=0.0))


def make_schedule(opt: ml_collections.ConfigDict, sched: ml_collections.ConfigDict,
                  total_steps: int) -> optax.Schedule:
  """The learning rate as a function of step; warmup (linear from 0) composes with any."""
  lr = float(opt.learning_rate)
  if not lr > 0:
    raise ConfigError(f"config.optimizer.learning_rate must be > 0, got {opt.learning_rate}.")
  name = sched.name
  if name not in SCHEDULE_NAMES:
    raise ConfigError(unknown_name_message("schedule", name, list(SCHEDULE_NAMES),
                                           "config.schedule.name"))
  warmup = int(sched.get("warmup_steps", 0))
  if warmup < 0 or warmup >= max(total_steps, 1) and warmup > 0:
    raise ConfigError(f"config.schedule.warmup_steps={warmup} must be in [0, total steps="
                      f"{total_steps}).")
  decay_steps = max(total_steps - warmup, 1)
  if name == "constant":
    main = optax.constant_schedule(lr)
  elif name == "step":
    # Multiply by decay_rate at each boundary (fractions of training if <= 1, else steps),
    # or every `decay_every_steps` steps.
    every = int(sched.get("decay_every_steps", 0))
    if every > 0:
      main = optax.exponential_decay(lr, every, sched.decay_rate, staircase=True)
    else:
      # round, not int: 0.29 * 100 is 28.999... in floating point.
      bounds = [round(b * total_steps) if b <= 1 else int(b) for b in sched.boundaries]
      if not bounds:
        raise ConfigError("config.schedule.name='step' needs config.schedule.boundaries "
                          "(e.g. (0.5, 0.75)) or config.schedule.decay_every_steps > 0.")
      # Boundaries are absolute steps; `main` runs on the clock after warmup. Boundaries
      # that coincide (or fall inside warmup) must compound, not overwrite one another
      # as dict keys would.
      scales: dict[int, float] = {}
      for b in bounds:
        key = max(b - warmup, 0)
        scales[key] = scales.get(key, 1.0) * float(sched.decay_rate)
      main = optax.piecewise_constant_schedule(lr, scales)
  elif name == "exponential":
    every = int(sched.get("decay_every_steps", 0)) or decay_steps
    main = optax.exponential_decay(lr, every, sched.decay_rate)
  elif name == "polynomial":
    main = optax.polynomial_schedule(lr, sched.end_value, sched.power, decay_steps)
  elif name == "linear":
    main = optax.linear_schedule(lr, sched.end_value, decay_steps)
  elif name in ("cosine", "warmup_cosine"):
    main = optax.cosine_decay_schedule(lr, decay_steps, alpha=sched.alpha)
  elif name == "rsqrt":
    # lr * sqrt(warmup / step) on the absolute step. After a warmup, join_schedules
    # passes `step - warmup`, so add it back: otherwise the LR jumps to lr*sqrt(warmup).
    main = lambda step: lr * jax.lax.rsqrt(
        jnp.maximum(step + warmup, 1.0) / max(warmup, 1))
  if warmup:
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
  return main


def _weight_decay_mask(params: Any) -> Any:
  """Decay kernels/embeddings only: biases and norm scales (ndim <= 1) are exempt."""
  return jax.tree_util.tree_map(lambda p: jnp.ndim(p) > 1, params)


def make_optimizer(opt: ml_collections.ConfigDict, sched: ml_collections.ConfigDict,
                   total_steps: int) -> optax.GradientTransformation:
  """The whole update rule named by config strings."""
  lr = make_schedule(opt, sched, total_steps)
  name = opt.name
  wd = float(opt.get("weight_decay", 0.0))
  if wd < 0:
    raise ConfigError(f"config.optimizer.weight_decay must be >= 0, got {wd}.")
  if name == "sgd":
    tx = optax.sgd(lr)
  elif name == "momentum":
    tx = optax.sgd(lr, momentum=opt.momentum)
  elif name == "nesterov":
    tx = optax.sgd(lr, momentum=opt.momentum, nesterov=True)
  elif name == "adam":
    tx = optax.adam(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps)
  elif name == "adamw":
    tx = optax.adamw(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=wd,
                     mask=_weight_decay_mask)
    wd = 0.0  # already decoupled inside adamw
  elif name == "adagrad":
    tx = optax.adagrad(lr, eps=opt.eps)
  elif name == "rmsprop":
    # Textbook RMSProp (Tieleman & Hinton; Keras' defaults): no momentum.
    tx = optax.rmsprop(lr, decay=opt.decay, eps=opt.eps)
  elif name == "sm3":
    # optax.sm3 takes a scalar LR only (it negates it): apply the schedule after it.
    tx = optax.chain(optax.sm3(1.0, momentum=opt.momentum), optax.scale_by_schedule(lr))
  elif name == "rprop":
    # Rprop's learning_rate is the initial per-parameter step size, which it then adapts
    # from gradient signs; it must be a number, and a schedule would mean nothing.
    if sched.name != "constant" or int(sched.get("warmup_steps", 0)):
      raise ConfigError("config.optimizer.name='rprop' adapts its own step sizes: use "
                        "config.schedule.name='constant' with warmup_steps=0.")
    tx = optax.rprop(float(opt.learning_rate))
  elif name in OPTIMIZER_NAMES:
    # Other optax optimizers keep optax's own defaults for everything but the learning
    # rate: the shared b1/b2/eps/momentum fields are tuned for the named ones above.
    factory = getattr(optax, name)
    accepted = inspect.signature(factory).parameters
    kwargs = {}
    if "key" in accepted:
      # noisy_sgd: a fixed noise key keeps runs reproducible (optax warns without one).
      kwargs["key"] = 0
    tx = factory(lr, **kwargs)
  else:
    raise ConfigError(unknown_name_message("optimizer", name, list(OPTIMIZER_NAMES),
                                           "config.optimizer.name"))
  parts = []
  if opt.get("clip_norm", 0.0) > 0:
    parts.append(optax.clip_by_global_norm(opt.clip_norm))
  if wd > 0:
    # Added to the gradient before the update rule, as PyTorch's `weight_decay` for SGD,
    # momentum, RMSProp and friends; AdamW above has its own decoupled decay.
    parts.append(optax.add_decayed_weights(wd, mask=_weight_decay_mask))
  parts.append(tx)
  # Pruning wraps the accumulation, so it is called once per batch: its ramp (a fraction of
  # training, or a step) is in batches, while `total_steps` counts optimizer updates.
  # Accumulation (optax.MultiSteps) is outermost but for pruning, so clipping and weight
  # decay see the accumulated gradient, as with one big batch.
  accumulation = accumulation_lib.from_config(opt)
  return maybe_prune(opt, accumulation.batches_for(total_steps),
                     accumulation.wrap(parameter_groups(opt, optax.chain(*parts))))


def penalty(params: Any, l1: float, l2: float) -> jax.Array:
  """L1 + L2 (elastic net when both) on weight matrices, added to the loss.

  `l2 * 0.5 * sum(w**2)`: the gradient is `l2 * w`, the textbook weight-decay term.
  Biases and normalisation scales are not penalised, as in scikit-learn's models.
  """
  weights = [p for p in jax.tree_util.tree_leaves(params) if jnp.ndim(p) > 1]
  total = jnp.zeros((), jnp.float32)
  if l1:
    total += l1 * sum(jnp.sum(jnp.abs(w)) for w in weights)
  if l2:
    total += 0.5 * l2 * sum(jnp.sum(jnp.square(w)) for w in weights)
  return total
