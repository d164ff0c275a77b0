"""Recommenders: MovieLens 100K reading and folds, MF / NeuMF, the rating and implicit tasks,
the two experiments and `launch.recommend`.

Most checks run on a small fake ml-100k directory written in the upstream format; the real
files (../shared/datasets/movielens_100k) check the official folds and train the `:tiny`
experiments. Losses and metrics are compared with hand formulas and scikit-learn.
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn import metrics as skm

from launch import recommend
from launch.overrides import load_config
from research import data, metrics as M
from research.config import base_config
from research.data import movielens
from research.errors import ConfigError, DataError
from research.models import build_model
from research.tasks import build_task
from research.tasks.rating import popularity_baseline, rank_of_positive
from research.training import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_DIR = next((d for d in movielens.LOCAL_DIRS if os.path.isfile(os.path.join(d, "u5.test"))),
                None)
needs_real = pytest.mark.skipif(REAL_DIR is None, reason="MovieLens 100K files not present")
USERS, ITEMS, PER_USER = 6, 120, 10  # 120 items: room for 99 unrated negatives per user


# ---------------------------------------------------------------------------------------------
# A fake ml-100k directory.


def fake_ratings(seed: int = 0) -> np.ndarray:
  """(60, 4) [user, item, rating, timestamp]: 10 distinct items per user, distinct times."""
  rng = np.random.default_rng(seed)
  rows = []
  for user in range(1, USERS + 1):
    items = rng.choice(np.arange(1, ITEMS), PER_USER, replace=False)
    items[0] = ITEMS if user == 1 else items[0]  # the largest id is rated (TFDS counts by it)
    times = rng.permutation(PER_USER) + 1000 * user
    rows += [(user, i, rng.integers(1, 6), t) for i, t in zip(items, times)]
  return np.array(rows, np.int64)


def write_lines(path, rows) -> None:
  with open(path, "w") as f:
    f.writelines("\t".join(str(v) for v in row) + "\n" for row in rows)


def write_ml100k(directory, ratings: np.ndarray | None = None) -> str:
  """u.info, u.data, u.item and u1-u5 .base/.test; row j is in the test file of fold j % 5."""
  ratings = fake_ratings() if ratings is None else ratings
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "u.info"), "w") as f:
    f.write(f"{USERS} users\n{ITEMS} items\n{len(ratings)} ratings\n")
  with open(os.path.join(directory, "u.item"), "w", encoding="latin-1") as f:
    f.writelines(f"{i}|Movie {i} (199{i % 10})|01-Jan-1995||http://x|0|1\n"
                 for i in range(1, ITEMS + 1))
  write_lines(os.path.join(directory, "u.data"), ratings)
  fold = np.arange(len(ratings)) % 5
  for k in range(5):
    write_lines(os.path.join(directory, f"u{k + 1}.test"), ratings[fold == k])
    write_lines(os.path.join(directory, f"u{k + 1}.base"), ratings[fold != k])
  return str(directory)


def load(name="movielens_100k", **fields) -> data.Dataset:
  return data.load_dataset(ml_collections.ConfigDict(dict(name=name, **fields)))


def triples(split: data.Split) -> set[tuple[int, int, float]]:
  """(user id, item id, rating) of each example, in upstream 1-based ids."""
  return {(int(u) + 1, int(i) + 1, float(r)) for (u, i), r in zip(split.inputs, split.labels)}


def as_triples(ratings: np.ndarray) -> set[tuple[int, int, float]]:
  return {(int(u), int(i), float(r)) for u, i, r, _ in ratings}


# ---------------------------------------------------------------------------------------------
# Data: local files.


def test_explicit_local_is_u1_base_and_u1_test_as_zero_based_pairs(tmp_path):
  ratings = fake_ratings()
  dataset = load(data_dir=write_ml100k(tmp_path), validation_fraction=0.1)
  train, val, test = (dataset.splits[s] for s in ("train", "validation", "test"))
  base, held = ratings[np.arange(60) % 5 != 0], ratings[np.arange(60) % 5 == 0]
  assert triples(test) == as_triples(held)
  assert triples(train) | triples(val) == as_triples(base) and len(val) == 5  # from u1.base
  assert train.inputs.dtype == np.int32 and train.labels.dtype == np.float32
  assert train.inputs.min() == 0 and dataset.num_classes is None
  assert dataset.model_fields == {"num_users": USERS, "num_items": ITEMS,
                                  "global_mean": pytest.approx(base[:, 2].mean())}
  assert dataset.metadata["item_titles"][0] == "Movie 1 (1991)"
  assert dataset.metadata["id_base"] == 1


@pytest.mark.parametrize("fold", range(5))
def test_cross_validation_test_split_is_the_official_fold_file(tmp_path, fold):
  ratings = fake_ratings()
  dataset = load(data_dir=write_ml100k(tmp_path), cv_folds=5, cv_fold=fold)
  in_fold = np.arange(60) % 5 == fold
  assert triples(dataset.splits["test"]) == as_triples(ratings[in_fold])
  rest = triples(dataset.splits["train"]) | triples(dataset.splits["validation"])
  assert rest == as_triples(ratings[~in_fold])
  # The model's global mean is that of the training ratings only: no test fold leaks in.
  assert dataset.model_fields["global_mean"] == pytest.approx(ratings[~in_fold, 2].mean())


def test_other_fold_counts_are_refused(tmp_path):
  with pytest.raises(ConfigError, match="dataset.cv_folds=5"):
    load(data_dir=write_ml100k(tmp_path), cv_folds=10, cv_fold=7)


@needs_real
def test_real_official_folds_partition_the_ratings():
  dataset = load(data_dir=REAL_DIR, cv_folds=5, cv_fold=2)
  u3 = movielens.read_ratings(os.path.join(REAL_DIR, "u3.test"), 943, 1682)
  assert triples(dataset.splits["test"]) == as_triples(u3)
  assert len(dataset.splits["train"]) + len(dataset.splits["validation"]) == 80_000
  assert dataset.model_fields["num_users"] == 943 and dataset.model_fields["num_items"] == 1682


@pytest.mark.parametrize("line, problem", [
    ("1\t2\t3", "expected 4 tab-separated fields"),
    ("1\t2\tx\t5", "every field must be an integer"),
    ("1\t2\t3.5\t5", "every field must be an integer"),
    ("1\t2\t6\t5", "rating 6 is outside 1-5"),
    ("1\t2\t0\t5", "rating 0 is outside 1-5"),
    ("7\t2\t3\t5", "user id 7 is outside 1-6 (u.info: 6 users)"),
    ("0\t2\t3\t5", "user id 0 is outside 1-6"),
    ("1\t121\t3\t5", "item id 121 is outside 1-120 (u.info: 120 items)"),
])
def test_bad_ratings_line_is_named_by_file_and_line(tmp_path, line, problem):
  directory = write_ml100k(tmp_path)
  path = os.path.join(directory, "u1.base")
  with open(path) as f:
    lines = f.readlines()
  lines[2] = line + "\n"
  with open(path, "w") as f:
    f.writelines(lines)
  with pytest.raises(DataError) as info:
    load(data_dir=directory)
  assert f"{path}:3: {problem}" in str(info.value)
  assert "re-download" in str(info.value)


def test_missing_files_are_all_named(tmp_path):
  directory = write_ml100k(tmp_path)
  for name in ("u1.test", "u4.test"):
    os.remove(os.path.join(directory, name))
  with pytest.raises(DataError, match=r"lacks u1\.test, u4\.test .*ml-100k\.zip"):
    load(data_dir=directory, source="local", cv_folds=5)


def test_fold_file_from_another_download_is_named(tmp_path):
  directory = write_ml100k(tmp_path)
  with open(os.path.join(directory, "u3.test"), "a") as f:
    f.write("1\t119\t2\t5\n")  # a rating neither u1.base nor u1.test has
  with pytest.raises(DataError, match=r"u3\.test:\d+: the rating of user 1 for item 119"):
    load(data_dir=directory, cv_folds=5)


def test_bad_u_info_is_named(tmp_path):
  directory = write_ml100k(tmp_path)
  with open(os.path.join(directory, "u.info"), "w") as f:
    f.write("943 users\nmany items\n")
  with pytest.raises(DataError, match=r"u\.info:2: expected '<count> <what>'"):
    load(data_dir=directory)


# ---------------------------------------------------------------------------------------------
# Data: leave-one-out implicit feedback.


def test_leave_one_out_holds_out_each_users_latest_ratings(tmp_path):
  ratings = fake_ratings()
  dataset = load("movielens_100k_implicit", data_dir=write_ml100k(tmp_path))
  train, val, test = (dataset.splits[s] for s in ("train", "validation", "test"))
  assert train.inputs.shape == (60 - 2 * USERS, 2) and np.all(train.labels == 1)
  assert val.inputs.shape == test.inputs.shape == (USERS, 101)
  for user in range(1, USERS + 1):
    mine = ratings[ratings[:, 0] == user]
    by_time = mine[np.argsort(mine[:, 3]), 1]
    test_row = test.inputs[test.inputs[:, 0] == user - 1][0] + 1
    val_row = val.inputs[val.inputs[:, 0] == user - 1][0] + 1
    assert test_row[1] == by_time[-1] and val_row[1] == by_time[-2]
    for row in (test_row, val_row):  # 99 distinct items the user never rated
      negatives = row[2:]
      assert len(set(negatives)) == 99 and not set(negatives) & set(mine[:, 1])
      assert negatives.min() >= 1 and negatives.max() <= ITEMS
    trained = set(train.inputs[train.inputs[:, 0] == user - 1, 1] + 1)
    assert trained == set(by_time[:-2])


def test_evaluation_negatives_are_fixed_by_split_seed(tmp_path):
  directory = write_ml100k(tmp_path)
  a, b, c = (load("movielens_100k_implicit", data_dir=directory, split_seed=s).splits["test"]
             for s in (0, 0, 1))
  np.testing.assert_array_equal(a.inputs, b.inputs)
  assert not np.array_equal(a.inputs[:, 2:], c.inputs[:, 2:])
  np.testing.assert_array_equal(a.inputs[:, :2], c.inputs[:, :2])


def test_ratings_in_the_same_second_are_ordered_by_seed_not_item_id():
  ratings = fake_ratings()
  ratings[:, 3] = 7  # every rating of every user in the same second
  held = set()
  for seed in range(4):
    train, val, test = movielens.leave_one_out(ratings, USERS, ITEMS, seed)
    held.add(tuple(test.inputs[:, 1]))
    largest = [max(ratings[ratings[:, 0] == u + 1, 1]) - 1 for u in test.inputs[:, 0]]
    assert list(test.inputs[:, 1]) != largest  # not the highest item id of each user
  assert len(held) > 1


# ---------------------------------------------------------------------------------------------
# Data: TFDS (mocked; never downloaded).


def tfds_examples(ratings: np.ndarray) -> list[dict]:
  return [{"user_id": str(u).encode(), "movie_id": str(i).encode(), "user_rating": np.float32(r),
           "timestamp": np.int64(t), "movie_title": f"Movie {i}".encode()}
          for u, i, r, t in ratings]


def mock_tfds(ratings: np.ndarray):
  examples = tfds_examples(ratings)
  return tfds.testing.mock_data(as_data_source_fn=lambda *args, **kwargs: examples)


def test_tfds_implicit_equals_the_local_files(tmp_path):
  ratings = fake_ratings()
  local = load("movielens_100k_implicit", data_dir=write_ml100k(tmp_path))
  with mock_tfds(ratings):
    remote = load("movielens_100k_implicit", source="tfds")
  for split in ("train", "validation", "test"):
    np.testing.assert_array_equal(np.sort(local.splits[split].inputs, 0),
                                  np.sort(remote.splits[split].inputs, 0))
  assert remote.metadata["item_titles"][ratings[0, 1] - 1] == f"Movie {ratings[0, 1]}"


def test_tfds_explicit_has_seeded_test_split_and_folds(tmp_path):
  ratings = fake_ratings()
  with mock_tfds(ratings):
    plain = load(source="tfds", test_fraction=0.2)
    folds = [load(source="tfds", cv_folds=5, cv_fold=k) for k in range(5)]
  assert len(plain.splits["test"]) == 12
  train_ratings = np.concatenate([plain.splits[s].labels for s in ("train", "validation")])
  assert plain.model_fields["global_mean"] == pytest.approx(train_ratings.mean())
  tests = [triples(f.splits["test"]) for f in folds]
  assert set().union(*tests) == as_triples(ratings) and sum(map(len, tests)) == 60


def test_tfds_bad_rating_is_named():
  ratings = fake_ratings()
  ratings[4, 2] = 7
  with mock_tfds(ratings), pytest.raises(DataError, match="example 4: .* rating 7"):
    load(source="tfds")


def test_unprepared_tfds_raises_without_downloading(tmp_path):
  with pytest.raises(DataError, match=r"movielens/100k-ratings.*tfds build"):
    load("movielens_100k_implicit", source="tfds", data_dir=str(tmp_path))


# ---------------------------------------------------------------------------------------------
# Models.


def _ids(*rows) -> jax.Array:
  return jnp.asarray(rows, jnp.int32)


def apply_and_norms(model, params, pairs) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """The model's outputs and embedding norms, in one compiled call (eager ops compile each)."""
  fn = jax.jit(lambda p, x: (model.apply({"params": p}, x),
                             model.apply({"params": p}, x, method="embedding_norms")))
  return jax.device_get(fn(params, pairs))


