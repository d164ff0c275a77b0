"""DCGAN: model shapes, the two-player step, resume, FID on a framework classifier, samples.

Everything runs on fake Fashion-MNIST IDX files and a feature classifier these tests train
themselves (experiments/fashion_mnist_cnn.py:tiny), never on runs/.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from launch.overrides import load_config
from research import generate_images
from research.errors import CheckpointError, ConfigError, WorkdirError
from research.models.gan import DCGAN, UpConv
from research.training import loop
from research.training.checkpoint import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Restoring a checkpoint into a state of another shape (a test below) leaves orbax read
# futures that report their cancellation when garbage-collected.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def experiment(name: str, variant: str = "tiny"):
  return load_config(os.path.join(ROOT, "experiments", f"{name}.py:{variant}"))


def write_fake_fashion_mnist(directory, num_train: int = 400, num_test: int = 40) -> str:
  """The four upstream IDX files, with images that differ by class (so a CNN learns a bit).

  Validation (10% of train) and test have the same size: one evaluation compile per run."""
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(0)
  for split, n in (("train", num_train), ("t10k", num_test)):
    labels = (np.arange(n) % 10).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
      images[i, 2 * label:2 * label + 8, :] += 180
    for kind, array in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
      header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
      with open(os.path.join(directory, f"{split}-{kind}.gz"), "wb") as f:
        f.write(gzip.compress(header + array.tobytes()))
  return str(directory)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return write_fake_fashion_mnist(tmp_path_factory.mktemp("fashion_mnist"))


@pytest.fixture(scope="module")
def classifier_workdir(data_dir, tmp_path_factory):
  """A Fashion-MNIST classifier trained by the framework (a small MLP: quick to compile)."""
  config = experiment("fashion_mnist_cnn")
  config.model = ml_collections.ConfigDict(dict(name="mlp", hidden_sizes=(32,)))
  config.dataset.data_dir = data_dir
  config.dataset.num_examples = 0
  config.train.num_steps = 4
  config.train.eval_every_steps = 4
  workdir = str(tmp_path_factory.mktemp("classifier") / "fashion_mnist_cnn")
  loop.train_and_evaluate(config, workdir, test=False)
  return workdir


def gan_config(data_dir, classifier_workdir, **train):
  config = experiment("fashion_mnist_dcgan")
  config.dataset.data_dir = data_dir
  config.task.classifier_workdir = classifier_workdir
  for key, value in train.items():
    config.train[key] = value
  return config


def leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]


def trees_equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(leaves(a), leaves(b), strict=True))


# -- model ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_dcgan_generates_and_discriminates_the_image_shape(shape):
  model = DCGAN(num_outputs=1, image_shape=shape, latent_dim=8, base_width=4)
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2,) + shape))
  assert set(variables["params"]) == {"generator", "discriminator"}
  assert set(variables["batch_stats"]) == {"generator", "discriminator"}
  images = jax.eval_shape(lambda v, z: model.apply(v, z, method="generate"), variables,
                          jnp.ones((3, 8)))
  assert images.shape == (3,) + shape
  logits = jax.eval_shape(lambda v, x: model.apply(v, x, method="discriminate"), variables,
                          images)
  assert logits.shape == (3, 1)


@pytest.mark.parametrize("channels,features", [(6, 5), (8, 16)])  # both CPU formulations
def test_upconv_equals_flax_conv_transpose(channels, features):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 7, 7, channels)).astype(np.float32)
  params = {"params": {"kernel": rng.normal(size=(4, 4, channels, features)).astype(np.float32),
                       "bias": rng.normal(size=(features,)).astype(np.float32)}}
  ours = UpConv(features)
  assert jax.tree.map(np.shape, jax.eval_shape(ours.init, jax.random.key(0), x)) == \
      jax.tree.map(np.shape, params)
  reference = nn.ConvTranspose(features, (4, 4), (2, 2), padding="SAME")
  got = jax.jit(ours.apply)(params, x)
  assert got.shape == (2, 14, 14, features)
  np.testing.assert_allclose(got, jax.jit(reference.apply)(params, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(28, 28), (7, 7, 1), (28, 32, 1)])
def test_dcgan_rejects_bad_image_shapes(shape):
  with pytest.raises(ConfigError, match="config.model.image_shape"):
    DCGAN(num_outputs=1, image_shape=shape)


@pytest.mark.parametrize("field,value", [("project_width", -1), ("refine_kernel", 2.5)])
def test_dcgan_rejects_bad_generator_options(field, value):
  with pytest.raises(ConfigError, match=f"config.model.{field} must be an integer >= 0"):
    DCGAN(num_outputs=1, **{field: value})


def test_refine_kernel_adds_a_width_halving_stride_one_conv():
  model = DCGAN(num_outputs=1, latent_dim=8, base_width=4, project_width=32, refine_kernel=5)
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 28, 28, 1)))["params"]
  generator = params["generator"]
  assert generator["project"]["kernel"].shape == (8, 7 * 7 * 32)
  assert generator["refine"]["kernel"].shape == (5, 5, 32, 16)
  assert generator["deconv1"]["kernel"].shape == (4, 4, 16, 8)


# -- the two-player step ---------------------------------------------------------------


def raw_state(workdir, step=None):
  """A checkpointed train state as saved (dicts of numpy arrays), without building a run."""
  ckpt = Checkpointer(workdir)
  try:
    step = ckpt.latest.latest_step() if step is None else step
    return ckpt.latest.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))["state"]
  finally:
    ckpt.close()


def adam_states(opt_state):
  """Every Adam state (a dict with mu, nu and count) inside a saved optimizer state."""
  if isinstance(opt_state, dict):
    if {"mu", "nu", "count"} <= set(opt_state):
      return [opt_state]
    return [a for value in opt_state.values() for a in adam_states(value)]
  if isinstance(opt_state, (list, tuple)):
    return [a for value in opt_state for a in adam_states(value)]
  return []


@pytest.fixture(scope="module")
def built(data_dir, classifier_workdir):
  return loop.build(gan_config(data_dir, classifier_workdir))


def test_fid_metric_through_the_task_is_the_frechet_distance(built):
  exp = built
  task = exp.task
  rng = np.random.default_rng(0)
  real = rng.normal(size=(20000, 4))
  shift = np.array([0.5, -0.5, 1.0, 0.0])
  ones = np.ones(20000, np.float32)
  outputs = {"real_features": real, "real_confidence": ones, "fake_confidence": ones / 2,
             "loss": ones}
  same = task.metrics(dict(outputs, fake_features=real), None)
  assert abs(same["fid_fashion_mnist_classifier"]) < 1e-6
  assert "loss" in task.metric_names() and set(task.metric_names()) <= set(same)
  shifted = task.metrics(dict(outputs, fake_features=rng.normal(size=(20000, 4)) + shift), None)
  # Same covariance: the distance is |shift|^2 (sampling noise ~ 2|shift| sqrt(2/n)).
  assert shifted["fid_fashion_mnist_classifier"] == pytest.approx(shift @ shift, abs=0.05)
  assert shifted["classifier_confidence"] == 0.5
  assert task.default_metric == "fid_fashion_mnist_classifier" and task.default_mode == "min"


# -- training, resume, samples ----------------------------------------------------------


@pytest.fixture(scope="module")
def trained(data_dir, classifier_workdir, tmp_path_factory):
  """A straight 4-step run, and a copy cut back to its step-2 checkpoint (as a run killed
  during step 3 leaves it) then resumed with the same command."""
  config = gan_config(data_dir, classifier_workdir)
  straight = str(tmp_path_factory.mktemp("straight") / "run")
  result = loop.train_and_evaluate(config, straight)
  assert sorted(os.listdir(os.path.join(straight, "checkpoints"))) == ["2", "4"]
  resumed = str(tmp_path_factory.mktemp("resumed") / "run")
  shutil.copytree(straight, resumed)
  for later in ("checkpoints/4", "checkpoints_best/4", "result.json"):
    path = os.path.join(resumed, later)
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.exists(path):
      os.remove(path)
  loop.train_and_evaluate(config, resumed)
  return config, straight, resumed, result


def test_resume_is_bit_exact_for_both_players(trained):
  _, straight, resumed, _ = trained
  a, b = raw_state(straight), raw_state(resumed)
  assert int(a["step"]) == int(b["step"]) == 4
  for part in ("params", "opt_state", "model_state"):
    assert trees_equal(a[part], b[part]), part


def test_each_step_updates_both_players_each_with_its_own_adam_state(trained):
  _, straight, _, _ = trained
  at2, at4 = raw_state(straight, 2), raw_state(straight, 4)
  assert set(at4["params"]) == set(at4["opt_state"]) == {"generator", "discriminator"}
  for player in ("generator", "discriminator"):
    assert not trees_equal(at2["params"][player], at4["params"][player]), player
    # One Adam update per player per step: a joint optimizer state would count two per step
    # (each player's zero gradient in the other's update) and decay the idle moments.
    assert [int(a["count"]) for a in adam_states(at2["opt_state"][player])] == [2]
    (adam,) = adam_states(at4["opt_state"][player])
    assert int(adam["count"]) == 4
    shapes = lambda tree: jax.tree.map(np.shape, tree)
    assert shapes(adam["mu"]) == shapes(at4["params"][player])
  assert set(at4["model_state"]["batch_stats"]) == {"generator", "discriminator"}


def test_results_and_sample_grids(trained):
  _, straight, _, result = trained
  name = "fid_fashion_mnist_classifier"
  for split in ("validation", "test"):
    assert np.isfinite(result[split][name]) and result[split][name] > 0
    assert 0.1 <= result[split]["classifier_confidence"] <= 1.0
  samples = os.path.join(straight, "samples")
  assert sorted(os.listdir(samples)) == ["step_000002.png", "step_000004.png"]
  grid = np.asarray(Image.open(os.path.join(samples, "step_000004.png")))
  side = 4 * (28 + 2) + 2  # 16 samples, 4 x 4, 2 px padding
  assert grid.shape == (side, side) and grid.dtype == np.uint8
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  events = EventAccumulator(os.path.join(straight, "tensorboard"))
  events.Reload()
  assert [e.step for e in events.Images("samples")] == [2, 4]
  assert {f"validation/{name}", "train/d_loss", "train/g_loss"} <= set(events.Tags()["scalars"])


def test_sample_images_reproduces_the_training_grid(trained, tmp_path):
  _, straight, _, _ = trained
  path = generate_images.write_samples(straight, num=16, seed=0, output=str(tmp_path / "g.png"))
  ours = np.asarray(Image.open(path))
  theirs = np.asarray(Image.open(os.path.join(straight, "samples", "step_000004.png")))
  np.testing.assert_array_equal(ours, theirs)
  other = np.asarray(Image.open(generate_images.write_samples(
      straight, num=16, seed=1, output=str(tmp_path / "g1.png"))))
  assert not np.array_equal(ours, other)
  default = generate_images.write_samples(straight, num=16)
  assert default == os.path.join(straight, "samples", "sample_step000004_seed0.png")


def test_changed_latent_size_is_refused_and_nothing_is_lost(trained):
  config, straight, _, _ = trained
  before = {d: sorted(os.listdir(os.path.join(straight, d)))
            for d in ("checkpoints", "checkpoints_best", "samples")}
  changed = config.copy_and_resolve_references()
  changed.model.latent_dim = 8
  changed.train.num_steps = 6
  with pytest.raises(WorkdirError, match=r"config.model.latent_dim: 16 -> 8"):
    loop.train_and_evaluate(changed, straight)
  with pytest.raises(WorkdirError, match=r"config.model.latent_dim: 16 -> 8"):
    loop.restore_state(changed, straight)
  # The checkpoint itself refuses a state of another latent size with a CheckpointError.
  exp = loop.build(changed)
  sample = jnp.asarray(exp.dataset.splits["train"].inputs[:1])
  abstract = jax.eval_shape(lambda: exp.task.create_state(jax.random.key(0), sample, exp.tx))
  ckpt = Checkpointer(straight)
  try:
    with pytest.raises(CheckpointError, match="different config"):
      ckpt.restore(abstract)
  finally:
    ckpt.close()
  assert before == {d: sorted(os.listdir(os.path.join(straight, d))) for d in before}
  assert int(raw_state(straight)["step"]) == 4  # the run is intact and readable


def test_sample_images_names_a_config_json_that_no_longer_fits(trained, tmp_path):
  _, straight, _, _ = trained
  copy = str(tmp_path / "edited")
  shutil.copytree(straight, copy)
  path = os.path.join(copy, "config.json")
  text = open(path).read().replace('"latent_dim": 16', '"latent_dim": 8')
  open(path, "w").write(text)
  with pytest.raises(CheckpointError, match=r"\['generator'\]\['project'\]\['kernel'\] has "
                                            r"shape \(16, 784\) in the checkpoint"):
    generate_images.load_workdir(copy)


def test_sample_images_cli_error_is_one_line_and_exit_2(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "launch.sample_images", f"--workdir={tmp_path}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 2
  assert proc.stderr.startswith("error: ") and "holds no config.json" in proc.stderr
  assert "Traceback" not in proc.stderr


# -- bad input ----------------------------------------------------------------------------


def test_missing_or_untrained_classifier_is_a_config_error(data_dir, tmp_path):
  for workdir, message in (("", "config.task.classifier_workdir is empty"),
                           (str(tmp_path / "nowhere"), "holds no trained run")):
    with pytest.raises(ConfigError, match=message) as e:
      loop.build(gan_config(data_dir, workdir))
    assert "python -m launch.main --config=experiments/fashion_mnist_cnn.py" in str(e.value)
  untrained = tmp_path / "untrained"
  config = experiment("fashion_mnist_cnn")
  config.dataset.data_dir = data_dir
  config.dataset.num_examples = 0
  from research.training import workdir as workdir_lib
  workdir_lib.prepare(str(untrained), config, overwrite=False)  # config.json, no checkpoint
  with pytest.raises(ConfigError, match="has no usable checkpoint"):
    loop.build(gan_config(data_dir, str(untrained)))


def test_classifier_of_another_dataset_is_refused(data_dir, classifier_workdir):
  with tfds.testing.mock_data(num_examples=40):
    config = experiment("mnist_dcgan")
    config.dataset.source = "tfds"
    config.dataset.num_examples = 0
    config.task.classifier_workdir = classifier_workdir
    with pytest.raises(ConfigError, match="run on 'fashion_mnist'.*classifier of 'mnist'"):
      loop.build(config)
    config.task.classifier_workdir = ""
    with pytest.raises(ConfigError, match="experiments/mnist_cnn.py"):
      loop.build(config)


def test_image_shape_must_match_the_data(data_dir, classifier_workdir):
  config = gan_config(data_dir, classifier_workdir)
  config.model.image_shape = (32, 32, 3)
  with pytest.raises(ConfigError, match=r"config.model.image_shape=\(32, 32, 3\)"):
    loop.build(config)
