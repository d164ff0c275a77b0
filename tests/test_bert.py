"""BERT-style masked-LM pretraining and fine-tuning: masking, loss, the <mask> token, transfer."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from launch.overrides import load_config
from research import tasks
from research.data import text
from research.errors import ConfigError
from research.models import build_model
from research.tasks import masked_lm
from research.training import loop, transfer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 1000
WORDS = ["good", "bad", "movie", "film", "plot", "great", "dull", "fun", "slow", "actors",
         "story", "the", "a", "is", "was", "not", "very", "and", "but", "."]


def _ids(batch: int = 256, length: int = 48, seed: int = 0) -> np.ndarray:
  """Token ids >= 3 with a random amount of right padding per row (some rows all padding)."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(masked_lm.FIRST_RANDOM_ID, VOCAB, size=(batch, length), dtype=np.int32)
  lengths = rng.integers(0, length + 1, size=batch)
  ids[np.arange(length)[None, :] >= lengths[:, None]] = text.PAD_ID
  return ids


# ---------------------------------------------------------------------------------------------
# Masking and the masked-token loss.


def test_masking_follows_bert_statistics_and_never_touches_padding():
  ids = _ids()
  mask = jax.jit(masked_lm.mask_tokens, static_argnums=2)
  out = jax.device_get(mask(jax.random.key(3), jnp.asarray(ids), VOCAB))
  real = ids != text.PAD_ID
  selected = out.selected
  assert not selected[~real].any()
  np.testing.assert_array_equal(out.inputs[~selected], ids[~selected])
  np.testing.assert_array_equal(out.targets, ids)
  n = real.sum()  # about 6,000 real tokens: the binomial std of the rate is about 0.005
  assert abs(selected.sum() / n - 0.15) < 0.02
  chosen_in, chosen_orig = out.inputs[selected], ids[selected]
  to_mask = np.mean(chosen_in == text.MASK_ID)
  kept = np.mean(chosen_in == chosen_orig)
  randomised = np.mean((chosen_in != text.MASK_ID) & (chosen_in != chosen_orig))
  assert abs(to_mask - 0.8) < 0.04 and abs(kept - 0.1) < 0.03 and abs(randomised - 0.1) < 0.03
  assert (chosen_in[chosen_in != text.MASK_ID] >= masked_lm.FIRST_RANDOM_ID).all()
  again = jax.device_get(mask(jax.random.key(3), jnp.asarray(ids), VOCAB))
  other = jax.device_get(mask(jax.random.key(4), jnp.asarray(ids), VOCAB))
  np.testing.assert_array_equal(again.inputs, out.inputs)
  np.testing.assert_array_equal(again.selected, out.selected)
  assert (other.selected != out.selected).any()


def _task(**task_fields) -> tasks.Task:
  config = load_config(os.path.join(ROOT, "experiments", "sst2_bert.py:tiny"))
  config.task.update(task_fields)
  config.model.dropout_rate = 0.0
  model = build_model(config.model, 2, data_fields={"vocab_size": VOCAB})
  return tasks.build_task(config, model, 2)