def model_outputs(model, params, pairs) -> np.ndarray:
  return np.asarray(jax.jit(model.apply)({"params": params}, pairs), np.float64)


def test_mf_is_global_mean_plus_biases_plus_dot_product():
  model = build_model(ml_collections.ConfigDict(dict(name="matrix_factorization", num_factors=3)),
                      1, data_fields={"num_users": 4, "num_items": 5, "global_mean": 3.5})
  pairs = _ids([0, 1], [3, 4], [2, 0])
  params = jax.device_get(jax.jit(model.init)(jax.random.key(0), pairs)["params"])
  params = jax.tree.map(lambda p: p + 0.3, params)  # biases start at 0: make them count
  out, norms = apply_and_norms(model, params, pairs)
  p, q = params["user_factors"]["embedding"], params["item_factors"]["embedding"]
  bu, bi = params["user_bias"]["embedding"][:, 0], params["item_bias"]["embedding"][:, 0]
  u, i = np.asarray(pairs).T
  expected = 3.5 + bu[u] + bi[i] + np.sum(p[u] * q[i], -1)
  np.testing.assert_allclose(out[:, 0], expected, rtol=1e-6)
  np.testing.assert_allclose(norms["factors"], np.sum(p[u] ** 2 + q[i] ** 2, -1), rtol=1e-6)
  np.testing.assert_allclose(norms["biases"], bu[u] ** 2 + bi[i] ** 2, rtol=1e-6)


