"""Transfer learning: initialising from another run, frozen and scaled parameter groups."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from launch.overrides import load_config
from research.config import base_config
from research.errors import CheckpointError, ConfigError
from research.training import loop, transfer
from research.training.optimizers import make_optimizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARAMS = {"conv1": {"kernel": jnp.ones((3, 3, 1, 2)), "bias": jnp.ones((2,))},
          "head": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones((3,))}}


def _sgd(**fields):
  config = base_config().optimizer
  config.name = "sgd"
  config.learning_rate = 1.0
  config.update(fields)
  return make_optimizer(config, base_config().schedule, 10)


def _updates(tx):
  grads = jax.tree.map(jnp.ones_like, PARAMS)
  updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
  return {transfer.path_name(p): np.asarray(u)
          for p, u in jax.tree_util.tree_leaves_with_path(updates)}


def test_freeze_and_scale_lr_select_parameters_by_path():
  updates = _updates(_sgd(freeze=("conv1/",), scale_lr=("head/kernel",), scale_lr_factor=0.25))
  assert np.all(updates["conv1/kernel"] == 0) and np.all(updates["conv1/bias"] == 0)
  np.testing.assert_allclose(updates["head/kernel"], -0.25)
  np.testing.assert_allclose(updates["head/bias"], -1.0)


@pytest.mark.parametrize("fields, message", [
    (dict(freeze=("conv9",)), r"config\.optimizer\.freeze pattern 'conv9' matches no parameter"),
    (dict(scale_lr=("[",)), r"config\.optimizer\.scale_lr holds '\[', which is not a regular"),
    (dict(scale_lr=("head",), scale_lr_factor=0.0), r"scale_lr_factor must be > 0"),
])
def test_bad_parameter_groups_are_config_errors(fields, message):
  with pytest.raises(ConfigError, match=message):
    _updates(_sgd(**fields))


def test_merge_takes_matching_paths_and_refuses_other_shapes():
  saved = {"conv1": {"kernel": np.full((3, 3, 1, 2), 7.0), "bias": np.full((2,), 7.0)},
           "head": {"kernel": np.zeros((4, 5)), "bias": np.zeros((5,))}}
  merged, loaded = transfer.merge(PARAMS, saved, transfer._compile(("head",), "x"), "parameter")
  assert sorted(loaded) == ["conv1/bias", "conv1/kernel"]
  assert float(merged["conv1"]["kernel"][0, 0, 0, 0]) == 7.0
  assert float(merged["head"]["kernel"][0, 0]) == 1.0  # excluded: fresh
  with pytest.raises(ConfigError, match=r"'head/bias' has shape \(5,\) in the source run but "
                                        r"\(3,\) here; add a pattern matching it to "
                                        r"config\.init_from\.exclude"):
    transfer.merge(PARAMS, saved, [], "parameter")


def _mnist_transfer(variant="tiny"):
  return load_config(os.path.join(ROOT, "experiments", f"mnist_transfer.py:{variant}"))


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
  """A tiny Keras-CNN run on real MNIST test digits: the run to transfer from."""
  config = _mnist_transfer()
  config.init_from.workdir = ""
  config.optimizer.freeze = ()
  workdir = str(tmp_path_factory.mktemp("source"))
  loop.train_and_evaluate(config, workdir, test=False)
  _, state, _ = loop.restore_state(config, workdir, best=True)
  return workdir, jax.device_get(state.params)


def test_fine_tuning_starts_from_the_source_and_keeps_frozen_layers(source_run, tmp_path):
  source_dir, source_params = source_run
  config = _mnist_transfer()
  config.seed = 1  # a different fresh init: equality below can only come from the source
  config.init_from.workdir = source_dir
  loop.train_and_evaluate(config, str(tmp_path / "target"), test=False)
  _, state, _ = loop.restore_state(config, str(tmp_path / "target"))
  params = jax.device_get(state.params)
  for layer in ("conv1", "conv2", "conv3"):  # frozen by the tiny variant: still the source's
    np.testing.assert_array_equal(params[layer]["kernel"], source_params[layer]["kernel"])
  assert not np.allclose(params["head"]["kernel"], source_params["head"]["kernel"])


def test_init_from_errors_name_the_field(source_run, tmp_path):
  config = _mnist_transfer()
  config.init_from.workdir = str(tmp_path / "nothing")
  with pytest.raises(CheckpointError, match=r"config\.init_from\.workdir=.* holds no checkpoint"):
    loop.train_and_evaluate(config, str(tmp_path / "a"))
  config.init_from.workdir = source_run[0]
  config.model = ml_collections.ConfigDict(dict(name="mlp", hidden_sizes=(8,)))
  config.optimizer.freeze = ()
  config.init_from.exclude = ("head",)  # the MLP's other layer, dense0, is not in the source
  with pytest.raises(ConfigError, match=r"none of its parameters match"):
    loop.train_and_evaluate(config, str(tmp_path / "b"))


def test_transfer_recipes_build():
  for variant, groups in (("", ("scale_lr", ("conv",))), ("frozen", ("freeze", ("conv",))),
                          ("scratch", ("freeze", ()))):
    config = _mnist_transfer(variant)
    assert tuple(config.optimizer[groups[0]]) == groups[1]
    assert config.dataset.num_examples == 100
    assert bool(config.init_from.workdir) == (variant != "scratch")
