"""Translating with a trained seq2seq workdir: it needs nothing but the workdir.

`load_workdir` rebuilds the model from `config.json`, the tokenisers from `dataset.json`
(written by the loop from `parallel.Corpus.metadata`) and the parameters from the newest
(or best) checkpoint; `Translator.translate` encodes sentences, decodes them in fixed-size
batches (greedy or beam search over the KV cache, research/decode.py) and detokenises.
`python -m launch.translate` is this with flags.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from research import models, saved_run
from research.data import parallel, text
from research.decode import check_decoding, decode_batches
from research.errors import DataError
from research.training.workdir import CONFIG_FILE


@dataclasses.dataclass(frozen=True)
class Translator:
  """A trained encoder-decoder with its tokenisers."""
  model: nn.Module
  params: Any
  source_tokenizer: text.Tokenizer
  target_tokenizer: text.Tokenizer
  eos_id: int
  step: int

  def translate(self, sentences: Sequence[str], beam_size: int = 4, length_penalty: float = 0.6,
                max_length: int = 0, batch_size: int = 32) -> list[str]:
    """The translation of each sentence (source tokens beyond the model's length are cut)."""
    max_length = max_length or self.model.max_length
    check_decoding(beam_size, length_penalty, max_length, self.model.max_length, where="--")
    if not sentences:
      return []
    encoded = text.encode_all(self.source_tokenizer, list(sentences))
    longest = max(1, max(len(ids) for ids in encoded))
    sources = text.pad(encoded, min(longest, self.model.max_length))
    ids = decode_batches(self.model, self.params, sources, self.eos_id, max_length, beam_size,
                         float(length_penalty), batch_size)
    return [self.target_tokenizer.decode(parallel.until_eos(row)) for row in ids]


def load_workdir(workdir: str, best: bool = False) -> Translator:
  """The translator of a workdir's newest (or best) checkpoint.

  CheckpointError when the workdir, its config or its checkpoint is missing or unreadable;
  DataError when `dataset.json` is not a translation dataset's or does not fit the checkpoint.
  """
  run = saved_run.read(workdir, "it holds the tokenisers; only runs on a translation dataset "
                       "(multi30k) can translate.", best)
  meta, meta_path = run.metadata, run.metadata_path
  if meta.get("task") != "translation":
    raise DataError(f"{meta_path} does not describe a translation dataset (no 'task': "
                    "'translation'): this workdir was not trained on parallel text, e.g. "
                    "experiments/multi30k_transformer.py.")
  source_tok = text.from_metadata(meta["source_tokenizer"])
  target_tok = text.from_metadata(meta["target_tokenizer"])
  vocab = {"source_vocab_size": source_tok.vocab_size, "target_vocab_size": target_tok.vocab_size}
  model = models.build_model(run.config.model, target_tok.vocab_size, run.dtype,
                             data_fields=vocab)
  params, step = run.state["params"], run.step
  difference = saved_run.mismatch(model, params, jnp.ones((1, 1), jnp.int32))
  if difference:
    raise DataError(f"{meta_path} does not match the checkpoint of {workdir}: its vocabularies "
                    f"({vocab}) or the model of {CONFIG_FILE} differ from the saved "
                    f"parameters ({difference}). Restore the dataset.json and config.json the "
                    "run wrote.")
  return Translator(model, params, source_tok, target_tok, int(meta.get("eos_id", parallel.EOS_ID)),
                    step)