def test_recommenders_reject_wrong_inputs_and_configs():
  mf = build_model(ml_collections.ConfigDict(dict(name="matrix_factorization")), 1,
                   data_fields={"num_users": 3, "num_items": 3})
  with pytest.raises(ConfigError, match=r"integer \[user, item\] id pairs"):
    jax.eval_shape(mf.init, jax.random.key(0), jnp.zeros((2, 2), jnp.float32))
  with pytest.raises(ConfigError, match="one score per"):
    build_model(ml_collections.ConfigDict(dict(name="matrix_factorization")), 4,
                data_fields={"num_users": 3, "num_items": 3})
  with pytest.raises(ConfigError, match=r"config\.model\.num_users must not be set"):
    build_model(ml_collections.ConfigDict(dict(name="neumf", num_users=5)), 1,
                data_fields={"num_users": 3, "num_items": 3})
  for fields, pattern in ((dict(mlp_sizes=(7, 4)), r"mlp_sizes\[0\] = 7 must be even"),
                          (dict(mf_dim=0, mlp_sizes=()), "no tower"),
                          (dict(dropout_rate=1.0), "dropout_rate")):
    with pytest.raises(ConfigError, match=pattern):
      build_model(ml_collections.ConfigDict(dict(name="neumf", **fields)), 1,
                  data_fields={"num_users": 3, "num_items": 3})


