"""Translation: Multi30k reader, parallel tokenising, the seq2seq Transformer and its KV-cache
decoding (greedy and beam search), BLEU through sacrebleu, the launcher and launch.translate.

Everything runs on a small made-up parallel corpus in Multi30k's file layout (a word-by-word
"German" -> "English" code), so the tests need no real data; one tiny training run through
`python -m launch.main` is shared by the end-to-end tests.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import sacrebleu

from launch.overrides import load_config
from research.data import load_dataset, parallel, text
from research.decode import beam_search, decode_batches
from research.errors import ConfigError, DataError
from research.models.seq2seq import Seq2SeqTransformer
from research.metrics import corpus_bleu
from research.tasks.seq2seq import Seq2Seq, shift_right
from research.translate import load_workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "JAX_PLATFORMS": "cpu"}
WORDS = {"ein": "a", "hund": "dog", "mann": "man", "frau": "woman", "kind": "child",
         "läuft": "runs", "sitzt": "sits", "spielt": "plays", "im": "in the", "auf": "on the",
         "park": "park", "schnee": "snow", "straße": "street", "rot": "red", "großer": "big",
         "kleiner": "small", "und": "and", "mit": "with", "ball": "ball", "wasser": "water"}
SIZES = {"train": 240, "val": 40, "test_2016_flickr": 40}


def _pairs(count: int, seed: int) -> tuple[list[str], list[str]]:
  rng = np.random.default_rng(seed)
  german = list(WORDS)
  de, en = [], []
  for _ in range(count):
    words = [german[i] for i in rng.integers(0, len(german), rng.integers(3, 8))]
    de.append(" ".join(words).capitalize() + ".")
    en.append(" ".join(WORDS[w] for w in words).capitalize() + ".")
  return de, en


def write_corpus(directory: str, sizes: dict[str, int] = SIZES) -> str:
  os.makedirs(directory, exist_ok=True)
  for seed, (stem, count) in enumerate(sizes.items()):
    for language, lines in zip(("de", "en"), _pairs(count, seed)):
      with gzip.open(os.path.join(directory, f"{stem}.{language}.gz"), "wt", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
  return directory


def dataset_config(data_dir: str, **fields) -> ml_collections.ConfigDict:
  settings = dict(name="multi30k", data_dir=data_dir, tokenizer="subword", vocab_size=100,
                  lowercase=False, max_length=24)
  return ml_collections.ConfigDict({**settings, **fields})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  return write_corpus(str(tmp_path_factory.mktemp("multi30k")))


@pytest.fixture(scope="module")
def corpus(data_dir) -> parallel.Corpus:
  return parallel.corpus(dataset_config(data_dir))


# -- data -------------------------------------------------------------------------------


def _write(path: str, lines: list[str]) -> None:
  with gzip.open(path, "wt", encoding="utf-8") as f:
    f.write("".join(line + "\n" for line in lines))


def test_mismatched_line_counts_name_both_files(tmp_path):
  directory = write_corpus(str(tmp_path))
  _write(os.path.join(directory, "val.en.gz"), ["A dog."] * 39)
  with pytest.raises(DataError, match=r"val\.de\.gz has 40 lines but .*val\.en\.gz has 39"):
    parallel.corpus(dataset_config(directory))


@pytest.mark.parametrize("damage, pattern", [
    ("missing", r"lacks test_2016_flickr\.en\[\.gz\] \(dataset\.data_dir\)"),
    ("not_gzip", r"cannot read .*test_2016_flickr\.en\.gz .*corrupt"),
    ("not_utf8", r"test_2016_flickr\.en\.gz line 2 is not UTF-8"),
])
def test_bad_files_are_named(tmp_path, damage, pattern):
  directory = write_corpus(str(tmp_path))
  path = os.path.join(directory, "test_2016_flickr.en.gz")
  if damage == "missing":
    os.remove(path)
  elif damage == "not_gzip":
    with open(path, "wb") as f:
      f.write(b"plain text, not gzip\n")
  else:
    with gzip.open(path, "wb") as f:
      f.write(b"A dog.\n\xff\xfe\n")
  with pytest.raises(DataError, match=pattern):
    parallel.corpus(dataset_config(directory))


def test_language_fields_are_checked(data_dir):
  with pytest.raises(ConfigError, match="source_language and dataset.target_language are both"):
    parallel.corpus(dataset_config(data_dir, source_language="en", target_language="en"))
  with pytest.raises(ConfigError, match="dataset.target_language = 'xx'"):
    parallel.corpus(dataset_config(data_dir, target_language="xx"))


def test_splits_targets_and_tokenizer_round_trip(corpus, data_dir):
  dataset = load_dataset(dataset_config(data_dir))
  assert {k: len(s) for k, s in dataset.splits.items()} == {"train": 240, "validation": 40,
                                                            "test": 40}
  assert dataset.num_classes == dataset.model_fields["target_vocab_size"]
  tokenizer = corpus.target_tokenizer
  assert corpus.source_tokenizer is tokenizer  # shared vocabulary
  labels = dataset.splits["test"].labels
  last = np.array([row[np.flatnonzero(row)[-1]] for row in labels])
  assert (last == parallel.EOS_ID).all()  # every target ends with EOS
  # Detokenising a target row gives back the raw sentence, and the saved tokeniser is the same.
  decoded = [tokenizer.decode(parallel.until_eos(row)) for row in labels]
  assert decoded == corpus.sentences["test"].target
  rebuilt = text.from_metadata(json.loads(json.dumps(dataset.metadata))["target_tokenizer"])
  assert [rebuilt.encode(s) for s in decoded] == [tokenizer.encode(s) for s in decoded]
  assert parallel.EOS_ID not in tokenizer.encode(" ".join(decoded))  # EOS is reserved


def test_separate_vocabularies(data_dir):
  separate = parallel.corpus(dataset_config(data_dir, shared_vocabulary=False))
  source, target = separate.source_tokenizer, separate.target_tokenizer
  assert source is not target
  assert source.decode(separate.splits["test"].inputs[0]) == separate.sentences["test"].source[0]
  assert target.decode(parallel.until_eos(separate.splits["test"].labels[0])) == \
      separate.sentences["test"].target[0]


# -- model and decoding -----------------------------------------------------------------


def _model(vocab: int = 23, **fields) -> Seq2SeqTransformer:
  settings = dict(d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                  mlp_dim=32, dropout_rate=0.0, max_length=12)
  settings.update(fields)
  return Seq2SeqTransformer(num_outputs=vocab, source_vocab_size=vocab, target_vocab_size=vocab,
                            **settings)


def test_cached_decoding_matches_the_full_forward_pass():
  model = _model(tie_output=False, num_decoder_layers=2)
  source = jnp.array([[5, 6, 7, 8, 9], [3, 4, 0, 0, 0]], jnp.int32)  # with padding
  target = jax.random.randint(jax.random.key(1), (2, 7), 3, 23)
  params = jax.jit(model.init)(jax.random.key(0), source, shift_right(target))["params"]

  @jax.jit
  def run(params):
    full = model.apply({"params": params}, source, shift_right(target))
    more_padding = model.apply({"params": params}, jnp.pad(source, ((0, 0), (0, 3))),
                               shift_right(target))
    first, variables = model.apply({"params": params}, source, method="start_decoding",
                                   mutable=["cache"])

    def step(cache, tokens):
      logits, variables = model.apply({"params": params, "cache": cache}, tokens[:, None],
                                      method="decode_step", mutable=["cache"])
      return variables["cache"], logits

    _, rest = jax.lax.scan(step, variables["cache"], target[:, :-1].T)
    return full, more_padding, jnp.concatenate([first[:, None], rest.transpose(1, 0, 2)], 1)

  full, more_padding, incremental = run(params)
  # One token at a time over the cache = the whole sequence at once (so that is causal).
  np.testing.assert_allclose(incremental, full, atol=2e-5, rtol=1e-5)
  np.testing.assert_allclose(more_padding, full, atol=2e-5)  # padding is invisible


def test_bad_model_fields_are_config_errors():
  with pytest.raises(ConfigError, match="d_model=15 is not divisible"):
    _model(d_model=15)
  with pytest.raises(ConfigError, match="share_embeddings=True needs one vocabulary"):
    Seq2SeqTransformer(num_outputs=9, source_vocab_size=8, target_vocab_size=9,
                       share_embeddings=True)
  model = _model(max_length=4)
  with pytest.raises(ConfigError, match="more than config.model.max_length=4"):
    model.init(jax.random.key(0), jnp.ones((1, 6), jnp.int32))


# -- BLEU -------------------------------------------------------------------------------


def test_bleu_is_sacrebleu_on_detokenised_output_and_raw_references(corpus, data_dir):
  config = load_config(os.path.join(ROOT, "experiments", "multi30k_transformer.py:tiny"))
  config.dataset.update(dataset_config(data_dir))
  task = Seq2Seq(config, _model(corpus.target_tokenizer.vocab_size, max_length=24), None)
  references = corpus.sentences["test"].target
  hypotheses = [r.replace("dog", "cat") if i % 2 else r.lower()
                for i, r in enumerate(references)]
  ids = parallel.encode_targets(corpus.target_tokenizer, hypotheses, 24)
  n = len(ids)
  outputs = {"hypothesis": ids, "loss": np.ones(n), "nll": np.ones(n), "accuracy": np.ones(n),
             "count": np.full(n, 2.0)}
  metrics = task.metrics(outputs, corpus.splits["test"].labels)
  expected = sacrebleu.corpus_bleu(hypotheses, [references]).score
  assert metrics["bleu"] == pytest.approx(expected, abs=1e-9)
  assert 0 < metrics["bleu"] < 100 and metrics["nll"] == 0.5 and metrics["accuracy"] == 0.5
  assert corpus_bleu(references, references) == pytest.approx(100.0)
  with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
    corpus_bleu(["a b", "c d"], ["a b"])


# -- end to end: train through the launcher, then translate -----------------------------


def _run(module: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=ENV, input=stdin,
                        capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
  workdir = str(tmp_path_factory.mktemp("run") / "multi30k")
  proc = _run("launch.main", "--config=experiments/multi30k_transformer.py:tiny",
              f"--workdir={workdir}", f"--config.dataset.data_dir={data_dir}",
              "--config.dataset.vocab_size=100", "--config.optimizer.learning_rate=0.01")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


def test_launcher_trains_and_reports_bleu(trained):
  workdir, proc = trained
  with open(os.path.join(workdir, "result.json")) as f:
    result = json.load(f)
  for split in ("validation", "test"):
    assert 0.0 <= result[split]["bleu"] <= 100.0
    assert result[split]["accuracy"] > 0.1  # well above chance after 12 steps
    # The task contract (test_tasks.py checks the simpler tasks): every declared metric name
    # (what early stopping and the best checkpoint may use) is reported.
    assert set(Seq2Seq.metric_names(None)) <= set(result[split])
  assert "bleu" in proc.stdout
  with open(os.path.join(workdir, "dataset.json")) as f:
    meta = json.load(f)
  assert meta["task"] == "translation" and meta["eos_id"] == parallel.EOS_ID


@pytest.fixture(scope="module")
def translator(trained):
  return load_workdir(trained[0])


def _greedy(translator, sentences: list[str]) -> np.ndarray:
  """What `launch.translate --beam_size=1 --batch_size=8` decodes (the same compilation)."""
  encoded = text.encode_all(translator.source_tokenizer, sentences)
  return decode_batches(translator.model, translator.params,
                        text.pad(encoded, max(map(len, encoded))), parallel.EOS_ID,
                        translator.model.max_length, 1, 0.6, 8)


def test_beam_of_one_is_greedy_on_the_trained_model(translator, corpus):
  sentences = corpus.sentences["test"].source[:8]
  by_greedy = _greedy(translator, sentences)
  encoded = text.encode_all(translator.source_tokenizer, sentences)
  by_beam = jax.jit(beam_search, static_argnums=(0, 3, 4, 5, 6))(
      translator.model, translator.params, text.pad(encoded, max(map(len, encoded))),
      parallel.EOS_ID, translator.model.max_length, 1, 0.0)
  np.testing.assert_array_equal(by_beam, by_greedy)
  assert (by_greedy == parallel.EOS_ID).any()  # some decodes do finish


def test_translate_command(trained, translator, corpus):
  """`python -m launch.translate` as a user runs it: stdin in, one translation per line out."""
  sentences = corpus.sentences["test"].source[:8]
  stdin = "".join(s + "\n" for s in sentences)
  proc = _run("launch.translate", f"--workdir={trained[0]}", "--beam_size=1", "--batch_size=8",
              stdin=stdin)
  assert proc.returncode == 0, proc.stderr[-2000:]
  expected = [translator.target_tokenizer.decode(parallel.until_eos(row))
              for row in _greedy(translator, sentences)]
  assert proc.stdout.splitlines() == expected
  proc = _run("launch.translate", f"--workdir={trained[0]}", "--beam_size=0", stdin=stdin)
  assert proc.returncode == 2 and proc.stderr.startswith("error: --beam_size = 0: it must be")


def test_unknown_variant_is_refused():
  with pytest.raises(Exception, match=r"unknown variant.*'nope'"):
    load_config(os.path.join(ROOT, "experiments", "multi30k_transformer.py:nope"))
