"""Tests of the data layer: splits, seeding, standardisation, IDX files, TFDS, config errors."""

from __future__ import annotations

import gzip
import os
import struct

import ml_collections
import numpy as np
import pytest

from research import data
from research.data import idx, mnist, splits
from research.errors import ConfigError, DataError

MNIST_DIR = "/work/shared/datasets/mnist"
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
# Per-class counts of the official MNIST test split (LeCun et al.).
MNIST_TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ---------------------------------------------------------------------------------------------
# Helpers.


def write_idx(path, array: np.ndarray, magic: int | None = None, cut_bytes: int = 0) -> str:
  """Writes `array` as a gzip IDX file; `cut_bytes` drops that many bytes off the gzip end."""
  array = np.asarray(array, dtype=np.uint8)
  if magic is None:
    magic = 0x0800 | array.ndim
  payload = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
  payload += array.tobytes()
  compressed = gzip.compress(payload)
  if cut_bytes:
    compressed = compressed[:-cut_bytes]
  with open(path, "wb") as f:
    f.write(compressed)
  return str(path)


def write_fake_mnist(directory, num_train: int = 100, num_test: int = 20, seed: int = 0) -> str:
  """The four upstream IDX files of a tiny MNIST-like dataset, with every image distinct."""
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  for split, n in (("train", num_train), ("test", num_test)):
    images_file, labels_file = mnist.FILES[split]
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.arange(n) % 10  # Every class, evenly, so stratification is possible.
    write_idx(os.path.join(directory, images_file), images)
    write_idx(os.path.join(directory, labels_file), labels)
  return str(directory)


def row_keys(split: data.Split) -> set[bytes]:
  return {row.tobytes() for row in split.inputs}


def assert_disjoint(dataset: data.Dataset) -> None:
  names = list(dataset.splits)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      common = row_keys(dataset.splits[a]) & row_keys(dataset.splits[b])
      assert not common, f"{len(common)} examples in both {a} and {b}"


def load(**fields) -> data.Dataset:
  return data.load_dataset(ml_collections.ConfigDict(fields))


# ---------------------------------------------------------------------------------------------
# Splits: sizes, disjointness, determinism, stratification.


@pytest.mark.parametrize("name,total", [("wine", 178), ("breast_cancer", 569),
                                        ("synthetic_linear", 1000)])
def test_splits_partition_the_data(name, total):
  dataset = load(name=name)
  sizes = {k: len(v) for k, v in dataset.splits.items()}
  assert sum(sizes.values()) == total
  assert sizes["test"] == int(np.ceil(0.2 * total))
  assert sizes["validation"] == int(np.ceil(0.1 * (total - sizes["test"])))
  # All rows are distinct in these datasets, so disjoint rows means disjoint examples.
  assert sum(len(row_keys(s)) for s in dataset.splits.values()) == total
  assert_disjoint(dataset)


def test_fractions_control_split_sizes_and_zero_gives_empty_split():
  dataset = load(name="iris", test_fraction=0.5, validation_fraction=0.0)
  assert [len(dataset.splits[k]) for k in ("train", "validation", "test")] == [75, 0, 75]
  assert dataset.splits["validation"].inputs.shape == (0, 4)


def test_same_split_seed_gives_identical_splits_and_other_seed_differs():
  a, b = load(name="wine", split_seed=3), load(name="wine", split_seed=3)
  for k in a.splits:
    np.testing.assert_array_equal(a.splits[k].inputs, b.splits[k].inputs)
    np.testing.assert_array_equal(a.splits[k].labels, b.splits[k].labels)
  c = load(name="wine", split_seed=4, standardize=False)
  d = load(name="wine", split_seed=3, standardize=False)
  assert row_keys(c.splits["test"]) != row_keys(d.splits["test"])
  assert row_keys(c.splits["validation"]) != row_keys(d.splits["validation"])


@pytest.mark.parametrize("name", ["breast_cancer", "digits"])
def test_held_out_splits_are_stratified(name):
  dataset = load(name=name)
  all_labels = np.concatenate([s.labels for s in dataset.splits.values()])
  overall = np.bincount(all_labels) / len(all_labels)
  for split_name, split in dataset.splits.items():
    proportions = np.bincount(split.labels, minlength=len(overall)) / len(split)
    # Stratified: off by at most about one example per class in each split.
    np.testing.assert_allclose(proportions, overall, atol=1.5 / len(split) + 1e-9,
                               err_msg=split_name)