def test_neumf_towers_feed_one_linear_head():
  fields = {"num_users": 4, "num_items": 5}
  gmf = build_model(ml_collections.ConfigDict(dict(name="neumf", mf_dim=3, mlp_sizes=())), 1,
                    data_fields=fields)
  pairs = _ids([[0, 1], [3, 4]], [[2, 0], [1, 1]])  # any leading shape: (2, 2, 2)
  params = jax.device_get(jax.jit(gmf.init)(jax.random.key(0), pairs)["params"])
  out = model_outputs(gmf, params, pairs)
  p, q = params["gmf_user"]["embedding"], params["gmf_item"]["embedding"]
  u, i = np.asarray(pairs)[..., 0], np.asarray(pairs)[..., 1]
  expected = (p[u] * q[i]) @ params["head"]["kernel"] + params["head"]["bias"]
  assert out.shape == (2, 2, 1)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-7)
  both = build_model(ml_collections.ConfigDict(dict(name="neumf", mf_dim=3, mlp_sizes=(8, 4))),
                     1, data_fields=fields)
  shapes = jax.eval_shape(both.init, jax.random.key(0), pairs)["params"]
  assert shapes["mlp_user"]["embedding"].shape == (4, 4)   # half of mlp_sizes[0] each
  assert shapes["mlp0"]["kernel"].shape == (8, 4)
  assert shapes["head"]["kernel"].shape == (3 + 4, 1)      # GMF and MLP outputs concatenated


