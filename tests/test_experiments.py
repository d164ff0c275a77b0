"""Every experiment builds and trains; the small real-data recipes reach their REFERENCE.

MNIST's training images are not on these machines: the MNIST recipes run on TFDS mock
data here, and a real-data check trains on the real MNIST test images (the only MNIST
files present) with a held-out validation slice.
"""

from __future__ import annotations

import os
import shutil

import pytest
import tensorflow_datasets as tfds

from launch import overrides
from launch.overrides import load_config
from research.training import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = "/work/shared/datasets/mnist"
if not os.path.isdir(MNIST_DIR):
  MNIST_DIR = os.path.join(ROOT, "..", "shared", "datasets", "mnist")
TFDS_EXPERIMENTS = ("mnist_mlp", "mnist_cnn", "fashion_mnist_mlp", "fashion_mnist_cnn")
SMALL_REAL_DATA = ("digits_cnn", "diabetes_linreg", "breast_cancer_logreg", "iris_softmax",
                   "wine_softmax")
# Throughput workloads: no published number applies to them, so their REFERENCE is None.
SPEED_WORKLOADS = ("gpt2_small",)


def config_of(name: str, variant: str | None = None):
  spec = os.path.join(ROOT, "experiments", f"{name}.py") + (f":{variant}" if variant else "")
  return load_config(spec)


def test_every_experiment_has_a_reference_and_description():
  names = overrides.experiment_names()
  assert set(TFDS_EXPERIMENTS + SMALL_REAL_DATA) <= set(names)
  for name in names:
    module = overrides.load_module(os.path.join(ROOT, "experiments", f"{name}.py"))
    assert module.__doc__ and module.__doc__.strip(), name
    ref = module.REFERENCE
    if name in SPEED_WORKLOADS:
      assert ref is None, name
      continue
    assert {"metric", "value", "goal", "source"} <= set(ref), name
    assert ref["metric"].startswith("test/") and ref["goal"] in (">=", "<="), name


@pytest.mark.parametrize("name", TFDS_EXPERIMENTS)
def test_mnist_family_tiny_runs_on_tfds_mock_data(name, tmp_path):
  config = config_of(name, "tiny")
  config.dataset.source = "tfds"
  config.dataset.num_examples = 0
  config.train.batch_size = 16
  with tfds.testing.mock_data(num_examples=200):
    result = loop.train_and_evaluate(config, str(tmp_path / name))
  assert result["step"] == 20
  assert 0.0 <= result["test"]["accuracy"] <= 1.0
  assert len(result["test"]["confusion_matrix"]) == 10


def test_full_recipes_build_with_their_real_sizes():
  # The full recipes' shapes and schedules, checked without their data (mock TFDS).
  with tfds.testing.mock_data(num_examples=640):
    # 640 mock train examples, 10% held out for validation: 576 // 64 = 9 steps per epoch.
    for name, steps in (("mnist_mlp", 10 * 9), ("mnist_cnn", 5 * 9)):
      config = config_of(name)
      config.dataset.source = "tfds"
      exp = loop.build(config)
      assert exp.config.train.batch_size == 64
      assert exp.steps_per_epoch == 9 and exp.total_steps == steps
      assert exp.config.optimizer.name == "adam" and exp.config.optimizer.learning_rate == 1e-3


def test_mlp_learns_real_mnist_digits(tmp_path):
  """The real MNIST test images serve as a small real dataset: train on 90%, check 10%."""
  data_dir = tmp_path / "mnist"
  data_dir.mkdir()
  for kind in ("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"):
    shutil.copy(os.path.join(MNIST_DIR, f"t10k-{kind}"), data_dir / f"t10k-{kind}")
    os.symlink(data_dir / f"t10k-{kind}", data_dir / f"train-{kind}")
  config = config_of("mnist_mlp")
  config.dataset.source = "local"
  config.dataset.data_dir = str(data_dir)
  config.train.num_epochs = 2.0
  config.train.steps_per_dispatch = 8
  result = loop.train_and_evaluate(config, str(tmp_path / "run"))
  # 9,000 real training digits, 2 epochs: a held-out validation accuracy well above chance.
  assert result["validation"]["accuracy"] >= 0.92


@pytest.mark.parametrize("name", SMALL_REAL_DATA)
def test_small_recipes_reach_their_reference(name, tmp_path):
  module = overrides.load_module(os.path.join(ROOT, "experiments", f"{name}.py"))
  result = loop.train_and_evaluate(config_of(name), str(tmp_path / name))
  ref = module.REFERENCE
  split, metric = ref["metric"].split("/")
  value = result[split][metric]
  if ref["goal"] == ">=":
    assert value >= ref["value"], (name, value)
  else:
    assert value <= ref["value"], (name, value)
