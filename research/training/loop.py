"""The one training loop, for every task.

`train_and_evaluate(config, workdir)` builds the experiment from its config (validating
everything before the workdir is touched), restores the newest checkpoint if there is
one, and runs compiled chunks of train steps between the log / eval / checkpoint
boundaries. The loop never branches on the model or task.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils

from research import config as config_lib
from research import models, tasks
from research.data import load_dataset
from research.data.dataset import Dataset
from research.errors import CheckpointError, ConfigError, NonFiniteLossError
from research.training import (batching, checkpoint, mesh as mesh_lib, pruning, steps,
                               transfer, workdir as workdir_lib)
from research.training import accumulation as accumulation_lib
from research.training.optimizers import make_optimizer, make_schedule
from research.training.writers import MetricWriter, Progress, atomic_write_json


# Facts about the data a checkpoint needs later (e.g. the vocabulary): `Source.metadata`.
DATASET_FILE = transfer.DATASET_FILE


class Preempted(Exception):
  """SIGTERM arrived; a checkpoint was saved. Rerunning the same command resumes."""

  def __init__(self, step: int):
    super().__init__(f"preempted (SIGTERM) at step {step}: checkpoint saved; "
                     "rerun the same command to resume.")
    self.step = step


@dataclasses.dataclass
class Experiment:
  """Everything built from a config before any file is written."""
  config: ml_collections.ConfigDict
  dataset: Dataset
  task: tasks.Task
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  mesh: jax.sharding.Mesh
  rules: tuple[tuple[str, Any], ...]  # logical axis -> mesh axis (config.mesh.rules)
  accumulation: accumulation_lib.Accumulation  # batches per optimizer update, by batch
  total_steps: int
  steps_per_epoch: int
  eval_every: int
  checkpoint_every: int
  best_metric: str
  best_mode: str


def build(config: ml_collections.ConfigDict) -> Experiment:
  """Validates the config and builds dataset, model, task and optimizer (no file I/O)."""
  config_lib.validate(config)
  mesh = mesh_lib.make_mesh(config.mesh)
  rules = mesh_lib.logical_rules(config.mesh)
  n_data = mesh_lib.data_parallel_size(mesh)
  tc = config.train
  if tc.batch_size % n_data:
    raise ConfigError(f"config.train.batch_size={tc.batch_size} is not divisible by the "
                      f"{n_data} devices of the batch axes (config.mesh data x fsdp = "
                      f"{mesh.shape['data']} x {mesh.shape['fsdp']}); use a multiple of "
                      f"{n_data}.")
  accumulation = accumulation_lib.from_config(config.optimizer)
  if tc.num_steps:
    accumulation.check_total(tc.num_steps)
  dataset = load_dataset(config.dataset)
  transfer.check_vocabulary(config.init_from, dataset.metadata)
  train_size = len(dataset.splits["train"])
  group = accumulation.group  # k; for a ramp, the least common multiple of its ks
  if tc.batch_size * group > train_size:
    raise ConfigError(f"config.train.batch_size={tc.batch_size} x {group} batches per update "
                      "(config.optimizer.accumulate_steps or accumulate_ramp) is larger than the "
                      f"train split of {dataset.name} ({train_size} examples); use at most "
                      f"{train_size} examples per update.")
  # Whole updates per epoch, in every phase of a ramp: an update never spans two epochs.
  steps_per_epoch = train_size // (tc.batch_size * group) * group
  total = tc.num_steps or max(1, math.ceil(tc.num_epochs * steps_per_epoch / group)) * group
  accumulation.check_total(total)
  check_length_buckets(tc.length_buckets, dataset)
  task_cls = tasks.TASKS.get(config.task.name, "config.task.name")
  labels = dataset.splits["train"].labels
  target_dim = labels.shape[1] if labels.ndim == 2 else 1
  if config.task.name in ("multiclass", "binary") and dataset.num_classes is None:
    raise ConfigError(f"config.task.name={config.task.name!r} needs class labels but dataset "
                      f"{dataset.name!r} is a regression dataset; use task 'regression'.")
  if config.task.name == "binary" and dataset.num_classes != 2:
    raise ConfigError(f"config.task.name='binary' needs 2 classes; {dataset.name!r} has "
                      f"{dataset.num_classes}. Use task 'multiclass'.")
  dtype = jnp.bfloat16 if config.precision == "bfloat16" else jnp.float32
  model = models.build_model(
      config.model, task_cls.num_outputs(dataset.num_classes, target_dim), dtype,
      data_fields=dataset.model_fields)
  task = task_cls(config, model, dataset.num_classes)
  # Schedules count optimizer updates (optax.MultiSteps advances them every k batches).
  updates = accumulation.updates_at(total)
  tx = make_optimizer(config.optimizer, config.schedule, updates)
  best_metric = tc.best_metric or task.default_metric
  if best_metric not in task.metric_names():
    raise ConfigError(f"config.train.best_metric={best_metric!r} is not a validation metric of "
                      f"task {config.task.name!r}; choose one of {sorted(task.metric_names())}.")
  eval_every = tc.eval_every_steps or steps_per_epoch
  return Experiment(
      config=config, dataset=dataset, task=task, tx=tx, mesh=mesh, rules=rules,
      accumulation=accumulation,
      schedule=make_schedule(config.optimizer, config.schedule, updates), total_steps=total,
      steps_per_epoch=steps_per_epoch, eval_every=eval_every,
      checkpoint_every=tc.checkpoint_every_steps or eval_every,
      best_metric=best_metric,
      best_mode=tc.best_mode or task.default_mode)


def check_length_buckets(buckets: Any, dataset: Dataset) -> None:
  """config.train.length_buckets: positive lengths, and token sequences to cut."""
  if not buckets:
    return
  if any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in buckets):
    raise ConfigError(f"config.train.length_buckets={tuple(buckets)} must be positive integer "
                      "lengths, e.g. (16, 32).")
  inputs = dataset.splits["train"].inputs
  if inputs.ndim != 2 or not np.issubdtype(inputs.dtype, np.integer):
    raise ConfigError(f"config.train.length_buckets={tuple(buckets)} buckets token sequences, "
                      f"but {dataset.name}'s inputs are {inputs.dtype} of shape "
                      f"{inputs.shape[1:]}; set it to ().")


def _init_inputs(exp: Experiment) -> tuple[jax.Array, jax.Array]:
  """(init key, one train example): what the state is created from."""
  return jax.random.key(exp.config.seed), jnp.asarray(exp.dataset.splits["train"].inputs[:1])


def state_sharding(exp: Experiment) -> Any:
  """Where each array of the train state lives: the model's logical axis names through
  `config.mesh.rules` (replicated where a model names none)."""
  rng, sample = _init_inputs(exp)
  abstract = jax.eval_shape(lambda: exp.task.create_state(rng, sample, exp.tx))
  boxed = jax.eval_shape(exp.task.init_variables, rng, sample)
  return mesh_lib.state_shardings(abstract, boxed, exp.mesh, exp.rules)


def init_state(exp: Experiment) -> tasks.TrainState:
  """Parameters from `config.seed`, created directly in their shardings over the mesh."""
  rng, sample = _init_inputs(exp)
  return jax.jit(lambda: exp.task.create_state(rng, sample, exp.tx),
                 out_shardings=state_sharding(exp))()


def _eval_batch_size(exp: Experiment, split_size: int) -> int:
  n = mesh_lib.data_parallel_size(exp.mesh)
  size = exp.config.train.eval_batch_size or min(1000, split_size)
  return -(-size // n) * n


class Evaluator:
  """Evaluates any split of the experiment with one compiled scan per split shape."""

  def __init__(self, exp: Experiment, device_splits: dict[str, dict[str, jax.Array]]):
    self.exp = exp
    self.data = device_splits
    self.fn = None

  def outputs(self, state: tasks.TrainState, split: str) -> dict[str, np.ndarray]:
    """The task's per-example outputs of a split (e.g. logits), on the host, in order."""
    if self.fn is None:  # compiled for the shardings of the first state evaluated
      self.fn = steps.make_eval_fn(self.exp.task, self.exp.mesh, _shardings(state.params),
                                   _shardings(state.model_state))
    n = len(self.exp.dataset.splits[split].labels)
    indices, mask = batching.eval_blocks(n, _eval_batch_size(self.exp, n))
    indices = mesh_lib.put(indices, mesh_lib.batch_sharded(self.exp.mesh, leading_axes=1))
    outputs = self.fn(state.params, state.model_state, self.data[split], indices)
    flat_mask = mask.reshape(-1)
    return {k: np.asarray(v).reshape((-1,) + v.shape[2:])[flat_mask] for k, v in outputs.items()}

  def __call__(self, state: tasks.TrainState, split: str) -> dict[str, Any]:
    return self.exp.task.metrics(self.outputs(state, split), self.exp.dataset.splits[split].labels)