# ---------------------------------------------------------------------------------------------
# Tasks.


def make_task(task: str, model: str, num_items: int = 5, **task_fields):
  config = base_config()
  config.task.name = task
  config.task.update(task_fields)
  fields = dict(name=model, mlp_sizes=(8, 4)) if model == "neumf" else dict(name=model)
  config.model = ml_collections.ConfigDict(fields)
  built = build_model(config.model, 1, data_fields={"num_users": 4, "num_items": num_items,
                                                    "global_mean": 3.0})
  return build_task(config, built, None)


def init_params(task, inputs, scale=1.0):
  params = jax.jit(task.init_variables)(jax.random.key(1), inputs)["params"]
  return jax.tree.map(lambda p: p * scale + 0.05, params)


def test_rating_clips_predictions_and_metrics_match_sklearn():
  task = make_task("rating", "matrix_factorization")
  rng = np.random.default_rng(0)
  inputs = jnp.asarray(np.stack([rng.integers(0, 4, 40), rng.integers(0, 5, 40)], 1), jnp.int32)
  labels = jnp.asarray(rng.integers(1, 6, 40), jnp.float32)
  params = init_params(task, inputs, scale=30.0)  # predictions far outside the 1-5 scale
  raw = model_outputs(task.model, params, inputs)[:, 0]
  assert raw.min() < 1 and raw.max() > 5
  out = jax.device_get(jax.jit(task.outputs)(params, None, {"inputs": inputs, "labels": labels}))
  clipped = np.clip(raw, 1, 5)
  np.testing.assert_allclose(out["prediction"][:, 0], clipped, rtol=1e-6)
  result = task.metrics(out, np.asarray(labels))
  assert result["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(labels, clipped)), 1e-5)
  assert result["mae"] == pytest.approx(skm.mean_absolute_error(labels, clipped), 1e-5)


def test_rating_loss_adds_the_per_example_l2_penalty():
  task = make_task("rating", "matrix_factorization", embedding_l2=0.1, bias_l2=0.01)
  inputs, labels = _ids([0, 1], [3, 4], [0, 1]), jnp.asarray([4.0, 2.0, 5.0])
  params = init_params(task, inputs)
  loss, (sums, _) = jax.jit(task.loss_and_sums)(params, None,
                                                {"inputs": inputs, "labels": labels},
                                                jax.random.key(0))
  preds, norms = apply_and_norms(task.model, params, inputs)
  preds = preds[:, 0]
  mse = np.mean((preds - np.asarray(labels)) ** 2)
  penalty = 0.1 * np.mean(norms["factors"]) + 0.01 * np.mean(norms["biases"])
  assert float(loss) == pytest.approx(mse + penalty, rel=1e-5)
  assert float(sums["loss"]) == pytest.approx(3 * mse, rel=1e-5)  # logged: the data term


def test_implicit_loss_is_bce_over_the_positive_and_sampled_negatives():
  task = make_task("implicit", "neumf", num_items=50, num_negatives=3)
  inputs, labels = _ids([0, 1], [3, 4], [2, 7], [1, 9]), jnp.ones(4, jnp.float32)
  params = init_params(task, inputs, scale=5.0)
  rng = jax.random.key(3)
  loss, (sums, _) = jax.jit(task.loss_and_sums)(params, None,
                                                {"inputs": inputs, "labels": labels}, rng)
  # The draws the task makes: the first half of the split step key, uniform over items.
  draw = jax.jit(lambda r: jax.random.randint(jax.random.split(r)[0], (4, 3), 0, 50, jnp.int32))
  negatives = np.asarray(draw(rng))
  candidates = np.concatenate([np.asarray(inputs)[:, 1:], negatives], 1)
  pairs = np.stack([np.repeat(np.asarray(inputs)[:, :1], 4, 1), candidates], -1)
  logits = model_outputs(task.model, params, jnp.asarray(pairs))[..., 0]
  targets = np.zeros_like(logits)
  targets[:, 0] = 1
  bce = -(targets * np.log(1 / (1 + np.exp(-logits)))
          + (1 - targets) * np.log(1 - 1 / (1 + np.exp(-logits))))
  weights = np.concatenate([np.ones((4, 1)), negatives != np.asarray(inputs)[:, 1:]], 1)
  assert float(loss) == pytest.approx((bce * weights).sum() / weights.sum(), rel=1e-5)
  assert float(sums["count"]) == 4


def test_implicit_drops_draws_of_the_examples_own_positive():
  # One item only: every draw is the positive itself, so the loss is the positives' alone.
  task = make_task("implicit", "neumf", num_items=1, num_negatives=4)
  inputs, labels = _ids([0, 0], [1, 0]), jnp.ones(2, jnp.float32)
  params = init_params(task, inputs, scale=5.0)
  loss, _ = jax.jit(task.loss_and_sums)(params, None, {"inputs": inputs, "labels": labels},
                                        jax.random.key(0))
  logits = model_outputs(task.model, params, inputs)[:, 0]
  expected = np.mean(np.log1p(np.exp(-logits)))  # BCE of positives: -log sigmoid(z)
  assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_rank_counts_ties_against_the_positive_and_metrics_follow():
  scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.2, 0.1], [0.0, 0.5, 0.7], [1.0, 1.0, 1.0]])
  np.testing.assert_array_equal(rank_of_positive(scores), [0, 1, 2, 2])
  task = make_task("implicit", "neumf", top_k=2)
  rows = _ids([0, 1, 2, 3], [1, 4, 0, 2])
  params = init_params(task, rows, scale=5.0)
  out = jax.device_get(jax.jit(task.outputs)(params, None, {"inputs": rows,
                                                            "labels": jnp.ones(2)}))
  candidates = np.asarray(rows)[:, 1:]
  pairs = np.stack([np.repeat(np.asarray(rows)[:, :1], 3, 1), candidates], -1)
  scored = model_outputs(task.model, params, jnp.asarray(pairs))[..., 0]
  ranks = rank_of_positive(scored)
  np.testing.assert_array_equal(out["rank"], ranks)
  result = task.metrics(out, np.ones(2))
  assert result["hit_rate_at_2"] == M.hit_rate_at_k(ranks, 2)
  assert result["ndcg_at_2"] == M.ndcg_at_k(ranks, 2)
  assert task.default_metric == "ndcg_at_2" and task.default_mode == "max"


