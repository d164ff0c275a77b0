"""ResNets, CIFAR-10 files, and on-device augmentation."""

from __future__ import annotations

import os
import pickle

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from launch.overrides import load_config
from research.config import base_config
from research.data import augment, cifar, load_dataset
from research.errors import ConfigError, DataError
from research.models.resnet import CifarResNet, ResNet
from research.training import loop
from research.training.optimizers import make_optimizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _num_params(model, shape):
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))
  return sum(x.size for x in jax.tree.leaves(variables["params"])), variables


@pytest.mark.parametrize("model, shape, expected", [
    (CifarResNet(num_outputs=10, depth=20), (1, 32, 32, 3), 269_722),  # paper: 0.27M
    (CifarResNet(num_outputs=10, depth=56), (1, 32, 32, 3), 853_018),  # paper: 0.85M
    (ResNet(num_outputs=10, depth=18), (1, 32, 32, 3), 11_173_962),   # CIFAR ResNet-18
    (ResNet(num_outputs=1000, depth=50, stem="imagenet"), (1, 64, 64, 3), 25_557_032),
])
def test_resnet_parameter_counts_match_the_published_models(model, shape, expected):
  # ResNet-50's count is torchvision's resnet50 exactly (bias-free convs, BN scale + bias).
  count, variables = _num_params(model, shape)
  assert count == expected
  assert "batch_stats" in variables


def test_resnet_depth_is_validated():
  with pytest.raises(ConfigError, match=r"config\.model\.depth = 21"):
    CifarResNet(num_outputs=10, depth=21)
  with pytest.raises(ConfigError, match=r"config\.model\.depth = 19"):
    ResNet(num_outputs=10, depth=19)


def test_batchnorm_statistics_update_in_training_and_are_used_in_evaluation():
  model = CifarResNet(num_outputs=10, depth=8, width=4)
  x = jax.random.normal(jax.random.key(1), (8, 16, 16, 3)) * 3 + 1
  variables = model.init(jax.random.key(0), x)
  out_train, updated = model.apply(variables, x, train=True, mutable=["batch_stats"])
  before = jax.tree.leaves(variables["batch_stats"])
  after = jax.tree.leaves(updated["batch_stats"])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))
  # Evaluation uses the running statistics, so it is independent of the batch's own.
  eval_one = model.apply({**variables, **updated}, x[:1], train=False)
  eval_all = model.apply({**variables, **updated}, x, train=False)
  np.testing.assert_allclose(eval_one[0], eval_all[0], rtol=1e-5, atol=1e-5)


def test_weight_decay_skips_batchnorm_and_biases():
  model = CifarResNet(num_outputs=10, depth=8, width=4)
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))["params"]
  config = base_config()
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 1.0
  config.optimizer.weight_decay = 0.5
  tx = make_optimizer(config.optimizer, config.schedule, 10)
  zero_grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero_grads, tx.init(params), params)
  for path, update in jax.tree_util.tree_leaves_with_path(updates):
    name = jax.tree_util.keystr(path)
    if "kernel" in name:
      assert np.any(update != 0), name
    else:  # BatchNorm scale/bias and the head's bias are not decayed
      assert np.all(update == 0), name


# -- augmentation ------------------------------------------------------------------------

def _images(n=4, h=6, w=6, c=3):
  return jnp.arange(n * h * w * c, dtype=jnp.float32).reshape(n, h, w, c) + 1


def test_random_crop_is_a_shift_of_the_zero_padded_image():
  images = _images()
  out = augment.random_crop(images, jax.random.key(0), padding=2)
  assert out.shape == images.shape
  padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (2, 2), (0, 0)))
  for i in range(len(images)):
    windows = [padded[i, dy:dy + 6, dx:dx + 6] for dy in range(5) for dx in range(5)]
    assert any(np.array_equal(out[i], w) for w in windows)
  np.testing.assert_array_equal(augment.random_crop(images, jax.random.key(0), 0), images)


def test_horizontal_flip_flips_some_and_keeps_others():
  images = _images(n=32)
  out = np.asarray(augment.horizontal_flip(images, jax.random.key(3)))
  flipped = [np.array_equal(out[i], np.asarray(images)[i, :, ::-1]) for i in range(32)]
  kept = [np.array_equal(out[i], np.asarray(images)[i]) for i in range(32)]
  assert all(f or k for f, k in zip(flipped, kept))
  assert 4 < sum(flipped) < 28


def test_cutout_zeroes_one_square_at_most_size_squared():
  images = _images(n=8, h=10, w=10, c=1)
  out = np.asarray(augment.cutout(images, jax.random.key(0), size=4))
  zeros = (out == 0).reshape(8, -1).sum(1)
  assert np.all(zeros <= 16) and np.all(zeros >= 4)  # clipped at borders: at least 2x2


def test_mixup_mixes_inputs_and_labels_with_one_weight():
  batch = {"inputs": jnp.asarray(np.random.default_rng(0).integers(0, 255, (8, 4, 4, 1)),
                                 jnp.uint8), "labels": jnp.arange(8, dtype=jnp.int32)}
  out = augment.mixup(batch, jax.random.key(0), alpha=0.4)
  w = float(out["mix_weight"])
  x = np.asarray(batch["inputs"], np.float32) / 255
  partner = np.asarray(out["mix_labels"])  # labels are the indices here
  np.testing.assert_allclose(out["inputs"], w * x + (1 - w) * x[partner], rtol=1e-5)