def test_hold_out_falls_back_to_random_split_when_a_class_is_a_singleton():
  split = data.Split(inputs=np.arange(10, dtype=np.float32)[:, None],
                     labels=np.array([0] * 9 + [1], dtype=np.int32))
  rest, held = splits.hold_out(split, 0.2, seed=0, stratify=True)
  assert (len(rest), len(held)) == (8, 2)
  assert set(rest.inputs[:, 0]).isdisjoint(held.inputs[:, 0])


# ---------------------------------------------------------------------------------------------
# Standardisation and other processing.


def test_standardize_fits_on_train_only():
  raw = load(name="wine", standardize=False)
  std = load(name="wine")
  train = std.splits["train"].inputs
  np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-5)
  np.testing.assert_allclose(train.std(axis=0), 1.0, atol=1e-4)
  # Validation/test use the train statistics, so theirs are not forced to 0/1 ...
  assert np.abs(std.splits["test"].inputs.mean(axis=0)).max() > 0.05
  # ... and are exactly the train transform of the raw features.
  raw_train = raw.splits["train"].inputs.astype(np.float64)
  expected = (raw.splits["test"].inputs - raw_train.mean(0)) / raw_train.std(0)
  np.testing.assert_allclose(std.splits["test"].inputs, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(std.splits["test"].labels, raw.splits["test"].labels)


def test_standardize_leaves_constant_features_finite():
  inputs = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]], dtype=np.float32)
  train = data.Split(inputs=inputs, labels=np.zeros(3, np.int32))
  test = data.Split(inputs=np.array([[3.0, 7.0]], np.float32), labels=np.zeros(1, np.int32))
  train_s, test_s = splits.standardize(train, test)
  assert np.isfinite(train_s.inputs).all() and np.isfinite(test_s.inputs).all()
  np.testing.assert_array_equal(train_s.inputs[:, 1], 0.0)
  np.testing.assert_allclose(test_s.inputs[0], [0.0, 2.0])  # Constant feature: only centred.


def test_digits_are_unstandardised_images_in_unit_range():
  dataset = load(name="digits")
  inputs = dataset.splits["train"].inputs
  assert dataset.input_shape == (8, 8, 1) and inputs.dtype == np.float32
  assert inputs.min() == 0.0 and inputs.max() == 1.0
  assert dataset.num_classes == 10 and dataset.is_classification


def test_diabetes_is_regression_with_float_targets():
  dataset = load(name="diabetes")
  assert dataset.num_classes is None and not dataset.is_classification
  labels = dataset.splits["train"].labels
  assert labels.dtype == np.float32 and labels.ndim == 1 and labels.max() > 100
  assert sum(len(s) for s in dataset.splits.values()) == 442


def test_num_examples_subsets_train_only():
  full = load(name="breast_cancer", standardize=False)
  small = load(name="breast_cancer", standardize=False, num_examples=50)
  assert len(small.splits["train"]) == 50
  assert row_keys(small.splits["train"]) <= row_keys(full.splits["train"])
  np.testing.assert_array_equal(small.splits["test"].inputs, full.splits["test"].inputs)
  with pytest.raises(ConfigError, match=r"dataset.num_examples = 100000 .* only 409"):
    load(name="breast_cancer", num_examples=100000)


def test_arrays_are_read_only():
  dataset = load(name="iris")
  with pytest.raises(ValueError, match="read-only"):
    dataset.splits["train"].inputs[0, 0] = 1.0


def test_check_labels_names_split_value_and_count():
  data.check_labels("train", np.array([0, 1, 2]), 3)  # In range: no error.
  with pytest.raises(DataError, match=r"'validation'.*2 of 4 labels.*\[0, 3\).*-1, 7"):
    data.check_labels("validation", np.array([0, 7, -1, 2]), 3)


# ---------------------------------------------------------------------------------------------
# Synthetic data.