def test_popularity_baseline_ranks_candidates_by_training_counts():
  train = np.array([[0, 3], [1, 3], [2, 3], [0, 1], [1, 1], [2, 0]])  # counts: 3->3, 1->2, 0->1
  rows = np.array([[0, 3, 1, 0, 2],    # most popular positive: rank 0
                   [1, 0, 3, 1, 2],    # 3 and 1 beat item 0: rank 2
                   [2, 2, 4, 0, 3]])   # unseen 2 ties 4 (tie counts against), loses to 0, 3
  result = popularity_baseline(train, rows, num_items=5, k=2)
  assert result["hit_rate_at_2"] == pytest.approx(1 / 3)
  assert result["ndcg_at_2"] == pytest.approx(M.ndcg_at_k([0, 2, 3], 2))


def test_implicit_task_config_errors():
  with pytest.raises(ConfigError, match="num_negatives must be an integer >= 1"):
    make_task("implicit", "neumf", num_negatives=0)
  with pytest.raises(ConfigError, match="embedding_l2 must be a number >= 0"):
    make_task("rating", "matrix_factorization", embedding_l2=-1.0)
  config = base_config()
  config.task.name = "implicit"
  config.model = ml_collections.ConfigDict(dict(name="linear"))
  with pytest.raises(ConfigError, match="needs a model with num_items"):
    build_task(config, build_model(config.model, 1), None)