def test_augment_config_is_validated_and_off_by_default():
  config = base_config().augment
  assert augment.make_augment(config) is None
  config.cutout_size = -1
  with pytest.raises(ConfigError, match=r"config\.augment\.cutout_size"):
    augment.make_augment(config)


# -- CIFAR-10 files ----------------------------------------------------------------------

def _write_cifar(directory, per_file=6, labels=None):
  rng = np.random.default_rng(0)
  os.makedirs(directory, exist_ok=True)
  for name in cifar.TRAIN_FILES + cifar.TEST_FILES:
    data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
    batch = {b"data": data, b"labels": list(labels if labels is not None
                                             else rng.integers(0, 10, per_file))}
    with open(os.path.join(directory, name), "wb") as f:
      pickle.dump(batch, f)


def test_cifar_python_batches_are_read_channel_last(tmp_path):
  root = tmp_path / "cifar-10-batches-py"
  _write_cifar(root)
  images, labels = cifar.read_batch(str(root / "test_batch"))
  with open(root / "test_batch", "rb") as f:
    raw = pickle.load(f, encoding="bytes")
  assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
  # Pixel (row 2, col 5) of channel 1 (green) of image 3, from the CHW layout.
  assert images[3, 2, 5, 1] == raw[b"data"][3, 1024 + 2 * 32 + 5]
  config = ml_collections.ConfigDict(dict(name="cifar10", source="local",
                                          data_dir=str(tmp_path), validation_fraction=0.2))
  dataset = load_dataset(config)  # the parent dir works too: the nested folder is found
  assert len(dataset.splits["test"]) == 6 and len(dataset.splits["train"]) == 24


@pytest.mark.parametrize("problem, message", [
    ("missing", "lacks data_batch_3"),
    ("corrupt", "not a readable CIFAR-10 batch file"),
    ("labels", r"outside \[0, 10\)"),
])
def test_bad_cifar_files_are_clear_errors(tmp_path, problem, message):
  _write_cifar(tmp_path, labels=[0, 1, 2, 3, 4, 12] if problem == "labels" else None)
  if problem == "missing":
    os.remove(tmp_path / "data_batch_3")
  if problem == "corrupt":
    (tmp_path / "data_batch_2").write_bytes(b"\x80\x04 truncated")
  config = ml_collections.ConfigDict(dict(name="cifar10", source="local", data_dir=str(tmp_path)))
  with pytest.raises(DataError, match=message):
    load_dataset(config)


# -- experiments -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cifar10_resnet18", "cifar10_resnet20"])
def test_resnet_recipes_train_on_tfds_mock_data(name, tmp_path):
  config = load_config(os.path.join(ROOT, "experiments", f"{name}.py:tiny"))
  config.dataset.source = "tfds"
  config.dataset.num_examples = 0
  with tfds.testing.mock_data(num_examples=128):
    result = loop.train_and_evaluate(config, str(tmp_path / name))
  assert result["step"] == 6
  assert 0.0 <= result["test"]["accuracy"] <= 1.0
  assert np.isfinite(result["validation"]["loss"])


def test_fashion_mnist_resnet18_recipes_build():
  with tfds.testing.mock_data(num_examples=1280):
    for variant, width, steps in (("", 64, 30 * 9), ("cpu", 16, 3 * 9)):
      config = load_config(os.path.join(ROOT, "experiments", f"fashion_mnist_resnet18.py:{variant}"))
      config.dataset.source = "tfds"
      config.dataset.num_examples = 0
      config.schedule.warmup_steps = 2
      exp = loop.build(config)  # 1,152 mock train examples / 128 = 9 steps per epoch
      assert exp.total_steps == steps and exp.task.model.width == width
      assert exp.dataset.input_shape == (28, 28, 1)


def test_augmentation_is_applied_in_training_and_reproducible(tmp_path):
  config = load_config(os.path.join(ROOT, "experiments", "cifar10_resnet20.py:tiny"))
  config.model = ml_collections.ConfigDict(dict(name="small_cnn", features=(4, 8), dense=16))
  config.dataset.source = "tfds"
  config.dataset.num_examples = 0
  config.train.num_steps = 3
  with tfds.testing.mock_data(num_examples=64):
    augmented = loop.train_and_evaluate(config, str(tmp_path / "a"))
    config.augment.random_crop_padding = 0
    config.augment.horizontal_flip = False
    plain = loop.train_and_evaluate(config, str(tmp_path / "b"))
  assert augmented["validation"]["loss"] != plain["validation"]["loss"]
  fn = augment.make_augment(load_config(
      os.path.join(ROOT, "experiments", "cifar10_resnet20.py:tiny")).augment)
  batch = {"inputs": jnp.asarray(np.random.default_rng(0).integers(0, 255, (4, 8, 8, 3)),
                                 jnp.uint8), "labels": jnp.zeros(4, jnp.int32)}
  np.testing.assert_array_equal(fn(batch, jax.random.key(5))["inputs"],
                                fn(batch, jax.random.key(5))["inputs"])