def _log_softmax(x: np.ndarray) -> np.ndarray:
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_loss_counts_masked_positions_only_against_a_numpy_reference():
  """Uncapped (logits everywhere) and capped (logits at the selected positions only)."""
  model = _task().model
  ids = jnp.asarray(_ids(batch=8, length=16))
  variables = jax.jit(model.init)(jax.random.key(0), ids)
  apply = jax.jit(model.apply)
  rng = jax.random.key(7)
  for cap in (0, 3):
    task = _task(max_predictions=cap)
    loss, (sums, _) = jax.jit(task.loss_and_sums)(variables["params"], {}, {"inputs": ids}, rng)
    masking = jax.device_get(task.mask(jax.random.fold_in(rng, masked_lm.MASK_STREAM), ids, cap))
    assert masking.selected.sum(-1).max() == (cap or masking.selected.sum(-1).max())
    logits = np.asarray(apply(variables, jnp.asarray(masking.inputs)), np.float64)
    assert logits.shape == (8, 16, VOCAB)
    nll = -np.take_along_axis(_log_softmax(logits), masking.targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(float(loss), nll[masking.selected].mean(), rtol=1e-5)
    assert float(sums["count"]) == masking.selected.sum() > 0
    np.testing.assert_allclose(float(sums["accuracy"]),
                               (logits.argmax(-1) == masking.targets)[masking.selected].sum())


def test_evaluation_masks_depend_on_the_example_index_not_the_batch():
  task = _task()
  ids = jnp.asarray(_ids(batch=6, length=16))
  eval_mask = jax.jit(task.eval_mask)
  whole = jax.device_get(eval_mask({"inputs": ids, "index": jnp.arange(6)}))
  part = jax.device_get(eval_mask({"inputs": ids[3:], "index": jnp.arange(3, 6)}))
  for field in ("inputs", "selected"):
    np.testing.assert_array_equal(getattr(whole, field)[3:], getattr(part, field))
  assert whole.selected.any()
  shifted = jax.device_get(eval_mask({"inputs": ids[3:], "index": jnp.arange(3)}))
  assert (shifted.selected != part.selected).any()  # the index, not the row, picks the mask


def test_metrics_pool_tokens_over_examples():
  task = _task()
  outputs = {"loss_sum": np.array([2.0, 0.0, 6.0]), "masked": np.array([1.0, 0.0, 3.0]),
             "correct": np.array([1.0, 0.0, 1.0])}
  metrics = task.metrics(outputs, np.zeros(3))
  assert metrics["loss"] == 2.0 and metrics["accuracy"] == 0.5 and metrics["masked_tokens"] == 4
  np.testing.assert_allclose(metrics["perplexity"], np.exp(2.0))


@pytest.mark.parametrize("fields, pattern", [
    (dict(mask_rate=1.5), r"config\.task\.mask_rate must be a number in \[0, 1\]"),
    (dict(mask_rate=0.0), r"config\.task\.mask_rate must be > 0"),
    (dict(mask_fraction=0.95), r"mask_fraction \+ random_fraction = 1\.05 > 1"),
    (dict(max_predictions=-1), r"config\.task\.max_predictions must be an integer >= 0"),
])
def test_bad_masking_settings_are_config_errors(fields, pattern):
  with pytest.raises(ConfigError, match=pattern):
    _task(**fields)


def test_masked_lm_needs_the_mask_token_in_the_vocabulary():
  config = load_config(os.path.join(ROOT, "experiments", "sst2_bert.py:tiny"))
  config.dataset.mask_token = False
  model = build_model(config.model, 2, data_fields={"vocab_size": VOCAB})
  with pytest.raises(ConfigError, match=r"set config\.dataset\.mask_token=True"):
    tasks.build_task(config, model, 2)


# ---------------------------------------------------------------------------------------------
# The <mask> token in the tokenisers.


@pytest.mark.parametrize("kind", ["word", "char"])
def test_mask_token_is_reserved_after_pad_and_unk(kind):
  texts = ["a good movie <mask>", "a bad movie"]
  tokenizer = text.build_tokenizer(kind, texts, 20, specials=(text.MASK,))
  assert tokenizer.vocab[:3] == [text.PAD, text.UNK, text.MASK] and len(tokenizer.vocab) <= 20
  assert text.MASK_ID not in tokenizer.encode("<mask> a good movie")  # text never makes it
  plain = text.build_tokenizer(kind, texts, 20)
  assert text.MASK not in plain.vocab  # unchanged unless asked
  again = text.from_metadata(tokenizer.to_metadata())
  assert again.vocab == tokenizer.vocab


def test_subword_mask_piece_has_id_2(tmp_path):
  texts = [f"{w} {v} {u}" for w in WORDS for v in WORDS[:6] for u in WORDS[5:9]]
  tokenizer = text.build_tokenizer("subword", texts, 60, cache_dir=str(tmp_path),
                                   specials=(text.MASK,))
  assert tokenizer.processor.PieceToId(text.MASK) == text.MASK_ID
  assert text.MASK_ID not in tokenizer.encode("<mask> good movie")


# ---------------------------------------------------------------------------------------------
# Pretraining -> fine-tuning through init_from.


def _fake_sst2(directory) -> str:
  rng = np.random.default_rng(0)
  os.makedirs(directory, exist_ok=True)
  for name, n in (("train.tsv", 400), ("dev.tsv", 40)):
    rows = [f"{i % 2}\t{' '.join(rng.choice(WORDS, size=rng.integers(3, 12)))}" for i in range(n)]
    with open(os.path.join(directory, name), "w") as f:
      f.write("\n".join(["label\tsentence"] + rows) + "\n")
  return str(directory)


def _config(name: str, variant: str, data_dir: str) -> ml_collections.ConfigDict:
  config = load_config(os.path.join(ROOT, "experiments", f"{name}.py:{variant}"))
  config.dataset.update(data_dir=data_dir, source="local", num_examples=0)
  config.train.update(num_steps=3, eval_every_steps=3, log_every_steps=3, batch_size=16)
  return config


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  """A tiny pretraining run on fake SST-2 text: (data dir, workdir, its saved parameters)."""
  data_dir = _fake_sst2(tmp_path_factory.mktemp("sst2"))
  workdir = str(tmp_path_factory.mktemp("pretrain"))
  result = loop.train_and_evaluate(_config("sst2_bert", "tiny", data_dir), workdir,
                                   test=False)
  assert np.isfinite(result["validation"]["loss"]) and result["validation"]["masked_tokens"] > 0
  # The task contract (tests/test_tasks.py checks it for the simpler tasks): every metric name
  # it declares for early stopping / best checkpoints is one it reports.
  from research.tasks.masked_lm import MaskedLanguageModel
  assert set(MaskedLanguageModel.metric_names(None)) <= set(result["validation"])
  saved, _ = transfer.read_checkpoint_tree(workdir, "best")
  return data_dir, workdir, jax.device_get(saved["params"])


def _flat(tree) -> dict[str, np.ndarray]:
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  return {transfer.path_name(p): np.asarray(v) for p, v in leaves}


def test_init_from_carries_exactly_the_trunk_and_leaves_a_fresh_head(pretrained):
  data_dir, workdir, source = pretrained
  config = _config("sst2_bert_finetune", "tiny", data_dir)
  config.init_from.workdir = workdir
  exp = loop.build(config)
  fresh = loop.init_state(exp)
  fresh_params = _flat(jax.device_get(fresh.params))
  state, loaded = transfer.initialise_from(fresh, config, exp.tx)
  params, saved = _flat(jax.device_get(state.params)), _flat(source)
  trunk = sorted(p for p in saved if not p.startswith("mlm_head/"))
  assert sorted(loaded[1:]) == trunk == sorted(p for p in params if not p.startswith("head/"))
  for path in trunk:
    np.testing.assert_array_equal(params[path], saved[path])
  for path in ("head/kernel", "head/bias"):
    np.testing.assert_array_equal(params[path], fresh_params[path])


def test_frozen_fine_tuning_trains_only_the_head(pretrained, tmp_path):
  data_dir, workdir, source = pretrained
  config = _config("sst2_bert_finetune", "frozen,tiny", data_dir)
  config.init_from.workdir = workdir
  result = loop.train_and_evaluate(config, str(tmp_path / "finetune"), test=False)
  assert 0.0 <= result["validation"]["accuracy"] <= 1.0
  trained, _ = transfer.read_checkpoint_tree(str(tmp_path / "finetune"), "latest")
  params, saved = _flat(trained["params"]), _flat(source)
  for path in params:
    if not path.startswith("head/"):
      np.testing.assert_array_equal(params[path], saved[path])
  fresh = _flat(jax.device_get(loop.init_state(loop.build(config)).params))
  assert not np.allclose(params["head/kernel"], fresh["head/kernel"])  # the head trained


@pytest.mark.parametrize("change, detail", [
    (dict(vocab_size=10), r"word tokenizer, 10 tokens"),
    (dict(mask_token=False), r"they first differ at token id 2"),
])
def test_fine_tuning_on_another_vocabulary_is_refused(pretrained, change, detail):
  data_dir, workdir, _ = pretrained
  config = _config("sst2_bert_finetune", "tiny", data_dir)
  config.init_from.workdir = workdir
  config.dataset.update(change)
  with pytest.raises(ConfigError, match=r"init_from\.workdir=.* was trained on another "
                                        r"vocabulary .*" + detail):
    loop.build(config)


def test_recipes_share_data_and_trunk():
  for size in ("", "cpu", "tiny"):
    pre = load_config(os.path.join(ROOT, "experiments", f"sst2_bert.py:{size}"))
    fine = load_config(os.path.join(ROOT, "experiments", f"sst2_bert_finetune.py:{size}"))
    assert pre.dataset.to_dict() == fine.dataset.to_dict() and fine.dataset.mask_token
    assert {**pre.model.to_dict(), "name": ""} == {**fine.model.to_dict(), "name": ""}
    suffix = f".{size}" if size else ""
    assert fine.init_from.workdir == f"runs/reproduce/sst2_bert{suffix}/seed_0"
  scratch = load_config(os.path.join(ROOT, "experiments", "sst2_bert_finetune.py:scratch"))
  assert scratch.init_from.workdir == "" and not scratch.init_from.exclude
  cpu_scratch = load_config(os.path.join(ROOT, "experiments", "sst2_bert_finetune.py:cpu+scratch"))
  assert cpu_scratch.init_from.workdir == "" and cpu_scratch.train.num_steps == 1500
