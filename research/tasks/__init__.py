"""Tasks by name: the objective and metrics of one kind of problem."""

from __future__ import annotations

import flax.linen as nn
import ml_collections

from research.registry import Registry
from research.tasks.base import Task, TrainState, prepare_inputs
from research.tasks.classification import BinaryClassification, MulticlassClassification
from research.tasks.distillation import Distillation
from research.tasks.gan import GAN
from research.tasks.language_model import LanguageModel
from research.tasks.masked_lm import MaskedLanguageModel
from research.tasks.rating import ImplicitFeedback, RatingRegression
from research.tasks.regression import Regression
from research.tasks.seq2seq import Seq2Seq

TASKS: Registry[type[Task]] = Registry("task")
TASKS.register("multiclass")(MulticlassClassification)
TASKS.register("distillation")(Distillation)
TASKS.register("binary")(BinaryClassification)
TASKS.register("regression")(Regression)
TASKS.register("gan")(GAN)
TASKS.register("language_model")(LanguageModel)
TASKS.register("masked_lm")(MaskedLanguageModel)
TASKS.register("rating")(RatingRegression)
TASKS.register("implicit")(ImplicitFeedback)
TASKS.register("seq2seq")(Seq2Seq)


def build_task(config: ml_collections.ConfigDict, model: nn.Module,
               num_classes: int | None) -> Task:
  return TASKS.get(config.task.name, "config.task.name")(config, model, num_classes)


def num_outputs(task_name: str, num_classes: int | None, target_dim: int = 1) -> int:
  """The model's output width the task `task_name` needs."""
  return TASKS.get(task_name, "config.task.name").num_outputs(num_classes, target_dim)


__all__ = ["TASKS", "Task", "TrainState", "build_task", "num_outputs", "prepare_inputs"]
