"""Character-level GPT: Tiny Shakespeare reader, GPT model and KV cache, LM task, sampling.

Everything runs on tiny sizes: a 2-layer, 32-wide GPT and a few kilobytes of text written
to a temporary directory (the real file is used only where it is present, for its split
sizes), so the file stays fast and offline.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds

from launch.overrides import load_config
from research import generate
from research.data import load_dataset, shakespeare
from research.errors import CheckpointError, ConfigError, DataError
from research.models import GPT, build_model
from research.tasks import build_task
from research.training import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_FILE = os.path.join(shakespeare.LOCAL_DIRS[0], shakespeare.FILE_NAME)
LINES = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
         "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than "
         "to famish?\n\nAll:\nResolved. resolved.\n\n")
TEXT = LINES * 40  # 7,000 characters, 34 distinct


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory) -> str:
  d = tmp_path_factory.mktemp("shakespeare")
  (d / "input.txt").write_text(TEXT, encoding="utf-8")
  return str(d)


def _dataset(data_dir: str, **fields):
  return load_dataset({"name": "tiny_shakespeare", "data_dir": data_dir, "block_size": 16,
                       **fields})


def _model(vocab: int = 11, block: int = 16, **fields) -> GPT:
  fields = {"num_layers": 2, "num_heads": 2, "width": 16, **fields}
  return GPT(num_outputs=vocab, vocab_size=vocab, block_size=block, **fields)


def _tokens(shape, vocab: int = 11, seed: int = 0) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).integers(0, vocab, shape), jnp.int32)


# -- data -------------------------------------------------------------------------------


def test_windows_are_shifted_by_one_and_splits_follow_nanogpt(text_dir):
  ds = _dataset(text_dir, stride=4)
  vocab = ds.metadata["vocab"]
  assert vocab == sorted(set(TEXT)) and ds.num_classes == len(vocab)
  assert ds.model_fields == {"vocab_size": len(vocab), "block_size": 16}
  # nanoGPT's split: the first 90% train, the last 10% held out (validation = test).
  n = len(TEXT)
  train_end = int(n * 0.9)
  bounds = {"train": (0, train_end), "validation": (train_end, n), "test": (train_end, n)}
  codec = shakespeare.Codec.from_metadata(ds.metadata)
  for name, split in ds.splits.items():
    assert split.inputs.dtype == np.int32 and split.inputs.shape[1:] == (16,)
    np.testing.assert_array_equal(split.inputs[:, 1:], split.labels[:, :-1])
    start, end = bounds[name]
    stride = 4 if name == "train" else 16  # held-out windows do not overlap
    assert len(split) == (end - start - 17) // stride + 1
    first = codec.decode(np.append(split.inputs[0], split.labels[0, -1]))
    assert first == TEXT[start:start + 17]
    second = codec.decode(split.inputs[1])
    assert second == TEXT[start + stride:start + stride + 16]


@pytest.mark.skipif(not os.path.isfile(REAL_FILE), reason="real Tiny Shakespeare not here")
def test_real_text_sizes():
  ds = load_dataset({"name": "tiny_shakespeare", "block_size": 256})
  assert len(ds.metadata["vocab"]) == 65
  # 1,115,394 characters: 1,003,854 train, 111,540 held out.
  assert [len(ds.splits[s]) for s in ("train", "validation", "test")] == [
      (1003854 - 257) // 256 + 1, 435, 435]
  np.testing.assert_array_equal(ds.splits["validation"].labels, ds.splits["test"].labels)


def test_byte_dataset_has_fixed_vocabulary(text_dir):
  ds = load_dataset({"name": "tiny_shakespeare_bytes", "data_dir": text_dir, "block_size": 16})
  assert ds.num_classes == 256 and ds.metadata["tokenizer"] == "byte"
  codec = shakespeare.Codec.from_metadata(ds.metadata)
  assert codec.decode(ds.splits["train"].inputs[0]) == TEXT[:16]


def test_tfds_source_joins_validation_and_test_into_the_held_out_tail():
  with tfds.testing.mock_data(num_examples=1):
    ds = load_dataset({"name": "tiny_shakespeare", "source": "tfds", "block_size": 4})
    texts = {s: shakespeare._as_str(tfds.data_source("tiny_shakespeare", split=s,
                                                     download=False)[0]["text"])
             for s in ("train", "validation", "test")}
  codec = shakespeare.Codec.from_metadata(ds.metadata)
  assert codec.decode(ds.splits["train"].inputs[0]) == texts["train"][:4]
  held_out = codec.decode(ds.splits["test"].inputs[:, 0])  # every 4th character
  assert held_out == (texts["validation"] + texts["test"])[:-4:4]
  assert ds.num_classes == len(ds.metadata["vocab"])


@pytest.mark.parametrize("content, pattern", [
    (b"\xff\xfe not text", "not UTF-8"),
    (b"abc\x00def" * 10, "NUL bytes"),
    (b"short", "too few for one example of dataset.block_size"),
])
def test_bad_files_are_named(tmp_path, content, pattern):
  (tmp_path / "input.txt").write_bytes(content)
  with pytest.raises(DataError, match=pattern):
    _dataset(str(tmp_path))


def test_missing_file_names_directory_and_how_to_get_it(tmp_path):
  with pytest.raises(DataError, match=rf"no input.txt in {tmp_path}.*char-rnn"):
    _dataset(str(tmp_path), source="local")


@pytest.mark.parametrize("fields, pattern", [
    ({"block_size": 0}, "dataset.block_size"), ({"stride": -1}, "dataset.stride")])
def test_bad_window_fields_are_config_errors(text_dir, fields, pattern):
  with pytest.raises(ConfigError, match=pattern):
    _dataset(text_dir, **fields)


def test_codec_round_trip_and_unknown_characters():
  codec = shakespeare.Codec("char", tuple("\n abc"))
  np.testing.assert_array_equal(codec.encode("cab\n"), [4, 2, 3, 0])
  assert codec.decode(codec.encode("a b\nc")) == "a b\nc"
  with pytest.raises(DataError, match=r"--prompt has 2 character\(s\) outside.*'x', 'é'"):
    codec.encode("abxé", "--prompt")
  assert shakespeare.Codec.from_metadata(codec.metadata()) == codec
  with pytest.raises(DataError, match="does not describe a vocabulary"):
    shakespeare.Codec.from_metadata({"tokenizer": "char", "vocab": ["ab"]})


# -- model ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
  """A 2-layer GPT with biases, its parameters, and its compiled forward pass (made once)."""
  model = _model(use_bias=True)
  # 'rbg' keys: XLA:CPU compiles their random initialisers several times faster.
  params = jax.jit(model.init)(jax.random.key(0, impl="rbg"), _tokens((1, 16)))["params"]
  return model, params, jax.jit(lambda t: model.apply({"params": params}, t))


def test_kv_cache_decoding_matches_the_full_forward_pass(small):
  model, params, forward = small
  x = _tokens((3, 12))
  step = jax.jit(lambda cache, t: model.apply({"params": params, "cache": cache}, t,
                                              decode=True, mutable=["cache"]))
  logits, variables = step(model.init_cache(3), x[:, :5])  # prompt in one call
  pieces = [logits]
  for i in range(5, 12):  # then one token at a time
    logits, variables = step(variables["cache"], x[:, i:i + 1])
    pieces.append(logits)
  np.testing.assert_allclose(jnp.concatenate(pieces, 1), forward(x), atol=1e-5, rtol=0)


def test_attention_is_causal_and_outputs_are_per_token(small):
  _, _, forward = small
  x = _tokens((3, 12), seed=1)
  y = forward(x)
  assert y.shape == (3, 12, 11) and y.dtype == jnp.float32
  y2 = forward(x.at[:, 6].set((x[:, 6] + 1) % 11))
  np.testing.assert_allclose(y[:, :6], y2[:, :6], atol=1e-6)
  assert not np.allclose(y[:, 6:], y2[:, 6:])


def test_parameter_counts_match_gpt2_and_nanogpt():
  count = lambda model, length: sum(
      int(np.prod(p.shape)) for p in jax.tree.leaves(jax.eval_shape(
          model.init, jax.random.key(0), jnp.zeros((1, length), jnp.int32))["params"]))
  # GPT-2 small as published (Hugging Face `gpt2`: 124,439,808 with tied embeddings).
  gpt2 = GPT(num_outputs=50257, vocab_size=50257, block_size=1024, num_layers=12,
             num_heads=12, width=768, use_bias=True)
  assert count(gpt2, 8) == 124_439_808
  # nanoGPT's baby GPT prints "number of parameters: 10.65M" (position embeddings excluded).
  baby = GPT(num_outputs=65, vocab_size=65, block_size=256)
  assert round((count(baby, 8) - 256 * 384) / 1e6, 2) == 10.65


def test_bfloat16_computes_in_bf16_with_float32_params():
  model = _model(dtype=jnp.bfloat16)
  x = _tokens((2, 8))
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  assert {p.dtype for p in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
  assert jax.eval_shape(lambda: model.apply(jax.tree.map(jnp.zeros_like, shapes), x)
                        ).dtype == jnp.bfloat16


@pytest.mark.parametrize("fields, pattern", [
    ({"width": 10, "num_heads": 4}, "not divisible by config.model.num_heads"),
    ({"num_layers": 0}, "config.model.num_layers must be a positive integer"),
    ({"dropout_rate": 1.0}, "dropout_rate"),
])
def test_bad_model_fields_are_config_errors(fields, pattern):
  with pytest.raises(ConfigError, match=pattern):
    _model(**fields)


def test_tied_output_must_be_the_vocabulary():
  config = ml_collections.ConfigDict({"name": "gpt", "num_layers": 1, "num_heads": 1, "width": 8})
  with pytest.raises(ConfigError, match="task.name='language_model'"):
    build_model(config, 3, data_fields={"vocab_size": 11, "block_size": 8})


def test_sequence_longer_than_block_size_is_refused():
  with pytest.raises(ConfigError, match="more than its block_size of 16"):
    jax.eval_shape(_model().init, jax.random.key(0), _tokens((1, 17)))


# -- task -------------------------------------------------------------------------------


def test_language_model_loss_and_metrics_match_hand_computation(small):
  model, params, forward = small
  config = load_config(os.path.join(ROOT, "experiments", "shakespeare_char_gpt.py:tiny"))
  task = build_task(config, model, 11)
  x, y = _tokens((3, 12), seed=1), _tokens((3, 12), seed=2)
  logits = np.asarray(forward(x), np.float64)
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(log_probs, np.asarray(y)[..., None], -1)[..., 0]
  batch = {"inputs": x, "labels": y}
  # `small` has no dropout, so the training loss is the evaluation loss.
  loss, (sums, _) = jax.jit(task.loss_and_sums)(params, None, batch, jax.random.key(0))
  assert sums["count"] == 36  # per token
  np.testing.assert_allclose(sums["loss"], nll.sum(), rtol=1e-5)
  np.testing.assert_allclose(loss, nll.mean(), rtol=1e-5)
  outputs = jax.device_get(jax.jit(task.outputs)(params, None, batch))
  np.testing.assert_allclose(outputs["loss"], nll.mean(-1), rtol=1e-5)
  metrics = task.metrics(outputs, np.asarray(y))
  np.testing.assert_allclose(metrics["loss"], nll.mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics["perplexity"], np.exp(nll.mean()), rtol=1e-5)
  np.testing.assert_allclose(metrics["bits_per_char"], nll.mean() / math.log(2), rtol=1e-5)
  correct = logits.argmax(-1) == np.asarray(y)
  np.testing.assert_allclose(metrics["accuracy"], correct.mean(), rtol=1e-6)
  assert set(task.metric_names()) <= set(metrics)


# -- sampling ---------------------------------------------------------------------------


def test_filter_logits_keeps_top_k_and_the_nucleus():
  logits = jnp.log(jnp.array([[0.5, 0.05, 0.25, 0.2]]))
  filter_logits = jax.jit(generate.filter_logits)  # one compilation for every setting
  keep = lambda k, p: np.isfinite(np.asarray(filter_logits(logits, k, p)))[0].tolist()
  assert keep(2, 1.0) == [True, False, True, False]
  assert keep(9, 1.0) == keep(0, 1.0) == [True] * 4
  # Nucleus 0.7: 0.5 + 0.25 reaches it, so 0.2 and 0.05 go.
  assert keep(0, 0.7) == [True, False, True, False]
  assert keep(0, 0.76) == [True, False, True, True]
  assert keep(0, 0.1) == [True, False, False, False]
  # Top-k first, then the nucleus of the renormalised rest: 0.5, 0.25 are 0.79 of the top 3.
  assert keep(3, 0.76) == [True, False, True, False]
  assert keep(3, 0.8) == [True, False, True, True]


def test_greedy_generation_equals_rerunning_the_full_sequence(small):
  model, params, forward = small
  prompt = np.asarray(_tokens((3, 3), seed=3))
  out = generate.generate(model, params, prompt, jax.random.key(0), 9, temperature=0)
  # The slow way: the whole sequence again for every token (padded to one compiled length;
  # causal attention makes the padding invisible to earlier positions).
  seq = np.zeros((3, 12), np.int32)
  seq[:, :3] = prompt
  for t in range(3, 12):
    seq[:, t] = np.asarray(forward(jnp.asarray(seq)))[:, t - 1].argmax(-1)
  np.testing.assert_array_equal(out, seq[:, 3:])


def test_sampling_is_seeded_and_returns_vocabulary_tokens(small):
  model, params, _ = small
  prompt = np.asarray(_tokens((3, 3), seed=4))
  draw = lambda seed, **kw: generate.generate(model, params, prompt, jax.random.key(seed), 9,
                                              **{"temperature": 1.5, **kw})
  a = draw(0)
  assert a.shape == (3, 9) and a.dtype == np.int32 and ((a >= 0) & (a < 11)).all()
  np.testing.assert_array_equal(a, draw(0))
  assert not np.array_equal(a, draw(1))
  # top-k 1 and a tiny nucleus are greedy decoding, whatever the temperature.
  greedy = draw(0, temperature=0)
  np.testing.assert_array_equal(draw(2, top_k=1), greedy)
  np.testing.assert_array_equal(draw(3, top_p=1e-6), greedy)


# -- end to end: train the tiny recipe, then sample from its workdir --------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, text_dir):
  config = load_config(os.path.join(ROOT, "experiments", "shakespeare_char_gpt.py:tiny"))
  config.dataset.data_dir = text_dir
  config.dataset.num_examples = 0  # the test text has fewer windows than the real one
  config.optimizer.learning_rate = 1e-2
  # One layer, no dropout: a third of the compile time (dropout is tested in test_models).
  config.model.update(num_layers=1, dropout_rate=0.0)
  workdir = str(tmp_path_factory.mktemp("run"))
  result = loop.train_and_evaluate(config, workdir)
  return workdir, result


def test_tiny_recipe_trains_and_saves_its_vocabulary(trained):
  workdir, result = trained
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    train = [r for r in map(json.loads, f) if r["split"] == "train"]
  assert [r["step"] for r in train] == [10, 20]
  vocab = len(set(TEXT))
  assert train[0]["loss"] < math.log(vocab) and train[1]["loss"] < train[0]["loss"]
  assert result["test"]["loss"] < math.log(vocab)
  with open(os.path.join(workdir, "dataset.json")) as f:
    assert json.load(f)["vocab"] == sorted(set(TEXT))


def test_sample_from_workdir(trained):
  workdir, _ = trained
  prompt = "First Citizen:\n"  # 15 characters
  draw = lambda **kw: generate.sample_workdir(workdir, prompt, num_samples=3, **kw)
  samples = draw(max_new_tokens=17, seed=4)
  assert len(samples) == 3 and all(len(s) == 17 and set(s) <= set(TEXT) for s in samples)
  assert len(set(samples)) > 1
  # Same seed, same samples; max_new_tokens 0 fills the context (block_size 32 - 15).
  assert samples == draw(max_new_tokens=0, seed=4)
  greedy = draw(max_new_tokens=17, temperature=0.0)
  assert greedy[0] == greedy[1] == greedy[2]


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"prompt": "Zounds!"}, DataError, r"--prompt 'Zounds!' has 2 character\(s\).*'!', 'Z'"),
    ({"prompt": ""}, ConfigError, "--prompt is empty"),
    ({"prompt": "All", "max_new_tokens": 30}, ConfigError,
     "--max_new_tokens=30 with a prompt of 3 tokens makes 33 tokens, beyond the model's "
     "context of 32"),
    ({"prompt": "All", "top_p": 0.0}, ConfigError, "--top_p"),
    ({"prompt": "All", "temperature": -1.0}, ConfigError, "--temperature"),
])
def test_bad_sampling_input_is_named(trained, kwargs, error, pattern):
  with pytest.raises(error, match=pattern):
    generate.sample_workdir(trained[0], **kwargs)


def _snapshot(workdir: str) -> dict[str, tuple[int, float]]:
  return {os.path.join(d, f): (os.path.getsize(os.path.join(d, f)),
                               os.path.getmtime(os.path.join(d, f)))
          for d, _, files in os.walk(workdir) for f in files}


def test_vocabulary_that_does_not_match_the_checkpoint_is_refused(trained, tmp_path):
  workdir = tmp_path / "copy"
  shutil.copytree(trained[0], workdir)
  meta = json.loads((workdir / "dataset.json").read_text())
  meta["vocab"] = meta["vocab"][:-1]
  (workdir / "dataset.json").write_text(json.dumps(meta))
  before = _snapshot(str(workdir))
  with pytest.raises(DataError, match=r"dataset.json and config.json do not match the checkpoint"
                                      rf".*token_embed/embedding: saved \(\d+, \d+\), model "
                                      rf"\({len(meta['vocab'])}, .*{len(meta['vocab'])} tokens"):
    generate.sample_workdir(str(workdir), "All")
  assert _snapshot(str(workdir)) == before


def test_workdir_without_checkpoint_is_refused(trained, tmp_path):
  workdir = tmp_path / "empty"
  workdir.mkdir()
  for name in ("config.json", "dataset.json"):
    (workdir / name).write_bytes(open(os.path.join(trained[0], name), "rb").read())
  with pytest.raises(CheckpointError, match=f"no checkpoint in {workdir}/checkpoints"):
    generate.sample_workdir(str(workdir), "All")
  assert sorted(os.listdir(workdir)) == ["config.json", "dataset.json"]
  with pytest.raises(CheckpointError, match="config.json is missing"):
    generate.sample_workdir(str(tmp_path), "All")


def test_sample_command_exits_2_with_one_error_line(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "launch.sample", f"--workdir={tmp_path}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "config.json is missing" in errors[0], proc.stderr


def test_gpt2_small_builds_at_full_size(text_dir):
  config = load_config(os.path.join(ROOT, "experiments", "gpt2_small.py"))
  config.dataset.data_dir = text_dir
  config.dataset.block_size = 64  # the test text is too short for 1024-token test windows
  model = loop.build(config).task.model
  assert (model.num_layers, model.num_heads, model.width) == (12, 12, 768)
  assert model.vocab_size == 256 and model.block_size == 64 and model.dtype == jnp.bfloat16
  tiny = load_config(os.path.join(ROOT, "experiments", "gpt2_small.py:tiny"))
  tiny.dataset.data_dir = text_dir
  tiny.dataset.num_examples = 0
  assert loop.build(tiny).task.model.use_bias