def test_synthetic_linear_params_generate_the_targets():
  dataset = load(name="synthetic_linear", noise=0.0, standardize=False, split_seed=5,
                 num_features=4, num_examples=200)
  w, b = data.synthetic_linear_params(5, 4)
  assert w.shape == (4,) and w.dtype == np.float32
  for split in dataset.splits.values():
    np.testing.assert_allclose(split.inputs @ w + b, split.labels, atol=1e-5)
  assert dataset.num_classes is None and dataset.input_shape == (4,)
  assert sum(len(s) for s in dataset.splits.values()) == 200
  other_w, other_b = data.synthetic_linear_params(6, 4)
  assert not np.allclose(w, other_w) and b != other_b


def test_synthetic_linear_least_squares_recovers_params_under_noise():
  dataset = load(name="synthetic_linear", noise=0.1, standardize=False)
  train = dataset.splits["train"]
  design = np.concatenate([train.inputs, np.ones((len(train), 1), np.float32)], axis=1)
  solution, *_ = np.linalg.lstsq(design, train.labels, rcond=None)
  w, b = data.synthetic_linear_params(0, 8)
  np.testing.assert_allclose(solution[:-1], w, atol=0.03)
  np.testing.assert_allclose(solution[-1], b, atol=0.03)
  residual = train.labels - design @ solution
  assert 0.08 < residual.std() < 0.12  # The noise level asked for.


def test_synthetic_classification_is_seeded_binary():
  a, b = load(name="synthetic_classification"), load(name="synthetic_classification")
  np.testing.assert_array_equal(a.splits["train"].inputs, b.splits["train"].inputs)
  assert a.num_classes == 2 and set(np.unique(a.splits["train"].labels)) == {0, 1}
  with pytest.raises(ConfigError, match="dataset.noise"):
    load(name="synthetic_classification", noise=1.5)


# ---------------------------------------------------------------------------------------------
# Config errors.


def test_unknown_dataset_name_suggests_close_match():
  with pytest.raises(ConfigError, match=r"'mnsit' \(dataset.name\).*Did you mean 'mnist'"):
    load(name="mnsit")


@pytest.mark.parametrize("fields,pattern", [
    ({"validation_fraction": 1.0}, r"dataset.validation_fraction = 1.0 .*\[0, 1\)"),
    ({"test_fraction": -0.1}, r"dataset.test_fraction"),
    ({"split_seed": -1}, r"dataset.split_seed"),
    ({"validation_fraction": "0.1"}, r"dataset.validation_fraction must be a number"),
    ({"standardize": 1}, r"dataset.standardize must be a bool"),
    ({"validaton_fraction": 0.2}, r"dataset.validaton_fraction.*Did you mean "
                                  r"'validation_fraction'"),
    ({"source": "tfsd"}, r"Did you mean 'tfds'"),
    ({"source": "tfds"}, r"dataset 'wine' can only be read from 'sklearn'"),
])
def test_bad_config_fields_raise_config_error_naming_the_field(fields, pattern):
  with pytest.raises(ConfigError, match=pattern):
    load(name="wine", **fields)


def test_default_config_needs_only_a_name():
  config = data.default_dataset_config()
  assert config.source == "auto" and config.validation_fraction == 0.1
  assert config.test_fraction == 0.2 and config.split_seed == 0 and config.num_examples == 0
  with pytest.raises(ConfigError, match="dataset.name"):
    data.load_dataset(config)
  config.name = "iris"
  assert len(data.load_dataset(config).splits["test"]) == 30


# ---------------------------------------------------------------------------------------------
# IDX files: the real MNIST test split and every error path.


@pytest.mark.skipif(not os.path.isdir(MNIST_DIR), reason=f"{MNIST_DIR} absent")
def test_real_mnist_test_split_reads_correctly():
  images, labels = idx.read_images_and_labels(
      os.path.join(MNIST_DIR, "t10k-images-idx3-ubyte.gz"),
      os.path.join(MNIST_DIR, "t10k-labels-idx1-ubyte.gz"), (28, 28), 10, "test")
  assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8
  assert labels.shape == (10000,) and labels.dtype == np.int32
  assert images.min() == 0 and images.max() == 255
  assert np.bincount(labels).tolist() == MNIST_TEST_LABEL_COUNTS