class _SigtermFlag:
  """Turns SIGTERM into a flag the loop checks between compiled chunks."""

  def __init__(self):
    self.raised = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: leave signals alone
      self._previous = None
    return self

  def _handle(self, signum, frame):
    logging.warning("SIGTERM received: saving a checkpoint before exiting.")
    self.raised = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _is_better(value: float, best: float | None, mode: str, min_delta: float) -> bool:
  if best is None or not math.isfinite(best):
    return math.isfinite(value)
  return value > best + min_delta if mode == "max" else value < best - min_delta


def _next_boundary(step: int, total: int, *intervals: int) -> int:
  ends = [total] + [(step // k + 1) * k for k in intervals if k > 0]
  return min(ends)


EvalCallback = Callable[[int, dict[str, Any]], None]


class _Run:
  """One training run's mutable state between compiled chunks: what the loop updates."""

  def __init__(self, exp: Experiment, workdir: str):
    tc = exp.config.train
    self.exp = exp
    self.device_splits = {name: batching.put_split(split, exp.mesh)
                          for name, split in exp.dataset.splits.items()}
    self.state = init_state(exp)
    self.ckpt = checkpoint.Checkpointer(workdir, keep=tc.keep_checkpoints,
                                        async_save=tc.async_checkpoints)
    self.meta: dict[str, Any] = {"best_value": None, "best_step": None, "bad_evals": 0,
                                 "stopped_early": False}
    restored = self.ckpt.restore(checkpoint.abstract_like(self.state))
    if restored is not None:
      self.state, self.meta, _ = restored
      logging.info("Resumed from %s at step %d.", self.ckpt.latest_dir, int(self.state.step))
    elif exp.config.init_from.workdir:
      sharding = _shardings(self.state)
      state, loaded = transfer.initialise_from(self.state, exp.config, exp.tx)
      self.state = jax.device_put(state, sharding)
      logging.info("Initialised %d arrays from %s.", len(loaded) - 1, loaded[0])
    self.step = int(jax.device_get(self.state.step))
    self.finished = self.step >= exp.total_steps or self.meta["stopped_early"]

  def start(self, workdir: str) -> None:
    """Writers, data order and the compiled train function: only for a run that trains."""
    exp, tc = self.exp, self.exp.config.train
    self.workdir = workdir
    self.writer = MetricWriter(workdir, resume_step=self.step)
    self.order = batching.length_order(exp.dataset.splits["train"], tc.batch_size,
                                       exp.config.seed, exp.accumulation.group,
                                       tuple(tc.length_buckets))
    self.train_chunk = steps.make_train_chunk(exp.task, exp.mesh, _shardings(self.state))
    self.window_epoch = -1
    self.evaluate_split = Evaluator(exp, self.device_splits)
    self.key = jax.random.key(exp.config.seed + 1)  # dropout etc.: fold_in(key, step)
    self.metric_names = tuple(jax.eval_shape(
        lambda s, b: exp.task.train_step(s, b, self.key)[1], self.state,
        _example_batch(exp, tc.batch_size)))
    self.totals = steps.init_totals(self.metric_names, self.exp.mesh)
    self.progress = Progress(exp.total_steps, self.step, tc.batch_size)
    self.pending_log: tuple[int, steps.Totals] | None = None  # fetched at the next boundary

  def train_until(self, end: int) -> None:
    epoch = self.step // self.order.steps_per_epoch
    if epoch != self.window_epoch:  # the data order of this epoch and the next, on device
      self.window = batching.put_window(self.order, epoch, self.exp.mesh)
      self.window_epoch = epoch
    window_end = (epoch + 2) * self.order.steps_per_epoch
    chunk = min(self.exp.config.train.steps_per_dispatch, end - self.step,
                window_end - self.step)
    self.state, self.totals = self.train_chunk(
        self.state, self.totals, self.device_splits["train"], *self.window, self.key, chunk,
        self.order.chunk_length(self.step, chunk))
    self.step += chunk
    self.progress.update(self.step)

  def log_train(self) -> None:
    """Starts copying this interval's metrics to the host and writes the previous interval's.

    The host never waits for the device at a log boundary: by the next one, the copy is
    done. Evaluation, checkpoints and the end wait for the device anyway, and write the
    pending record first (`flush_train_log`), so metrics.jsonl keeps its order.
    """
    finished = self.totals
    self.totals = steps.init_totals(self.metric_names, self.exp.mesh)
    for leaf in jax.tree.leaves(finished):
      leaf.copy_to_host_async()
    self.flush_train_log()
    self.pending_log = (self.step, finished)

  def flush_train_log(self) -> None:
    """Writes the pending train record; raises if its interval had a non-finite loss."""
    if self.pending_log is None:
      return
    step, totals = self.pending_log
    self.pending_log = None
    metrics = _fetch_train_metrics(totals, step)
    # Rates between two flushes: each flush waits for its interval's last step, so they
    # are device rates, not dispatch rates.
    rates = self.progress.update(step, {k: v for k, v in metrics.items()
                                        if k in ("loss", "accuracy")})
    self.writer.write(step, "train", {**metrics, **rates,
                                      "learning_rate": float(self.exp.schedule(
                                          self.exp.accumulation.updates_at(step)))})

  def validate(self) -> dict[str, Any]:
    """Evaluates, keeps the best checkpoint, and decides on early stopping."""
    exp, tc, meta = self.exp, self.exp.config.train, self.meta
    self.flush_train_log()
    val = self.evaluate_split(self.state, "validation")
    self.writer.write(self.step, "validation", val)
    exp.task.on_evaluation(self.state, self.step, self.workdir, self.writer)
    value = float(val[exp.best_metric])
    if _is_better(value, meta["best_value"], exp.best_mode, tc.early_stopping_min_delta):
      meta.update(best_value=value, best_step=self.step, bad_evals=0)
      _raise_if_nonfinite(self.totals, self.step)
      self.ckpt.save_best(self.step, self.state, dict(meta))
    else:
      meta["bad_evals"] += 1
      patience = tc.early_stopping_patience
      if patience and meta["bad_evals"] >= patience:
        logging.info("Early stopping at step %d: validation %s has not improved for %d "
                     "evaluations (best %.5g at step %s).", self.step, exp.best_metric,
                     patience, meta["best_value"], meta["best_step"])
        meta["stopped_early"] = True
    return val

  def save(self) -> None:
    """Never saves parameters that a non-finite loss has touched."""
    self.flush_train_log()
    _raise_if_nonfinite(self.totals, self.step)
    self.ckpt.save(self.step, self.state, self.meta)

  def close(self) -> None:
    for closer in ("progress", "writer"):
      if hasattr(self, closer):
        getattr(self, closer).close()
    self.ckpt.close()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       overwrite: bool = False, test: bool = True,
                       on_eval: EvalCallback | None = None) -> dict[str, Any]:
  """Trains (resuming from the workdir if possible), then evaluates; returns result.json.

  With `test=False` (`--mode=train`) the test split is not touched. `on_eval(step,
  validation_metrics)` is called after every validation evaluation (after the checkpoint
  of that step is saved), e.g. to report to a hyperparameter search that may stop the run
  by raising.
  """
  exp = build(config)
  workdir_lib.check(workdir, config, overwrite)  # a refused run touches nothing, not even .lock
  with workdir_lib.WorkdirLock(workdir, enabled=jax.process_index() == 0):
    return _train_and_evaluate(exp, config, workdir, overwrite, test, on_eval)


def _train_and_evaluate(exp: Experiment, config: ml_collections.ConfigDict, workdir: str,
                        overwrite: bool, test: bool,
                        on_eval: EvalCallback | None) -> dict[str, Any]:
  """`train_and_evaluate` once the workdir is locked for this run."""
  if jax.process_index() == 0:  # every process has checked it; process 0 writes its files
    workdir_lib.prepare(workdir, config, overwrite)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("workdir prepared")
  if exp.dataset.metadata and jax.process_index() == 0:
    atomic_write_json(os.path.join(workdir, DATASET_FILE), exp.dataset.metadata)
  tc = config.train
  start_time = time.time()
  result_path = os.path.join(workdir, "result.json")
  run = _Run(exp, workdir)
  try:
    if run.finished and os.path.exists(result_path) and (
        not test or "test" in _read_json(result_path)):
      logging.info("%s already holds a finished run (step %d): nothing to do.", workdir, run.step)
      return _read_json(result_path)
    run.start(workdir)
    with _SigtermFlag() as sigterm:
      while run.step < exp.total_steps and not run.meta["stopped_early"]:
        run.train_until(_next_boundary(run.step, exp.total_steps, tc.log_every_steps,
                                       exp.eval_every, exp.checkpoint_every))
        done = run.step >= exp.total_steps
        if run.step % tc.log_every_steps == 0 or done:
          run.log_train()
        evaluated = run.step % exp.eval_every == 0 or done
        if evaluated:
          val = run.validate()
        if run.step % exp.checkpoint_every == 0 or done or run.meta["stopped_early"]:
          run.save()
        if evaluated and on_eval is not None:
          on_eval(run.step, val)
        if sigterm.raised:
          run.save()
          run.ckpt.wait()
          raise Preempted(run.step)
    run.ckpt.wait()
    result = _final_evaluation(exp, run, test)
    result["wall_time_s"] = time.time() - start_time
    if test:
      run.writer.write(run.step, "test", result["test"])
    if jax.process_index() == 0:
      atomic_write_json(result_path, result)
    return result
  finally:
    run.close()


def restore_state(config: ml_collections.ConfigDict, workdir: str,
                  best: bool = False) -> tuple[Experiment, tasks.TrainState, int]:
  """The experiment and its newest (or best) checkpointed state, for evaluation or analysis."""
  exp = build(config)
  workdir_lib.check(workdir, config, overwrite=False)
  ckpt = checkpoint.Checkpointer(workdir)
  try:
    restored = ckpt.restore(checkpoint.abstract_like(init_state(exp)), best=best)
  finally:
    ckpt.close()
  if restored is None:
    raise CheckpointError(f"no checkpoint in {ckpt.best_dir if best else ckpt.latest_dir}: "
                          "train first (--mode=train) or point --workdir at a trained run.")
  state, _, step = restored
  return exp, state, step


def restore_workdir(workdir: str, best: bool = False) -> tuple[Experiment, tasks.TrainState, int]:
  """`restore_state` with the config the workdir was trained with (its config.json), plus
  defaults for fields the schema gained since."""
  if not os.path.isdir(workdir):
    raise CheckpointError(f"workdir {workdir} does not exist: point at a trained run.")
  saved = workdir_lib.read_config(workdir)
  if saved is None:
    raise CheckpointError(f"{workdir} has no {workdir_lib.CONFIG_FILE}: it is not a training "
                          "workdir; point at one that `python -m launch.main` trained.")
  return restore_state(workdir_lib.with_defaults(saved), workdir, best)


def evaluate(config: ml_collections.ConfigDict, workdir: str, best: bool = False) -> dict[str, Any]:
  """Evaluates the newest (or best) checkpoint of a workdir on validation and test."""
  exp, state, step = restore_state(config, workdir, best)
  device_splits = {n: batching.put_split(s, exp.mesh) for n, s in exp.dataset.splits.items()}
  evaluate_split = Evaluator(exp, device_splits)
  result = {"step": step, "checkpoint": "best" if best else "latest",
            "validation": evaluate_split(state, "validation"), "test": evaluate_split(state, "test")}
  if jax.process_index() == 0:
    atomic_write_json(os.path.join(workdir, "evaluation.json"), result)
  return result


def _final_evaluation(exp: Experiment, run: _Run, test: bool) -> dict[str, Any]:
  """Validation and test metrics of the final parameters (the best ones if stopped early)."""
  state, meta, used = run.state, run.meta, "last"
  if meta["stopped_early"] and run.ckpt.has_checkpoint(best=True):
    state, _, _ = run.ckpt.restore(checkpoint.abstract_like(state), best=True)
    used = "best"
  result = {"step": run.step, "params": used, "best_step": meta["best_step"],
            "best_metric": f"validation/{exp.best_metric}", "best_value": meta["best_value"],
            "stopped_early": meta["stopped_early"],
            "validation": run.evaluate_split(state, "validation")}
  if test:
    result["test"] = run.evaluate_split(state, "test")
  result.update(pruning.result_fields(exp.config.optimizer, state.params))
  return result


def _shardings(tree: Any) -> Any:
  return jax.tree.map(lambda x: x.sharding, tree)


def _read_json(path: str) -> dict[str, Any]:
  with open(path) as f:
    return json.load(f)


def _example_batch(exp: Experiment, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  split = exp.dataset.splits["train"]
  return {"inputs": jax.ShapeDtypeStruct((batch_size,) + split.inputs.shape[1:], split.inputs.dtype),
          "labels": jax.ShapeDtypeStruct((batch_size,) + split.labels.shape[1:], split.labels.dtype),
          "index": jax.ShapeDtypeStruct((batch_size,), np.int32)}


def _raise_if_nonfinite(totals: steps.Totals, step: int) -> None:
  bad = int(jax.device_get(totals["nonfinite_step"]))
  if bad != steps.NO_NONFINITE_STEP:
    raise NonFiniteLossError(
        f"the training loss became NaN or infinite at step {bad} (detected at step {step}); "
        "the last good checkpoint is kept. Lower config.optimizer.learning_rate, set "
        "config.optimizer.clip_norm, or check the data for NaNs.")


def _fetch_train_metrics(totals: steps.Totals, step: int) -> dict[str, float]:
  host = jax.device_get(totals)
  _raise_if_nonfinite(totals, step)
  count = max(float(host["count"]), 1.0)
  return {k: float(v) / count for k, v in host.items() if k not in ("count", "nonfinite_step")}
