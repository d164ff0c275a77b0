"""Transfer learning: start from another run's weights, re-initialise some, train groups apart.

`config.init_from` names a workdir (any experiment's) whose checkpointed parameters and model
state (e.g. BatchNorm statistics) replace the fresh initialisation wherever the parameter path
and shape agree, except paths matching `init_from.exclude` (regular expressions, e.g. 'head'
for a new classifier head). Only a fresh run is initialised this way; a resumed run continues
from its own checkpoint.

`config.optimizer.freeze` / `config.optimizer.scale_lr` (regular expressions on parameter
paths such as 'conv1/kernel') freeze parameters or scale their learning rate by
`optimizer.scale_lr_factor`, through `optax.multi_transform`. Paths are the module names
joined by '/', as `parameter_paths` lists them.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from research.errors import CheckpointError, ConfigError
from research.training.checkpoint import Checkpointer


# Facts about the data a checkpoint needs later (e.g. the vocabulary), beside the checkpoints.
DATASET_FILE = "dataset.json"


def default_init_from_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      workdir="",          # '' = train from scratch
      checkpoint="best",   # 'best' (the best validation checkpoint, else the latest) | 'latest'
      exclude=(),          # parameter path regexes to keep freshly initialised (e.g. 'head')
  ))


def path_name(path: tuple[Any, ...]) -> str:
  """'conv1/kernel' for the key path (DictKey('conv1'), DictKey('kernel'))."""
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return "/".join(parts)


def parameter_paths(tree: Any) -> list[str]:
  return [path_name(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]


def _compile(patterns: tuple[str, ...], field: str) -> list[re.Pattern[str]]:
  compiled = []
  for pattern in patterns:
    try:
      compiled.append(re.compile(pattern))
    except re.error as e:
      raise ConfigError(f"{field} holds {pattern!r}, which is not a regular expression ({e}).")
  return compiled


def _require_matches(patterns: list[re.Pattern[str]], paths: list[str], field: str) -> None:
  """A pattern that matches nothing is a typo: say so rather than silently train everything."""
  for pattern in patterns:
    if not any(pattern.search(p) for p in paths):
      shown = ", ".join(paths[:12]) + (", ..." if len(paths) > 12 else "")
      raise ConfigError(f"{field} pattern {pattern.pattern!r} matches no parameter; the "
                        f"model's parameters are: {shown}.")


# -- initialising from another run ---------------------------------------------------------

def read_checkpoint_tree(workdir: str, which: str = "best") -> tuple[dict[str, Any], str]:
  """The raw saved train state of `workdir` (nested dicts of arrays) and the directory read.

  Restored without a target, so the source experiment's data and model need not be built.
  """
  if which not in ("best", "latest"):
    raise ConfigError(f"config.init_from.checkpoint must be 'best' or 'latest', got {which!r}.")
  checkpointer = Checkpointer(workdir)
  try:
    for best in ((True, False) if which == "best" else (False,)):
      if checkpointer.has_checkpoint(best):
        state, step = checkpointer.restore_raw(best)
        directory = checkpointer.best_dir if best else checkpointer.latest_dir
        return state, f"{os.path.abspath(directory)} (step {step})"
  except CheckpointError as e:
    raise CheckpointError(f"config.init_from.workdir={workdir!r}: {e}") from e
  finally:
    checkpointer.close()
  raise CheckpointError(f"config.init_from.workdir={workdir!r} holds no checkpoint: train that "
                        "experiment first (python -m launch.main --config=... --workdir=that "
                        "dir) or fix the path.")


def merge(fresh: Any, saved: Any, exclude: list[re.Pattern[str]],
          what: str) -> tuple[Any, list[str]]:
  """`fresh` with every leaf whose path and shape exist in `saved` replaced by the saved one.

  Returns (merged tree, paths taken from `saved`). A path present in both with another shape
  is an error unless excluded: silently re-initialising it would hide a wrong source run.
  """
  saved_leaves = {path_name(p): v for p, v in jax.tree_util.tree_leaves_with_path(saved)}
  loaded = []

  def take(path, leaf):
    name = path_name(path)
    if any(p.search(name) for p in exclude) or name not in saved_leaves:
      return leaf
    old = np.asarray(saved_leaves[name])
    if old.shape != leaf.shape:
      raise ConfigError(
          f"config.init_from: {what} {name!r} has shape {old.shape} in the source run but "
          f"{tuple(leaf.shape)} here; add a pattern matching it to config.init_from.exclude "
          "to initialise it afresh (e.g. a classifier head with another number of classes).")
    loaded.append(name)
    return jax.numpy.asarray(old, dtype=leaf.dtype)

  return jax.tree_util.tree_map_with_path(take, fresh), loaded


def _describe_tokenizer(tokenizer: dict[str, Any]) -> str:
  vocab = tokenizer.get("vocab")
  size = f"{len(vocab)} tokens" if vocab is not None else "a sentencepiece model"
  return f"{tokenizer.get('kind')} tokenizer, {size}, lowercase={tokenizer.get('lowercase')}"


def check_vocabulary(init: ml_collections.ConfigDict, metadata: dict[str, Any]) -> None:
  """Refuses to initialise from a run whose tokeniser differs from this run's.

  Embedding rows are indexed by token id: loaded under another vocabulary they would mean
  other tokens, and nothing downstream would notice. Compared when both the source's
  `dataset.json` (written by the loop) and this run's dataset metadata hold a tokeniser.
  """
  if not init.workdir or "tokenizer" not in metadata:
    return
  path = os.path.join(init.workdir, DATASET_FILE)
  if not os.path.isfile(path):
    return
  try:
    with open(path) as f:
      source = json.load(f).get("tokenizer")
  except (OSError, ValueError, AttributeError) as e:
    raise CheckpointError(f"config.init_from.workdir={init.workdir!r}: {path} is unreadable "
                          f"({e}); copy it from the run that made it, or retrain.") from e
  if source is None or source == metadata["tokenizer"]:
    return
  ours, theirs = metadata["tokenizer"], source
  detail = ""
  if ours.get("vocab") is not None and theirs.get("vocab") is not None:
    first = next((i for i, (a, b) in enumerate(zip(theirs["vocab"], ours["vocab"])) if a != b),
                 min(len(ours["vocab"]), len(theirs["vocab"])))
    detail = f" (they first differ at token id {first})"
  raise ConfigError(
      f"config.init_from.workdir={init.workdir!r} was trained on another vocabulary "
      f"({_describe_tokenizer(theirs)}) than this run's ({_describe_tokenizer(ours)}){detail}: "
      "its embeddings would mean other tokens. Use the source run's dataset settings "
      "(dataset.name, tokenizer, vocab_size, lowercase, mask_token, validation_fraction, "
      "split_seed), so the tokenizer is built from the same train text.")


def initialise_from(state: Any, config: ml_collections.ConfigDict,
                    tx: optax.GradientTransformation) -> tuple[Any, list[str]]:
  """`state` with parameters (and model state) from `config.init_from.workdir`."""
  init = config.init_from
  exclude = _compile(tuple(init.exclude), "config.init_from.exclude")
  _require_matches(exclude, parameter_paths(state.params), "config.init_from.exclude")
  saved, source = read_checkpoint_tree(init.workdir, init.checkpoint)
  params, loaded = merge(state.params, saved.get("params", {}), exclude, "parameter")
  if not loaded:
    raise ConfigError(f"config.init_from.workdir={init.workdir!r}: none of its parameters "
                      f"match this model's ({', '.join(parameter_paths(state.params)[:8])}, "
                      "...): is it a run of a compatible model?")
  model_state = state.model_state
  if model_state and saved.get("model_state"):
    model_state, loaded_state = merge(model_state, saved["model_state"], exclude, "model state")
    loaded += loaded_state
  state = state.replace(params=params, model_state=model_state, opt_state=tx.init(params))
  return state, [source] + loaded


# -- freezing and learning-rate groups -----------------------------------------------------

def parameter_groups(opt: ml_collections.ConfigDict,
                     tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """Wraps `tx` so parameters matching `opt.freeze` stay fixed and `opt.scale_lr` ones move at
  `opt.scale_lr_factor` times the learning rate; unchanged when neither is set."""
  freeze = _compile(tuple(opt.get("freeze", ())), "config.optimizer.freeze")
  scaled = _compile(tuple(opt.get("scale_lr", ())), "config.optimizer.scale_lr")
  if not freeze and not scaled:
    return tx
  factor = float(opt.get("scale_lr_factor", 0.1))
  if not factor > 0:
    raise ConfigError(f"config.optimizer.scale_lr_factor must be > 0, got {factor}.")

  def labels(params: Any) -> Any:
    paths = parameter_paths(params)
    _require_matches(freeze, paths, "config.optimizer.freeze")
    _require_matches(scaled, paths, "config.optimizer.scale_lr")

    def label(path, _):
      name = path_name(path)
      if any(p.search(name) for p in freeze):
        return "frozen"
      return "scaled" if any(p.search(name) for p in scaled) else "trained"

    return jax.tree_util.tree_map_with_path(label, params)

  return optax.multi_transform(
      {"trained": tx, "scaled": optax.chain(tx, optax.scale(factor)),
       "frozen": optax.set_to_zero()}, labels)