@pytest.mark.skipif(not os.path.isdir(MNIST_DIR), reason=f"{MNIST_DIR} absent")
def test_local_mnist_lists_exactly_the_missing_train_files():
  with pytest.raises(DataError) as info:
    load(name="mnist", source="local", data_dir=MNIST_DIR)
  message = str(info.value)
  assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message
  assert "t10k" not in message and "dataset.source=tfds" in message


def test_local_fashion_mnist_from_fake_files(tmp_path):
  directory = write_fake_mnist(tmp_path / "fashion")
  dataset = load(name="fashion_mnist", source="local", data_dir=directory)
  assert [len(dataset.splits[k]) for k in ("train", "validation", "test")] == [90, 10, 20]
  assert dataset.input_shape == (28, 28, 1) and dataset.num_classes == 10
  assert dataset.splits["train"].inputs.dtype == np.uint8
  assert dataset.splits["train"].labels.dtype == np.int32
  # The official test split is kept whole and in file order.
  test_images = idx.read_idx(os.path.join(directory, "t10k-images-idx3-ubyte.gz"))
  np.testing.assert_array_equal(dataset.splits["test"].inputs[..., 0], test_images)
  assert_disjoint(dataset)
  # Validation is carved from train, stratified: one example of each of the 10 classes.
  assert sorted(dataset.splits["validation"].labels.tolist()) == list(range(10))


def test_auto_source_uses_well_known_local_dir(tmp_path, monkeypatch):
  directory = write_fake_mnist(tmp_path / "installed", num_train=30)
  monkeypatch.setitem(mnist.LOCAL_DIRS, "fashion_mnist", (str(tmp_path / "absent"), directory))
  dataset = load(name="fashion_mnist")  # source='auto', data_dir=''.
  assert len(dataset.splits["train"]) + len(dataset.splits["validation"]) == 30


def test_local_source_without_data_dir_says_how_to_get_files(monkeypatch):
  monkeypatch.setitem(mnist.LOCAL_DIRS, "fashion_mnist", ())
  with pytest.raises(DataError, match=r"needs dataset.data_dir.*apt-get install "
                                      r"dataset-fashion-mnist"):
    load(name="fashion_mnist", source="local")


def test_missing_data_dir_is_named(tmp_path):
  missing = tmp_path / "nowhere"
  with pytest.raises(DataError, match=rf"{missing} \(the directory does not exist\)"):
    load(name="mnist", source="local", data_dir=str(missing))


def test_missing_one_file_is_named(tmp_path):
  directory = write_fake_mnist(tmp_path)
  os.remove(os.path.join(directory, "t10k-labels-idx1-ubyte.gz"))
  with pytest.raises(DataError) as info:
    load(name="fashion_mnist", source="local", data_dir=directory)
  message = str(info.value)
  assert "lacks t10k-labels-idx1-ubyte.gz (" in message
  assert "train-images" not in message and "apt-get install dataset-fashion-mnist" in message


@pytest.mark.parametrize("cut_bytes,pattern", [
    (5000, r"is truncated: expected 78416 bytes .* holds only \d+ \(the gzip stream ends early\)"),
    (4, r"is truncated: it holds all 78416 bytes .* before the end-of-stream checksum"),
])
def test_truncated_images_file_is_named(tmp_path, cut_bytes, pattern):
  directory = write_fake_mnist(tmp_path)
  path = os.path.join(directory, "train-images-idx3-ubyte.gz")
  rng = np.random.default_rng(1)
  write_idx(path, rng.integers(0, 256, (100, 28, 28), dtype=np.uint8), cut_bytes=cut_bytes)
  with pytest.raises(DataError, match=rf"IDX file {path} {pattern}.*re-download it"):
    load(name="fashion_mnist", source="local", data_dir=directory)


def test_uncompressed_size_mismatch_is_truncation(tmp_path):
  path = tmp_path / "short-idx1-ubyte"
  path.write_bytes(struct.pack(">II", 0x801, 10) + bytes(6))  # Declares 10 labels, holds 6.
  with pytest.raises(DataError, match=r"truncated: expected 18 bytes .* holds only 14"):
    idx.read_idx(path)


