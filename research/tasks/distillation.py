"""Knowledge distillation (Hinton, Vinyals & Dean 2015): a classifier student learns from a
trained teacher's softened outputs as well as from the labels.

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
           + (1 - alpha) * CE(student, labels)

The T^2 keeps the soft term's gradients on the scale of the hard term's as T grows. The
teacher is another workdir of this framework (`config.task.teacher_workdir`), rebuilt from
its config.json and restored from its checkpoint; its parameters travel in the train state
(`DistillState.teacher`, never updated) so the compiled step takes them as an input instead
of baking them into the program as constants, and its logits are computed inside the step,
on the same (augmented) batch the student sees. Evaluation is the student's alone: the
metrics of `multiclass`.

Config (config.task): teacher_workdir, teacher_checkpoint ('latest' | 'best'),
temperature (T > 0), alpha (in [0, 1]; 0 = the student alone).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from research.errors import ConfigError
from research.tasks.base import AUGMENT_STREAM, Batch, Metrics, TrainState, prepare_inputs
from research.tasks.classification import MulticlassClassification

FIELD = "config.task.teacher_workdir"


class DistillState(TrainState):
  """The student's train state plus the frozen teacher's variables ({'params': ..., ...})."""
  teacher: Any = None


def soft_kl(student_logits: jax.Array, teacher_logits: jax.Array,
            temperature: float) -> jax.Array:
  """Per-example KL(softmax(teacher / T) || softmax(student / T))."""
  soft_targets = jax.nn.softmax(teacher_logits.astype(jnp.float32) / temperature)
  return optax.kl_divergence(
      jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature), soft_targets)


class Teacher:
  """A trained classifier workdir, restored once, frozen: its model and variables (host)."""

  def __init__(self, workdir: str, which: str):
    from research.training import loop  # imported here: the loop imports the tasks
    if which not in ("latest", "best"):
      raise ConfigError(f"config.task.teacher_checkpoint must be 'latest' or 'best', got "
                        f"{which!r}.")
    if not workdir:
      raise ConfigError(f"{FIELD} is empty: name the workdir of a trained classifier (e.g. "
                        "runs/reproduce/fashion_mnist_cnn/seed_0, made by `python -m "
                        "launch.reproduce --only=fashion_mnist_cnn --seeds=1`).")
    exp, state, step = loop.restore_workdir(workdir, best=which == "best")
    if exp.config.task.name != "multiclass":
      raise ConfigError(f"{FIELD}={workdir!r} holds a {exp.config.task.name!r} run; the "
                        "teacher must be a 'multiclass' classifier.")
    self.workdir, self.step = workdir, step
    self.model = exp.task.model
    self.input_shape = tuple(exp.dataset.input_shape)
    self.variables = jax.device_get({"params": state.params, **(state.model_state or {})})
    sample = exp.dataset.splits["train"].inputs[:1]
    self.num_outputs = int(jax.eval_shape(self.logits, self.variables, sample).shape[-1])

  def logits(self, variables: Any, inputs: jax.Array) -> jax.Array:
    """The teacher's logits (float32, no gradient), in evaluation mode."""
    out = self.model.apply(jax.lax.stop_gradient(variables), prepare_inputs(inputs), train=False)
    return jax.lax.stop_gradient(out.astype(jnp.float32))


class Distillation(MulticlassClassification):
  """A multiclass student trained against `config.task.teacher_workdir`'s logits."""

  def __init__(self, config: ml_collections.ConfigDict, model: Any, num_classes: int | None):
    super().__init__(config, model, num_classes)
    task = config.task
    self.temperature = float(task.get("temperature", 4.0))
    self.alpha = float(task.get("alpha", 0.9))
    if not self.temperature > 0:
      raise ConfigError(f"config.task.temperature must be > 0, got {self.temperature}.")
    if not 0 <= self.alpha <= 1:
      raise ConfigError(f"config.task.alpha must be in [0, 1] (the weight of the teacher's "
                        f"soft targets), got {self.alpha}.")
    if num_classes is None:
      raise ConfigError("config.task.name='distillation' needs a classification dataset; "
                        f"{config.dataset.name!r} has no classes.")
    self.teacher = Teacher(str(task.get("teacher_workdir", "")),
                           str(task.get("teacher_checkpoint", "latest")))
    if self.teacher.num_outputs != num_classes:
      raise ConfigError(
          f"{FIELD}={self.teacher.workdir!r}: the teacher outputs {self.teacher.num_outputs} "
          f"classes but the student's dataset {config.dataset.name!r} has {num_classes}; use a "
          "teacher trained on the same classes.")
    # The generic step would augment after the teacher has seen the batch: augment here, in
    # `train_step`, before both models see it.
    self.distill_augment, self.augment = self.augment, None

  def create_state(self, rng: jax.Array, sample_inputs: jax.Array,
                   tx: optax.GradientTransformation) -> DistillState:
    if tuple(sample_inputs.shape[1:]) != self.teacher.input_shape:
      raise ConfigError(f"{FIELD}={self.teacher.workdir!r}: the teacher takes inputs of shape "
                        f"{self.teacher.input_shape}, this dataset gives "
                        f"{tuple(sample_inputs.shape[1:])}; use a teacher of the same data.")
    state = super().create_state(rng, sample_inputs, tx)
    return DistillState(step=state.step, apply_fn=state.apply_fn, params=state.params,
                        tx=state.tx, opt_state=state.opt_state, model_state=state.model_state,
                        teacher=jax.tree_util.tree_map(jnp.asarray, self.teacher.variables))

  def train_step(self, state: DistillState, batch: Batch,
                 rng: jax.Array) -> tuple[DistillState, Metrics]:
    if self.distill_augment is not None:
      batch = self.distill_augment(batch, jax.random.fold_in(rng, AUGMENT_STREAM))
    batch = dict(batch, teacher_logits=self.teacher.logits(state.teacher, batch["inputs"]))
    return super().train_step(state, batch, rng)

  def loss_and_sums(self, params, model_state, batch: Batch, rng) -> tuple[jax.Array, tuple[Metrics, Any]]:
    logits, model_state = self.apply(params, model_state, batch["inputs"], rng, train=True)
    hard = self._loss(logits, batch["labels"])  # with label smoothing, if configured
    if "mix_labels" in batch:  # mixup: the hard term of the mixed targets
      weight = batch["mix_weight"]
      hard = weight * hard + (1 - weight) * self._loss(logits, batch["mix_labels"])
    kl = soft_kl(logits, batch["teacher_logits"], self.temperature)
    losses = self.alpha * self.temperature ** 2 * kl + (1 - self.alpha) * hard
    predicted = jnp.argmax(logits, -1)
    sums = {"loss": losses.sum(), "accuracy": (predicted == batch["labels"]).sum(),
            "soft_kl": kl.sum(), "hard_loss": hard.sum(),
            "teacher_agreement": (predicted == jnp.argmax(batch["teacher_logits"], -1)).sum(),
            "count": jnp.float32(len(losses))}
    return losses.mean(), (sums, model_state)
