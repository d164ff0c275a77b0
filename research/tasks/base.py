"""The task interface: one kind of objective, its loss, its metrics.

The trainer never branches on model type: it asks the task for a loss (the generic
step differentiates it) or, for tasks with special state such as a GAN, for a whole
pure train step.
"""

from __future__ import annotations

import abc
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from research.compress import qat
from research.data.augment import make_augment
from research.errors import ConfigError
from research.training.optimizers import penalty

Batch = dict[str, jax.Array]
AUGMENT_STREAM = 0x61756720  # fold_in constant: augmentation draws apart from dropout's
Metrics = dict[str, jax.Array]


class TrainState(train_state.TrainState):
  """Flax's TrainState plus non-trainable model collections (e.g. BatchNorm stats)."""
  model_state: Any = None


def prepare_inputs(inputs: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
  """uint8 images are kept as bytes on device and scaled to [0, 1] only here.

  Other integer inputs are ids (tokens, users, items) and pass through unchanged.
  """
  if inputs.dtype == jnp.uint8:
    return inputs.astype(dtype) / 255.0
  if jnp.issubdtype(inputs.dtype, jnp.integer):
    return inputs
  return inputs.astype(dtype)


class Task(abc.ABC):
  """Loss + metrics for one kind of problem.

  Subclasses implement `loss_and_sums` (training objective and per-batch metric sums)
  and `outputs` / `metrics` (evaluation: per-example outputs on device, metrics on host).
  Metric sums always include 'count' (examples in the batch); the trainer divides.
  """

  # Runs its model through `apply`, where quantisation-aware training rounds the weights.
  supports_qat = True

  def __init__(self, config: ml_collections.ConfigDict, model: nn.Module,
               num_classes: int | None):
    self.config = config
    self.model = model
    self.num_classes = num_classes
    self.l1 = float(config.optimizer.get("l1", 0.0))
    self.l2 = float(config.optimizer.get("l2", 0.0))
    self.qat_bits = qat.qat_bits(config)
    if self.qat_bits and not self.supports_qat:
      raise ConfigError(f"config.qat.bits={self.qat_bits}: quantisation-aware training is not "
                        f"available for task {config.task.name!r}; set config.qat.bits=0.")
    self.augment = make_augment(config.get("augment"))

  # -- model plumbing ---------------------------------------------------------------

  def init_variables(self, rng: jax.Array, sample_inputs: jax.Array) -> dict[str, Any]:
    params_rng, dropout_rng = jax.random.split(rng)
    return self.model.init({"params": params_rng, "dropout": dropout_rng},
                           prepare_inputs(sample_inputs), train=False)

  def create_state(self, rng: jax.Array, sample_inputs: jax.Array,
                   tx: optax.GradientTransformation) -> TrainState:
    """The initial train state (traced inside jit). A task whose state is not one model
    and one optimizer (a GAN's two players) overrides it, and `train_step` with it."""
    # Plain arrays: logical axis annotations (nn.with_logical_partitioning) only decide the
    # shardings, which the loop reads from `init_variables` (research/training/mesh.py).
    variables = nn.meta.unbox(self.init_variables(rng, sample_inputs))
    params = variables.pop("params")
    return TrainState.create(apply_fn=self.model.apply, params=params, tx=tx,
                             model_state=dict(variables))

  def apply(self, params: Any, model_state: Any, inputs: jax.Array, rng: jax.Array | None,
            train: bool, **model_kwargs: Any) -> tuple[jax.Array, Any]:
    """Runs the model; returns (outputs, updated model_state). `model_kwargs` go to the
    model's `__call__` (e.g. the positions a masked-LM head scores)."""
    if self.qat_bits:
      params = qat.fake_quantize(params, self.qat_bits)
    variables = {"params": params, **(model_state or {})}
    mutable = list(model_state) if (train and model_state) else False
    rngs = {"dropout": rng} if rng is not None else {}
    out = self.model.apply(variables, prepare_inputs(inputs), train=train, rngs=rngs,
                           mutable=mutable, **model_kwargs)
    if mutable:
      out, new_state = out
      return out, new_state
    return out, model_state

  # -- training ---------------------------------------------------------------------

  @abc.abstractmethod
  def loss_and_sums(self, params: Any, model_state: Any, batch: Batch,
                    rng: jax.Array) -> tuple[jax.Array, tuple[Metrics, Any]]:
    """Mean loss over the batch, and (metric sums, new model_state)."""

  def train_step(self, state: TrainState, batch: Batch,
                 rng: jax.Array) -> tuple[TrainState, Metrics]:
    """The generic step: augment, differentiate loss (+ L1/L2 penalty), apply the optimizer."""
    if self.augment is not None:
      batch = self.augment(batch, jax.random.fold_in(rng, AUGMENT_STREAM))

    def objective(params):
      loss, (sums, model_state) = self.loss_and_sums(params, state.model_state, batch, rng)
      return loss + penalty(params, self.l1, self.l2), (sums, model_state)

    grads, (sums, model_state) = jax.grad(objective, has_aux=True)(state.params)
    sums = dict(sums, grad_norm=optax.tree.norm(grads) * sums["count"])
    return state.apply_gradients(grads=grads, model_state=model_state), sums

  # -- evaluation -------------------------------------------------------------------

  @abc.abstractmethod
  def outputs(self, params: Any, model_state: Any, batch: Batch) -> dict[str, jax.Array]:
    """Per-example outputs (e.g. logits, loss) gathered to the host for metrics."""

  @abc.abstractmethod
  def metrics(self, outputs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """Final metrics of a split from its per-example outputs (host, numpy)."""

  def metric_names(self) -> tuple[str, ...]:
    """Scalar metrics `metrics` returns: what early stopping / best checkpoint may use."""
    return ("loss",)

  @classmethod
  def num_outputs(cls, num_classes: int | None, target_dim: int = 1) -> int:
    """The model's output width this task needs (classes, targets, vocabulary size)."""
    return int(num_classes) if num_classes is not None else target_dim

  def on_evaluation(self, state: TrainState, step: int, workdir: str, writer: Any) -> None:
    """Called by the loop after each validation (host side), e.g. to write sample images
    with `writer` (a `MetricWriter`) into the workdir. Default: nothing."""

  # The metric used when a config does not name one (early stopping, best checkpoint).
  default_metric: str = "loss"
  default_mode: str = "min"