def test_wrong_magic_number_is_named(tmp_path):
  directory = write_fake_mnist(tmp_path)
  path = os.path.join(directory, "train-labels-idx1-ubyte.gz")
  write_idx(path, np.arange(100) % 10, magic=0x00000D01)  # float32 type code, not uint8.
  with pytest.raises(DataError, match=rf"{path} has magic number 0x00000d01, expected "
                                      r"0x00000801"):
    load(name="fashion_mnist", source="local", data_dir=directory)


def test_labels_file_in_place_of_images_file_is_named(tmp_path):
  directory = write_fake_mnist(tmp_path)
  path = os.path.join(directory, "t10k-images-idx3-ubyte.gz")
  write_idx(path, np.arange(20) % 10)
  with pytest.raises(DataError, match=rf"{path} holds an array of shape \(20,\)"):
    load(name="fashion_mnist", source="local", data_dir=directory)


def test_not_gzip_file_is_named(tmp_path):
  path = tmp_path / "train-images-idx3-ubyte.gz"
  path.write_bytes(b"<html>404 Not Found</html>")
  with pytest.raises(DataError, match=rf"{path} is not a readable gzip file"):
    idx.read_idx(path)


def test_image_label_count_mismatch_names_both_files(tmp_path):
  directory = write_fake_mnist(tmp_path)
  labels_path = os.path.join(directory, "train-labels-idx1-ubyte.gz")
  write_idx(labels_path, np.arange(99) % 10)
  with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz \(100 images\) and "
                                      rf"{labels_path} \(99 labels\)"):
    load(name="fashion_mnist", source="local", data_dir=directory)


def test_out_of_range_labels_name_the_file(tmp_path):
  directory = write_fake_mnist(tmp_path)
  labels_path = os.path.join(directory, "t10k-labels-idx1-ubyte.gz")
  write_idx(labels_path, np.array([3] * 17 + [10, 10, 255]))
  with pytest.raises(DataError, match=rf"'test' \({labels_path}\): 3 of 20 labels are outside "
                                      r"\[0, 10\) \(offending values: 10, 255\)"):
    load(name="fashion_mnist", source="local", data_dir=directory)


@pytest.mark.skipif(not os.path.isfile(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz")),
                    reason=f"{FASHION_DIR} absent (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_local_files():
  dataset = load(name="fashion_mnist", source="local", data_dir=FASHION_DIR)
  assert [len(dataset.splits[k]) for k in ("train", "validation", "test")] == [54000, 6000, 10000]
  assert dataset.splits["test"].inputs.shape == (10000, 28, 28, 1)
  # Fashion-MNIST is balanced: 6000 train + 1000 test per class; stratification keeps 600/class
  # in validation.
  assert np.bincount(dataset.splits["test"].labels).tolist() == [1000] * 10
  assert np.bincount(dataset.splits["validation"].labels).tolist() == [600] * 10


# ---------------------------------------------------------------------------------------------
# TFDS.


def test_mnist_through_tfds_mock_data():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=30):
    dataset = load(name="mnist", source="tfds")
  assert [len(dataset.splits[k]) for k in ("train", "validation", "test")] == [27, 3, 30]
  train = dataset.splits["train"]
  assert train.inputs.shape == (27, 28, 28, 1) and train.inputs.dtype == np.uint8
  assert train.labels.dtype == np.int32 and train.labels.max() < 10
  # (mock_data fills every split with the same random examples, so only train/validation,
  # which we carve, can be checked for disjointness.)
  assert row_keys(train).isdisjoint(row_keys(dataset.splits["validation"]))


def test_auto_source_falls_back_to_tfds_when_local_files_are_missing(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=12):
    dataset = load(name="mnist", data_dir=str(tmp_path))  # Empty dir: not local.
  assert len(dataset.splits["test"]) == 12


def test_unprepared_tfds_dataset_raises_data_error_without_downloading(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(DataError, match=rf"'fashion_mnist' \(split 'train'\) is not prepared "
                                      rf"in {tmp_path}.*dataset.source=local"):
    load(name="fashion_mnist", source="tfds", data_dir=str(tmp_path))
  assert not any(tmp_path.iterdir())  # Nothing was downloaded or prepared there.
