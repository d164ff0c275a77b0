"""Text classification: tokenisers, the SST-2 / IMDB readers, the RNN and transformer
classifiers (masking), the experiments' tiny variants, and bad text inputs.

The real SST-2 files are read from ../shared/datasets/sst2 when present; IMDB exists here
only as TFDS mock data and fake `aclImdb` folders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds

from launch.overrides import load_config
from research import data, models
from research.data import imdb, sst2, text
from research.data.text_source import Texts
from research.errors import ConfigError, DataError
from research.training import batching, loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SST2_DIR = next((d for d in sst2.LOCAL_DIRS if os.path.isfile(os.path.join(d, "train.tsv"))),
                None)
needs_sst2 = pytest.mark.skipif(SST2_DIR is None, reason="SST-2 files not on this machine")
ENV = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "JAX_PLATFORMS": "cpu"}


def write_tsv(path, rows, header="label\tsentence", newline="\n") -> str:
  with open(path, "w", encoding="utf-8", newline="") as f:
    f.write(newline.join([header] + list(rows)) + newline)
  return str(path)


def fake_sst2(directory, num_train: int = 40, glue_layout: bool = False) -> str:
  """train.tsv / dev.tsv with distinct words per example, label first unless `glue_layout`."""
  os.makedirs(directory, exist_ok=True)
  for name, n in (("train.tsv", num_train), ("dev.tsv", 10)):
    rows = []
    for i in range(n):
      label, sentence = i % 2, f"{'good' if i % 2 else 'bad'} movie w{name[0]}{i} ."
      rows.append(f"{sentence}\t{label}" if glue_layout else f"{label}\t{sentence}")
    write_tsv(os.path.join(directory, name), rows,
              "sentence\tlabel" if glue_layout else "label\tsentence")
  return str(directory)


def load(**fields) -> data.Dataset:
  return data.load_dataset(ml_collections.ConfigDict(fields))


# ---------------------------------------------------------------------------------------------
# Tokenisers.


def test_word_vocabulary_is_capped_by_frequency_with_pad_and_unk_first():
  texts = ["The cat sat.", "the cat ran", "a dog sat", "don't zebra"]
  tok = text.WordTokenizer.build(texts, max_size=5)
  # the/cat/sat twice each; ties broken alphabetically, so 'cat' < 'sat' < 'the'.
  assert tok.vocab == ["<pad>", "<unk>", "cat", "sat", "the"]
  assert tok.encode("The zebra sat") == [4, text.UNK_ID, 3]
  assert text.WordTokenizer.split("it don't 's fine!") == ["it", "don't", "'s", "fine", "!"]
  assert tok.decode([4, 2, 0, 0]) == "the cat"


def test_char_tokenizer_and_case():
  tok = text.CharTokenizer.build(["abba", "Cab"], max_size=10, lowercase=False)
  assert tok.vocab[:2] == ["<pad>", "<unk>"] and set(tok.vocab[2:]) == {"a", "b", "C"}
  assert tok.encode("abz") == [tok.ids["a"], tok.ids["b"], text.UNK_ID]
  assert tok.decode(tok.encode("Cab")) == "Cab"


@pytest.mark.parametrize("kind", ["word", "char"])
def test_tokenizer_round_trips_through_json_metadata(kind):
  tok = text.build_tokenizer(kind, ["Some text, here.", "more TEXT"], 50)
  again = text.from_metadata(json.loads(json.dumps(tok.to_metadata())))
  assert again.encode("some new text") == tok.encode("some new text")


def test_subword_model_is_trained_once_then_read_from_the_cache(tmp_path, monkeypatch):
  corpus = [f"the movie number {i} was {'great' if i % 2 else 'awful'} indeed" for i in range(200)]
  tok = text.build_tokenizer("subword", corpus, 60, cache_dir=str(tmp_path), name="toy")
  cached = list((tmp_path / "sentencepiece").iterdir())
  assert len(cached) == 1 and cached[0].name.startswith("toy_60_")
  assert tok.processor.pad_id() == 0 and tok.processor.unk_id() == 1
  ids = tok.encode("the movie was great")
  assert ids and min(ids) >= 2 and tok.decode(ids) == "the movie was great"
  # A second build reads the cache: training again would fail here.
  import sentencepiece as spm
  monkeypatch.setattr(spm.SentencePieceTrainer, "Train", None)
  again = text.build_tokenizer("subword", corpus, 60, cache_dir=str(tmp_path), name="toy")
  assert again.model_proto == tok.model_proto
  restored = text.from_metadata(json.loads(json.dumps(tok.to_metadata())))
  assert restored.encode("an awful movie") == tok.encode("an awful movie")


def test_subword_sst2_caches_its_model_in_a_writable_data_dir_only(tmp_path, monkeypatch):
  data_dir = fake_sst2(tmp_path / "sst2")
  dataset = load(name="sst2", data_dir=data_dir, tokenizer="subword", vocab_size=40)
  assert len(os.listdir(os.path.join(data_dir, "sentencepiece"))) == 1
  assert dataset.metadata["tokenizer"]["kind"] == "subword"
  assert dataset.splits["train"].inputs.max() < dataset.model_fields["vocab_size"]
  # A read-only data dir (permission bits, which bind even root's intent) is left alone.
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  os.chmod(data_dir, 0o555)
  try:
    assert text.default_cache_dir(data_dir) == str(tmp_path / "cache" / "research")
  finally:
    os.chmod(data_dir, 0o755)


def test_corrupt_saved_or_cached_tokenizers(tmp_path):
  with pytest.raises(DataError, match=r"saved word tokenizer .* lacks .*'vocab'"):
    text.from_metadata({"kind": "word"})
  with pytest.raises(DataError, match=r"unknown tokenizer kind 'bpe'"):
    text.from_metadata({"kind": "bpe"})
  with pytest.raises(DataError, match=r"must start with '<pad>', '<unk>'"):
    text.from_metadata({"kind": "char", "vocab": ["a", "<pad>", "<unk>"]})
  # A corrupt cached sentencepiece model is retrained, not fatal.
  corpus = ["one two three four", "five six seven"] * 20
  text.build_tokenizer("subword", corpus, 30, cache_dir=str(tmp_path), name="c")
  (cached,) = (tmp_path / "sentencepiece").iterdir()
  cached.write_bytes(b"garbage")
  tok = text.build_tokenizer("subword", corpus, 30, cache_dir=str(tmp_path), name="c")
  assert tok.encode("one two") and cached.read_bytes() == tok.model_proto


def test_padded_length_from_a_train_percentile_and_truncation():
  assert text.choose_length([3, 5, 9, 30], max_length=256) == 32          # 30 -> multiple of 8
  assert text.choose_length([3, 5, 9, 30], max_length=20) == 20           # capped
  assert text.choose_length(list(range(1, 101)), 256, percentile=50) == 56  # 50.5 -> 51 -> 56
  ids = text.pad([[5, 6, 7], [], [1, 2, 3, 4, 5, 6]], 4)
  np.testing.assert_array_equal(ids, [[5, 6, 7, 0], [0, 0, 0, 0], [1, 2, 3, 4]])
  assert ids.dtype == np.int32


# ---------------------------------------------------------------------------------------------
# SST-2.


@needs_sst2
def test_real_sst2_splits_and_vocabulary():
  dataset = load(name="sst2", vocab_size=10000, length_percentile=90.0)
  sizes = {k: len(v) for k, v in dataset.splits.items()}
  # 67,349 train phrases, 10% held out (rounded up); test = the 872 official dev sentences.
  assert sizes == {"train": 60614, "validation": 6735, "test": 872}
  assert np.bincount(dataset.splits["test"].labels).tolist() == [428, 444]
  # Train is cut at its 90th length percentile (22 words -> 24); held-out texts stay whole.
  lengths = dataset.metadata["split_lengths"]
  assert lengths == {"train": 24, "validation": 56, "test": 56}
  assert dataset.metadata["max_length"] == 56
  for name, split in dataset.splits.items():
    assert split.inputs.shape[1] == lengths[name] and split.inputs.dtype == np.int32
  assert (dataset.splits["test"].inputs[:, 48:] != 0).any()  # the longest dev sentence, whole
  assert dataset.model_fields == {"vocab_size": 10000}
  tok = text.from_metadata(dataset.metadata["tokenizer"])
  assert tok.decode(dataset.splits["test"].inputs[0]) == "one long string of cliches ."
  assert dataset.metadata["label_names"] == ["negative", "positive"]


def test_glue_and_label_first_layouts_read_the_same(tmp_path):
  a = load(name="sst2", data_dir=fake_sst2(tmp_path / "a"))
  b = load(name="sst2", data_dir=fake_sst2(tmp_path / "b", glue_layout=True))
  for split in ("train", "validation", "test"):
    np.testing.assert_array_equal(a.splits[split].inputs, b.splits[split].inputs)
    np.testing.assert_array_equal(a.splits[split].labels, b.splits[split].labels)


def test_vocabulary_comes_from_train_without_the_validation_slice(tmp_path):
  dataset = load(name="sst2", data_dir=fake_sst2(tmp_path, num_train=40))
  tok = text.from_metadata(dataset.metadata["tokenizer"])
  val = dataset.splits["validation"].inputs
  assert len(val) == 4
  # Each phrase's own word (wt17, ...) is seen only there: unknown if the phrase is held out.
  assert (val[:, 2] == text.UNK_ID).all()
  assert (dataset.splits["train"].inputs[:, 2] != text.UNK_ID).all()
  assert len(tok.vocab) == 2 + 3 + 36 + 1  # pad unk; good bad movie; 36 words; '.'


def test_crlf_lines_and_trailing_blank_lines_are_accepted(tmp_path):
  path = write_tsv(tmp_path / "t.tsv", ["1\tgreat fun", "0\tdull", ""], newline="\r\n")
  parsed = sst2.read_tsv(path)
  assert parsed.texts == ["great fun", "dull"] and parsed.labels.tolist() == [1, 0]


@pytest.mark.parametrize("rows,header,pattern", [
    (["1\tfine", "0\ttoo\tmany"], "label\tsentence", r"line 3 has 3 tab-separated fields"),
    (["1\tfine", "just a sentence"], "label\tsentence", r"line 3 has 1 tab-separated fields"),
    (["2\tfine"], "label\tsentence", r"line 2 has label '2'.*0 \(negative\) or 1"),
    (["1\tfine"], "index\tsentence", r"header 'index\\tsentence'.*'label'"),
    ([], "label\tsentence", r"has a header but no examples"),
])
def test_malformed_tsv_is_a_data_error_naming_file_and_line(tmp_path, rows, header, pattern):
  path = write_tsv(tmp_path / "train.tsv", rows, header)
  with pytest.raises(DataError, match=pattern) as info:
    sst2.read_tsv(path)
  assert path in str(info.value)


def test_non_utf8_and_missing_files_are_named(tmp_path):
  (tmp_path / "train.tsv").write_bytes(b"label\tsentence\n1\tcaf\xe9\n")
  with pytest.raises(DataError, match=r"train.tsv line 2 is not UTF-8"):
    sst2.read_tsv(str(tmp_path / "train.tsv"))
  with pytest.raises(DataError, match=r"lacks dev.tsv .*SST-2.zip"):
    load(name="sst2", source="local", data_dir=str(tmp_path))


def test_sst2_through_tfds_mock_data(monkeypatch, tmp_path):
  monkeypatch.setattr(sst2, "LOCAL_DIRS", (str(tmp_path / "none"),))
  with tfds.testing.mock_data(num_examples=20):
    dataset = load(name="sst2", vocab_size=100)  # auto: no local files -> TFDS
  assert [len(dataset.splits[k]) for k in ("train", "validation", "test")] == [18, 2, 20]
  assert dataset.model_fields["vocab_size"] <= 100


# ---------------------------------------------------------------------------------------------
# IMDB.


def test_imdb_through_tfds_mock_data():
  with tfds.testing.mock_data(num_examples=30):
    dataset = load(name="imdb", tokenizer="char", max_length=40)
  assert [len(dataset.splits[k]) for k in ("train", "validation", "test")] == [27, 3, 30]
  assert dataset.splits["train"].inputs.shape[1] <= 40


def test_imdb_local_acl_folder_and_html_breaks(tmp_path):
  for split in ("train", "test"):
    for sub in ("neg", "pos"):
      os.makedirs(tmp_path / split / sub)
      for i in range(10):
        (tmp_path / split / sub / f"{i}_7.txt").write_text(f"A {sub} film.<br /><br />Ok {i}")
  dataset = load(name="imdb", source="local", data_dir=str(tmp_path), validation_fraction=0.2)
  assert [len(dataset.splits[k]) for k in ("train", "validation", "test")] == [16, 4, 20]
  assert "br" not in text.from_metadata(dataset.metadata["tokenizer"]).vocab
  assert imdb.clean("a<br />b<BR>c") == "a b c"
  with pytest.raises(DataError, match=r"test/neg does not exist .*aclImdb"):
    os.rename(tmp_path / "test" / "neg", tmp_path / "elsewhere")
    load(name="imdb", source="local", data_dir=str(tmp_path))


# ---------------------------------------------------------------------------------------------
# Config errors.


@pytest.mark.parametrize("fields,pattern", [
    (dict(max_length=0), r"dataset.max_length = 0 is invalid: it must be >= 1"),
    (dict(max_length=-5), r"dataset.max_length = -5"),
    (dict(tokenizer="words"), r"dataset.tokenizer.*'word'"),
    (dict(vocab_size=2), r"dataset.vocab_size = 2"),
    (dict(length_percentile=0.0), r"dataset.length_percentile"),
])
def test_bad_text_config_is_a_config_error(fields, pattern):
  with pytest.raises(ConfigError, match=pattern):
    load(name="sst2", **fields)


# ---------------------------------------------------------------------------------------------
# Models: shapes and masking.


def rnn(**kw):
  return models.RNNClassifier(**{**dict(num_outputs=3, vocab_size=20, embed_dim=8,
                                        hidden_size=8), **kw})


def transformer(**kw):
  return models.TransformerClassifier(**{**dict(num_outputs=3, vocab_size=20, d_model=16,
                                                num_heads=4, num_layers=2, mlp_dim=32,
                                                max_position=32), **kw})


MODELS = {
    "lstm": lambda: rnn(),
    "bigru_2layer": lambda: rnn(cell="gru", bidirectional=True, num_layers=2),
    "transformer_mean": lambda: transformer(),
    "transformer_cls": lambda: transformer(pooling="cls"),
}
# Right-padded ids: lengths 5, 1, 3 and an empty text.
SHORT = np.array([[3, 4, 5, 6, 7, 0, 0, 0], [9, 0, 0, 0, 0, 0, 0, 0],
                  [2, 19, 11, 0, 0, 0, 0, 0], [0] * 8], np.int32)


@pytest.mark.parametrize("name", list(MODELS))
def test_padding_does_not_change_the_output(name):
  model = MODELS[name]()
  longer = np.pad(SHORT, ((0, 0), (0, 8)))
  other = SHORT.copy()
  other[0, 0] = 8
  params = jax.jit(model.init)(jax.random.key(0), longer)
  table = [k for k in params["params"] if k in ("embed", "token_embed")][0]

  @jax.jit  # One compilation for every variant of the input.
  def outputs(params):
    changed = jax.tree.map(lambda x: x, params)
    changed["params"][table]["embedding"] = params["params"][table]["embedding"].at[0].set(7.0)
    unpadded = [model.apply(params, SHORT[i:i + 1, :n])[0] for i, n in enumerate((5, 1, 3))]
    return {"short": model.apply(params, SHORT), "longer": model.apply(params, longer),
            "pad_embedding_changed": model.apply(changed, SHORT),
            "unpadded": jnp.stack(unpadded), "other_token": model.apply(params, other)}

  out = outputs(params)
  a = out["short"]
  assert a.shape == (4, 3)
  np.testing.assert_allclose(out["longer"], a, atol=1e-5)
  # The <pad> embedding is never read: changing it changes nothing.
  np.testing.assert_allclose(out["pad_embedding_changed"], a, atol=1e-5)
  # Each text alone, without any padding, gives its row of the padded batch.
  np.testing.assert_allclose(out["unpadded"], a[:3], atol=1e-5)
  # The tokens do matter: another first token changes the first text's output.
  assert not np.allclose(out["other_token"][0], a[0], atol=1e-5)


def test_causal_block_ignores_later_tokens():
  block = models.TransformerBlock(num_heads=2, mlp_dim=16, causal=True)
  x = jax.random.normal(jax.random.key(1), (2, 6, 8))
  params = jax.jit(block.init)(jax.random.key(0), x)
  pair = jnp.stack([x, x.at[:, 4:].set(0.0)])  # the same but for the last two tokens
  both = jax.jit(jax.vmap(block.apply, in_axes=(None, 0)))(params, pair)
  np.testing.assert_allclose(both[0, :, :4], both[1, :, :4], atol=1e-5)


@pytest.mark.parametrize("name", ["bigru_2layer", "transformer_mean"])
def test_models_fit_a_small_batch(name):
  """40 Adam steps on 32 fixed padded sequences whose label is their first token's: the loss
  falls far below chance, so gradients flow through embedding, recurrence or attention."""
  rng = np.random.default_rng(0)
  x = rng.integers(2, 20, size=(32, 12)).astype(np.int32)
  x[:, 8:] = 0
  y = (x[:, 0] > 10).astype(np.int32)  # the label depends on the first token only
  model = MODELS[name]()
  params = jax.jit(model.init)(jax.random.key(0), x)
  tx = optax.adam(1e-2)

  @jax.jit
  def step(params, opt_state):
    def loss_fn(p):
      return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state = tx.init(params)
  losses = []
  for _ in range(40):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  assert losses[-1] < 0.3 * losses[0], losses[::8]


@pytest.mark.parametrize("make,pattern", [
    (lambda: rnn(cell="rnn"), r"config.model.cell = 'rnn'.*'lstm', 'gru'"),
    (lambda: rnn(num_layers=0), r"config.model.num_layers must be a positive integer"),
    (lambda: transformer(num_heads=5), r"d_model=16 is not divisible by .*num_heads=5"),
    (lambda: transformer(pooling="max"), r"config.model.pooling = 'max'"),
])
def test_bad_model_fields_are_config_errors(make, pattern):
  with pytest.raises(ConfigError, match=pattern):
    make()


def test_too_long_input_for_position_table_is_named():
  with pytest.raises(ConfigError, match=r"max_position=32"):
    transformer().init(jax.random.key(0), np.ones((1, 40), np.int32))


# ---------------------------------------------------------------------------------------------
# Experiments: tiny variants end to end; the vocabulary travels with the workdir.


def config_of(spec: str):
  return load_config(os.path.join(ROOT, "experiments", spec))


def train_losses(workdir: str) -> list[float]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r["loss"] for r in map(json.loads, f) if r["split"] == "train"]


@needs_sst2
def test_sst2_lstm_tiny_trains_and_its_workdir_classifies_new_text(tmp_path):
  config = config_of("sst2_lstm.py:tiny")
  workdir = str(tmp_path / "run")
  result = loop.train_and_evaluate(config, workdir)
  assert result["step"] == 12 and 0.0 <= result["test"]["accuracy"] <= 1.0
  assert len(train_losses(workdir)) == 2 and np.isfinite(train_losses(workdir)).all()
  # dataset.json alone turns new text into the model's inputs.
  with open(os.path.join(workdir, "dataset.json")) as f:
    meta = json.load(f)
  tok = text.from_metadata(meta["tokenizer"])
  ids = text.pad([tok.encode("a gripping , funny film .")], meta["max_length"])
  exp, state, _ = loop.restore_state(config, workdir)
  logits, _ = exp.task.apply(state.params, state.model_state, jnp.asarray(ids), None, False)
  assert logits.shape == (1, 1) and np.isfinite(np.asarray(logits)).all()


def test_sortish_length_order_covers_each_example_once_in_small_buckets():
  lengths = np.random.default_rng(0).integers(1, 41, 1000)
  order = batching.EpochOrder(1000, 16, seed=3, lengths=lengths, buckets=(8, 16, 40))
  steps = range(order.steps_per_epoch)
  epoch = np.concatenate([order.indices(s) for s in steps])
  assert len(epoch) == len(set(epoch)) == 62 * 16  # each kept example once
  buckets = [order.length(s) for s in steps]
  for s, bucket in zip(steps, buckets):
    longest = lengths[order.indices(s)].max()
    assert bucket == min(b for b in (8, 16, 40) if b >= longest)
  plain = batching.EpochOrder(1000, 16, seed=3)  # random batches nearly always need all 40
  unsorted = [min(b for b in (8, 16, 40) if b >= lengths[plain.indices(s)].max()) for s in steps]
  assert np.mean(buckets) < 0.75 * np.mean(unsorted)
  again = batching.EpochOrder(1000, 16, seed=3, lengths=lengths, buckets=(8, 16, 40))
  np.testing.assert_array_equal(again.window(1), order.window(1))  # pure in (seed, epoch)
  np.testing.assert_array_equal(order.window(0)[5], order.indices(5))
  assert order.chunk_length(0, 4) == max(buckets[:4]) and plain.chunk_length(0, 4) is None
  np.testing.assert_array_equal(batching.token_lengths(np.array([[5, 3, 0, 0], [0, 0, 0, 0],
                                                                 [4, 0, 2, 0]])), [2, 0, 3])


@needs_sst2
def test_a_batch_cut_to_its_bucket_gives_the_same_loss_and_gradients():
  config = config_of("sst2_lstm.py:tiny")
  exp = loop.build(config)
  split = exp.dataset.splits["train"]
  order = batching.length_order(split, 32, 0, 1, (8, 16))
  state = loop.init_state(exp)
  idx = order.indices(0)
  cut = order.length(0)
  assert cut < split.inputs.shape[1] and batching.token_lengths(split.inputs[idx]).max() <= cut

  def loss_and_grads(length):
    batch = {"inputs": jnp.asarray(split.inputs[idx, :length]),
             "labels": jnp.asarray(split.labels[idx]), "index": jnp.asarray(idx)}
    return jax.value_and_grad(lambda p: exp.task.loss_and_sums(
        p, state.model_state, batch, jax.random.key(0))[0])(state.params)

  (full, full_grads), (short, short_grads) = loss_and_grads(None), loss_and_grads(cut)
  np.testing.assert_allclose(short, full, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(short_grads), jax.tree.leaves(full_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@needs_sst2
def test_length_buckets_train_and_bad_ones_are_named(tmp_path):
  config = config_of("sst2_lstm.py:tiny")
  config.train.length_buckets = (8, 16)
  result = loop.train_and_evaluate(config, str(tmp_path / "run"), test=False)
  assert result["step"] == 12 and np.isfinite(train_losses(str(tmp_path / "run"))).all()
  config.train.length_buckets = (0, 16)
  with pytest.raises(ConfigError, match="must be positive integer lengths"):
    loop.build(config)
  digits = load_config(os.path.join(ROOT, "experiments/digits_cnn.py:tiny"))
  digits.train.length_buckets = (8,)
  with pytest.raises(ConfigError, match="buckets token sequences, but digits's inputs"):
    loop.build(digits)


def test_sst2_transformer_tiny_trains_on_sst2_files(tmp_path):
  config = config_of("sst2_transformer.py:cls,tiny")
  config.dataset.data_dir = fake_sst2(tmp_path / "sst2", num_train=400)
  config.dataset.num_examples = 0
  result = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert result["step"] == 12 and len(result["test"]["confusion_matrix"]) == 2


@pytest.mark.parametrize("spec,model", [
    ("sst2_lstm.py:bidirectional,gru,tiny", "rnn_classifier"),
    ("imdb_lstm.py:tiny", "rnn_classifier"),
    ("imdb_transformer.py:tiny", "transformer_classifier"),
])
def test_other_variants_build(spec, model, tmp_path):
  config = config_of(spec)
  config.dataset.update(source="tfds", num_examples=0)
  with tfds.testing.mock_data(num_examples=80):
    exp = loop.build(config)
  assert exp.config.model.name == model and exp.total_steps == 12
  assert exp.task.model.vocab_size == exp.dataset.model_fields["vocab_size"]


def test_full_recipes_have_the_published_shapes():
  lstm = config_of("sst2_lstm.py")
  assert (lstm.model.embed_dim, lstm.model.hidden_size, lstm.optimizer.learning_rate) == (
      100, 128, 1e-3)
  assert config_of("sst2_lstm.py:bidirectional").model.bidirectional
  tr = config_of("sst2_transformer.py")
  assert (tr.model.d_model, tr.model.num_heads, tr.model.num_layers, tr.dataset.vocab_size,
          tr.train.batch_size, tr.optimizer.learning_rate) == (512, 8, 3, 10000, 32, 1e-3)
  with pytest.raises(ConfigError, match=r"unknown variant\(s\) \['bidirectionl'\]"):
    config_of("sst2_lstm.py:bidirectionl")


# ---------------------------------------------------------------------------------------------
# The launcher: bad text input is one error line, exit code 2, no workdir.


def test_launcher_rejects_bad_text_inputs(tmp_path):
  bad_dir = fake_sst2(tmp_path / "bad")
  with open(os.path.join(bad_dir, "dev.tsv"), "a") as f:
    f.write("1\tone\ttoo many\n")
  cases = {
      "length": (["--config.dataset.max_length=0"], "dataset.max_length = 0"),
      "tsv": ([f"--config.dataset.data_dir={bad_dir}"], "dev.tsv line 12 has 3"),
  }

  def run(args):
    return subprocess.run(
        [sys.executable, "-m", "launch.main", "--config=experiments/sst2_lstm.py:tiny",
         f"--workdir={tmp_path / 'wd'}", *args], cwd=ROOT, env=ENV, capture_output=True,
        text=True, timeout=300)

  with ThreadPoolExecutor(len(cases)) as pool:
    procs = {k: pool.submit(run, args) for k, (args, _) in cases.items()}
  for key, (_, needle) in cases.items():
    proc = procs[key].result()
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
  assert not (tmp_path / "wd").exists()
