r"""Top-N recommendations for one user from a trained recommender's workdir.

  python -m launch.recommend --workdir=runs/ml100k_mf --user=196 --top_n=10
  python -m launch.recommend --workdir=runs/ml100k_ncf --popularity_baseline

Reads the workdir's config.json and its newest checkpoint (--best: the best one), and
rebuilds the dataset the run trained on, so the items the user already rated in training
(the train and validation splits) are left out. Users and items are the upstream ids
(MovieLens: 1-based); scores are predicted ratings (task `rating`, clipped to the scale) or
interaction probabilities (task `implicit`). `--popularity_baseline` instead compares the
checkpoint's validation / test HR@k and NDCG@k with ranking the same candidates by training
popularity. Writes nothing; a bad flag, workdir or user id ends with one `error:` line, exit 2.
"""

from __future__ import annotations

from typing import Any

from absl import flags

from launch.cli import report_error, run_command

_WORKDIR = flags.DEFINE_string("workdir", None, "A recommender workdir that launch.main trained.")
_USER = flags.DEFINE_integer("user", None, "The user id to recommend for (upstream id).")
_TOP_N = flags.DEFINE_integer("top_n", 10, "How many items to recommend.")
_BEST = flags.DEFINE_bool("best", False, "Use the best checkpoint instead of the newest.")
_BASELINE = flags.DEFINE_bool(
    "popularity_baseline", False, "Instead of recommending, print the checkpoint's HR@k / "
    "NDCG@k beside the popularity baseline's (task 'implicit' runs).")


def load_run(workdir: str, best: bool = False) -> tuple[Any, Any, int]:
  """(experiment, train state, step) of a recommender workdir, via `loop.restore_workdir`."""
  from research.errors import ConfigError
  from research.training import loop

  exp, state, step = loop.restore_workdir(workdir, best)
  if not {"num_users", "num_items"} <= set(exp.dataset.model_fields):
    raise ConfigError(f"{workdir} trained {exp.config.model.name!r} on {exp.dataset.name!r}, "
                      "which is not a recommender (no users and items): point --workdir at a "
                      "run of experiments/ml100k_mf.py or ml100k_ncf.py (for cross-validation "
                      "or seeds: WORKDIR/fold_<k> or seed_<s>).")
  return exp, state, step


def user_index(exp: Any, user: int) -> int:
  """The model's index of upstream user id `user`; an unknown id is a ConfigError."""
  from research.errors import ConfigError
  base = int(exp.dataset.metadata.get("id_base", 0))
  num_users = int(exp.dataset.model_fields["num_users"])
  index = user - base
  if not 0 <= index < num_users:
    raise ConfigError(f"--user={user} is not a user of this model: {exp.dataset.name} user ids "
                      f"are {base}..{num_users - 1 + base}.")
  return index


def known_items(exp: Any, index: int) -> Any:
  """Item indices user `index` has in the train and validation splits (column 1: the item)."""
  import numpy as np
  parts = [split.inputs[split.inputs[:, 0] == index, 1]
           for name, split in exp.dataset.splits.items() if name != "test"]
  return np.unique(np.concatenate(parts))


def recommend(exp: Any, state: Any, user: int, top_n: int = 10) -> list[dict[str, Any]]:
  """The `top_n` highest-scored items user `user` has not rated in training, best first."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from research.errors import ConfigError
  from research.tasks.rating import ImplicitFeedback, RatingRegression

  if top_n < 1:
    raise ConfigError(f"--top_n={top_n}: recommend at least 1 item.")
  index = user_index(exp, user)
  num_items = int(exp.dataset.model_fields["num_items"])
  pairs = np.stack([np.full(num_items, index, np.int32), np.arange(num_items, dtype=np.int32)], -1)
  task = exp.task

  @jax.jit
  def score(params, model_state, pairs):
    out, _ = task.apply(params, model_state, pairs, None, train=False)
    out = out[..., 0].astype(jnp.float32)
    if isinstance(task, ImplicitFeedback):
      return jax.nn.sigmoid(out)
    if isinstance(task, RatingRegression):
      return jnp.clip(out, task.min_rating, task.max_rating)
    return out

  scores = np.asarray(score(state.params, state.model_state, pairs), np.float64)
  scores[known_items(exp, index)] = -np.inf
  order = np.argsort(-scores, kind="stable")[:top_n]
  order = order[np.isfinite(scores[order])]
  base = int(exp.dataset.metadata.get("id_base", 0))
  titles = exp.dataset.metadata.get("item_titles") or [""] * num_items
  return [{"rank": r + 1, "item": int(i) + base, "title": titles[i], "score": float(scores[i])}
          for r, i in enumerate(order)]


def popularity_comparison(exp: Any, state: Any) -> list[list[Any]]:
  """Rows (split, scorer, HR@k, NDCG@k): the checkpoint and the popularity baseline."""
  from research.errors import ConfigError
  from research.tasks.rating import ImplicitFeedback, popularity_baseline
  from research.training import batching, loop

  if not isinstance(exp.task, ImplicitFeedback):
    raise ConfigError("--popularity_baseline ranks leave-one-out candidates: it needs a run of "
                      f"task 'implicit' (e.g. experiments/ml100k_ncf.py), not "
                      f"{exp.config.task.name!r}.")
  k = exp.task.k
  names = (f"hit_rate_at_{k}", f"ndcg_at_{k}")
  held = ("validation", "test")
  evaluate = loop.Evaluator(exp, {s: batching.put_split(exp.dataset.splits[s], exp.mesh)
                                  for s in held})
  train = exp.dataset.splits["train"].inputs
  rows = []
  for split in held:
    model = evaluate(state, split)
    popular = popularity_baseline(train, exp.dataset.splits[split].inputs,
                                  int(exp.dataset.model_fields["num_items"]), k)
    rows.append([split, exp.config.model.name] + [model[n] for n in names])
    rows.append([split, "popularity"] + [popular[n] for n in names])
  return rows


def main() -> int:
  if not _WORKDIR.value:
    return report_error("--workdir missing: pass the workdir of a trained recommender.")
  if _USER.value is None and not _BASELINE.value:
    return report_error("--user missing: pass the id of the user to recommend for (e.g. "
                        "--user=196), or --popularity_baseline.")
  from research.report.table import markdown_table
  exp, state, step = load_run(_WORKDIR.value, _BEST.value)
  if _BASELINE.value:
    k = exp.task.k if hasattr(exp.task, "k") else 10
    rows = popularity_comparison(exp, state)
    print(f"\n{_WORKDIR.value} (step {step}) vs popularity:")
    print(markdown_table(["split", "scorer", f"HR@{k}", f"NDCG@{k}"], rows))
    return 0
  items = recommend(exp, state, _USER.value, _TOP_N.value)
  seen = len(known_items(exp, user_index(exp, _USER.value)))
  print(f"\nTop {len(items)} for user {_USER.value} ({_WORKDIR.value}, step {step}; "
        f"{seen} items rated in training left out):")
  print(markdown_table(["rank", "item", "title", "score"],
                       [[r["rank"], r["item"], r["title"], r["score"]] for r in items]))
  return 0


def run() -> None:
  run_command(main, "launch.recommend")


if __name__ == "__main__":
  run()
