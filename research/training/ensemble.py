"""Ensembles: average the predictions of several trained runs (seeds or experiments).

Members must have been evaluated on the same examples, so their dataset configs must agree
(the model, optimizer and seed may differ). Classification members are averaged in
probability space (softmax / sigmoid), regression members by their predictions; the task of
the first member then scores the average exactly as it scores a single run.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np

from research.errors import ConfigError
from research.training import loop, workdir as workdir_lib

# Per task kind: the output key that carries the prediction, and how to average it.
_AVERAGED = {"logits": "softmax", "logit": "sigmoid", "prediction": "mean"}


def _average(name: str, values: list[np.ndarray]) -> np.ndarray:
  kind = _AVERAGED[name]
  if kind == "softmax":
    probs = np.mean([np.asarray(jax.nn.softmax(v, axis=-1)) for v in values], axis=0)
    return np.log(np.clip(probs, 1e-12, None))  # log-probabilities score like logits
  if kind == "sigmoid":
    probs = np.mean([1 / (1 + np.exp(-v)) for v in values], axis=0)
    probs = np.clip(probs, 1e-7, 1 - 1e-7)
    return np.log(probs) - np.log1p(-probs)  # back to a logit
  return np.mean(values, axis=0)


def evaluate_ensemble(workdirs: Sequence[str], split: str = "test",
                      best: bool = True) -> dict[str, Any]:
  """Each member's metrics on `split` and the metrics of their averaged prediction."""
  if len(workdirs) < 2:
    raise ConfigError(f"an ensemble needs at least 2 workdirs, got {len(workdirs)}.")
  members, outputs, first = [], [], None
  for workdir in workdirs:
    exp, state, step = loop.restore_workdir(workdir, best=best)
    if first is None:
      first = exp
    else:
      diffs = workdir_lib.config_differences(
          workdir_lib.config_to_dict(first.config.dataset),
          workdir_lib.config_to_dict(exp.config.dataset))
      if diffs:
        raise ConfigError(f"{workdir} was trained on other data than {workdirs[0]} "
                          f"({'; '.join(diffs[:3])}): ensemble members must share the "
                          "dataset config so they predict the same examples.")
    evaluator = loop.Evaluator(exp, {split: _put(exp, split)})
    out = evaluator.outputs(state, split)
    key = next((k for k in _AVERAGED if k in out), None)
    if key is None:
      raise ConfigError(f"{workdir}: task {exp.config.task.name!r} has no prediction output to "
                        f"average (one of {sorted(_AVERAGED)}).")
    labels = exp.dataset.splits[split].labels
    members.append({"workdir": workdir, "step": step,
                    "metrics": _scalars(exp.task.metrics(out, labels))})
    outputs.append((key, out))
  keys = {k for k, _ in outputs}
  if len(keys) != 1:
    raise ConfigError(f"ensemble members predict different kinds of output ({sorted(keys)}).")
  key = keys.pop()
  averaged = {key: _average(key, [o[key] for _, o in outputs])}
  if "loss" in outputs[0][1]:  # the task recomputes its loss from the averaged prediction
    averaged["loss"] = _ensemble_loss(first, key, averaged[key], first.dataset.splits[split].labels)
  ensemble = _scalars(first.task.metrics(averaged, first.dataset.splits[split].labels))
  return {"split": split, "checkpoint": "best" if best else "latest", "members": members,
          "ensemble": ensemble}


def _put(exp: loop.Experiment, split: str) -> dict[str, Any]:
  from research.training import batching
  return batching.put_split(exp.dataset.splits[split], exp.mesh)


def _ensemble_loss(exp: loop.Experiment, key: str, prediction: np.ndarray,
                   labels: np.ndarray) -> np.ndarray:
  """Per-example loss of the averaged prediction: cross-entropy, BCE or squared error."""
  if key == "logits":
    return -prediction[np.arange(len(labels)), labels]
  if key == "logit":
    y = labels.reshape(-1).astype(np.float64)
    return np.logaddexp(0, prediction) - y * prediction
  return np.square(prediction.reshape(len(labels), -1)
                   - labels.reshape(len(labels), -1)).mean(-1)


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
  return {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}