# ---------------------------------------------------------------------------------------------
# Experiments and recommending, on the real files.


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
  if REAL_DIR is None:
    pytest.skip("MovieLens 100K files not present")
  runs = {}
  for name in ("ml100k_mf", "ml100k_ncf"):
    config = load_config(os.path.join(ROOT, "experiments", f"{name}.py:tiny"))
    config.dataset.data_dir = REAL_DIR
    workdir = str(tmp_path_factory.mktemp(name))
    runs[name] = (workdir, loop.train_and_evaluate(config, workdir))
  return runs


def test_tiny_experiments_train_and_evaluate(tiny_runs):
  _, mf = tiny_runs["ml100k_mf"]
  assert mf["step"] == 16 and 0.5 < mf["test"]["rmse"] < 2.0
  _, ncf = tiny_runs["ml100k_ncf"]
  assert ncf["step"] == 16 and 0.0 <= ncf["test"]["hit_rate_at_10"] <= 1.0
  assert set(ncf["validation"]) >= {"loss", "hit_rate_at_10", "ndcg_at_10"}


def test_recommend_leaves_out_rated_items_and_ranks_by_score(tiny_runs):
  workdir, _ = tiny_runs["ml100k_mf"]
  exp, state, _ = recommend.load_run(workdir)
  items = recommend.recommend(exp, state, user=196, top_n=15)
  assert [r["rank"] for r in items] == list(range(1, 16))
  scores = [r["score"] for r in items]
  assert scores == sorted(scores, reverse=True) and all(1.0 <= s <= 5.0 for s in scores)
  rated = set(recommend.known_items(exp, 195) + 1)
  assert rated and not rated & {r["item"] for r in items}
  assert items[0]["title"]  # titles from u.item, through dataset.json's metadata
  with pytest.raises(ConfigError, match=r"--user=944 is not a user .* 1\.\.943"):
    recommend.recommend(exp, state, user=944)
  with pytest.raises(ConfigError, match="--top_n=0"):
    recommend.recommend(exp, state, user=1, top_n=0)


def test_popularity_comparison_uses_the_runs_candidates(tiny_runs):
  workdir, result = tiny_runs["ml100k_ncf"]
  exp, state, _ = recommend.load_run(workdir)
  rows = recommend.popularity_comparison(exp, state)
  model_test = next(r for r in rows if r[0] == "test" and r[1] == "neumf")
  assert model_test[2] == pytest.approx(result["test"]["hit_rate_at_10"])
  popular = next(r for r in rows if r[0] == "test" and r[1] == "popularity")
  assert 0.2 < popular[2] < 0.8  # far above the 10% of a random ranking on real data
  mf_dir, _ = tiny_runs["ml100k_mf"]
  mf_exp, mf_state, _ = recommend.load_run(mf_dir)
  with pytest.raises(ConfigError, match="needs a run of task 'implicit'"):
    recommend.popularity_comparison(mf_exp, mf_state)


def test_recommend_cli_unknown_user_is_one_error_line_and_exit_2(tiny_runs):
  workdir, _ = tiny_runs["ml100k_mf"]
  env = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-m", "launch.recommend", f"--workdir={workdir}",
                         "--user=5000"], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert errors == ["error: --user=5000 is not a user of this model: movielens_100k user ids "
                    "are 1..943."]
