"""Sampling from a trained language model: one compiled decode loop over a KV cache.

`generate` feeds the prompt once (filling the cache), then samples one token per iteration
of a `lax.fori_loop`, each iteration running the model on that single token against the
cache, so a token costs one token's forward pass rather than the whole sequence's.
`load_workdir` rebuilds the model and its tokeniser from a training workdir alone: its
`config.json`, `dataset.json` (the vocabulary) and newest (or best) checkpoint;
`sample_workdir` is `python -m launch.sample` without the flags.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research import models, saved_run, tasks
from research.data.shakespeare import Codec
from research.errors import ConfigError, DataError
from research.training.workdir import CONFIG_FILE


def filter_logits(logits: jax.Array, top_k: jax.Array | int = 0,
                  top_p: jax.Array | float = 1.0) -> jax.Array:
  """Sets logits outside the top k, then outside the top-p nucleus, to -inf.

  top_k = 0 and top_p = 1 keep everything. The nucleus is the smallest set of most likely
  tokens whose probability reaches top_p; the most likely token is always kept. Both may be
  traced values: one compiled sampler serves every setting.
  """
  vocab = logits.shape[-1]
  ranked = -jnp.sort(-logits, axis=-1)  # descending
  k = jnp.where(top_k > 0, jnp.minimum(top_k, vocab), vocab)
  ranked = jnp.where(jnp.arange(vocab) < k, ranked, -jnp.inf)
  probs = jax.nn.softmax(ranked, axis=-1)
  mass_before = jnp.cumsum(probs, axis=-1) - probs
  threshold = jnp.min(jnp.where(mass_before < top_p, ranked, jnp.inf), axis=-1, keepdims=True)
  return jnp.where(logits < threshold, -jnp.inf, logits)


def _choose(key: jax.Array, logits: jax.Array, temperature: jax.Array, top_k: jax.Array,
            top_p: jax.Array) -> jax.Array:
  """The next token: argmax when temperature is 0, else sampled from the filtered logits."""
  logits = logits.astype(jnp.float32)
  scaled = logits / jnp.where(temperature > 0, temperature, 1.0)
  sampled = jax.random.categorical(key, filter_logits(scaled, top_k, top_p), axis=-1)
  return jnp.where(temperature > 0, sampled, jnp.argmax(logits, axis=-1)).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens"))
def _generate(model: nn.Module, params: Any, prompt: jax.Array, key: jax.Array,
              temperature: jax.Array, top_k: jax.Array, top_p: jax.Array,
              max_new_tokens: int) -> jax.Array:
  batch = prompt.shape[0]
  choose = lambda i, logits: _choose(jax.random.fold_in(key, i), logits, temperature, top_k,
                                     top_p)

  def step(cache, tokens):
    logits, updated = model.apply({"params": params, "cache": cache}, tokens, decode=True,
                                  mutable=["cache"])
    return updated["cache"], logits[:, -1]

  cache, logits = step(model.init_cache(batch), prompt)
  out = jnp.zeros((batch, max_new_tokens), jnp.int32).at[:, 0].set(choose(0, logits))

  def body(i, carry):
    cache, out = carry
    cache, logits = step(cache, jax.lax.dynamic_slice_in_dim(out, i - 1, 1, axis=1))
    return cache, out.at[:, i].set(choose(i, logits))

  _, out = jax.lax.fori_loop(1, max_new_tokens, body, (cache, out))
  return out


def generate(model: nn.Module, params: Any, prompt: np.ndarray, key: jax.Array,
             max_new_tokens: int, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0) -> np.ndarray:
  """(batch, max_new_tokens) token ids continuing each row of `prompt` (batch, length).

  temperature 0 is greedy decoding (argmax); otherwise logits are divided by it, filtered by
  `top_k` / `top_p` (see `filter_logits`) and sampled with `key`. The prompt plus the new
  tokens must fit in the model's context (`model.block_size`). Compiled once per model,
  prompt shape and max_new_tokens; the sampling settings are not compile-time constants.
  """
  prompt = np.asarray(prompt, np.int32)
  if prompt.ndim != 2 or prompt.shape[1] < 1:
    raise ConfigError(f"the prompt must be at least one token per row; got shape "
                      f"{prompt.shape}.")
  check_sampling(prompt.shape[1], max_new_tokens, model.block_size, temperature, top_k, top_p)
  out = _generate(model, params, jnp.asarray(prompt), key, jnp.float32(temperature),
                  jnp.int32(top_k), jnp.float32(top_p), int(max_new_tokens))
  return np.asarray(out)


def check_sampling(prompt_length: int, max_new_tokens: int, block_size: int,
                   temperature: float, top_k: int, top_p: float) -> None:
  """ConfigError naming the flag for each setting generation cannot honour."""
  if max_new_tokens < 1:
    raise ConfigError(f"--max_new_tokens={max_new_tokens}: generate at least 1 token.")
  if prompt_length + max_new_tokens > block_size:
    raise ConfigError(
        f"--max_new_tokens={max_new_tokens} with a prompt of {prompt_length} tokens makes "
        f"{prompt_length + max_new_tokens} tokens, beyond the model's context of {block_size} "
        f"(its block_size): use --max_new_tokens <= {max(block_size - prompt_length, 0)}"
        + (" or a shorter --prompt." if prompt_length > 1 else "."))
  if not temperature >= 0:
    raise ConfigError(f"--temperature={temperature}: it must be >= 0 (0 = greedy).")
  if top_k < 0:
    raise ConfigError(f"--top_k={top_k}: it must be >= 0 (0 = no top-k filter).")
  if not 0 < top_p <= 1:
    raise ConfigError(f"--top_p={top_p}: it must be in (0, 1] (1 = no nucleus filter).")


@dataclasses.dataclass(frozen=True)
class Loaded:
  """A trained language model ready to sample from."""
  model: nn.Module
  params: Any
  codec: Codec
  step: int


def load_workdir(workdir: str, best: bool = False) -> Loaded:
  """The model, parameters and tokeniser of a workdir's newest (or best) checkpoint.

  Needs nothing but the workdir: not the dataset, not the experiment file. Raises
  CheckpointError when there is no checkpoint, and DataError when `dataset.json`'s
  vocabulary does not match the checkpoint's embedding.
  """
  run = saved_run.read(workdir, "it holds the vocabulary; only runs on a language-model "
                       "dataset (tiny_shakespeare) can be sampled.", best)
  codec = Codec.from_metadata(run.metadata, run.metadata_path)
  model = _build_model(run.config, codec, run.metadata.get("block_size"))
  params = run.state["params"]
  difference = saved_run.mismatch(model, params, jnp.zeros((1, 1), jnp.int32))
  if difference:
    raise DataError(
        f"{run.metadata_path} and {CONFIG_FILE} do not match the checkpoint of {workdir} "
        f"({difference}; the vocabulary has {codec.vocab_size} tokens). Restore the "
        "dataset.json and config.json the run wrote; a checkpoint from an older version of "
        "the model code must be retrained.")
  return Loaded(model=model, params=params, codec=codec, step=run.step)


def _build_model(config: ml_collections.ConfigDict, codec: Codec,
                 block_size: int | None) -> nn.Module:
  if not isinstance(block_size, int) or block_size < 1:
    block_size = config.get("dataset", {}).get("block_size")
  width = tasks.num_outputs(config.task.name, codec.vocab_size)
  dtype = jnp.bfloat16 if config.get("precision") == "bfloat16" else jnp.float32
  model = models.build_model(config.model, width, dtype, data_fields={
      "vocab_size": codec.vocab_size, "block_size": block_size})
  if not hasattr(model, "init_cache"):
    raise ConfigError(f"model {config.model.name!r} of this workdir has no KV cache to "
                      "generate with: sampling needs a language model such as 'gpt'.")
  return model


def sample_workdir(workdir: str, prompt: str, max_new_tokens: int = 0,
                   temperature: float = 0.8, top_k: int = 0, top_p: float = 1.0,
                   seed: int = 0, num_samples: int = 1, best: bool = False) -> list[str]:
  """Continuations of `prompt` (prompt excluded) from a workdir's model, one per sample.

  `max_new_tokens` 0 means as many as the model's context leaves after the prompt. Every bad
  input (see `check_sampling`, `load_workdir`, `Codec.encode`) raises a UserError naming it.
  """
  if not prompt:
    raise ConfigError("--prompt is empty: give at least one character to continue, e.g. "
                      "--prompt=ROMEO: (the default is a newline).")
  if num_samples < 1:
    raise ConfigError(f"--num_samples={num_samples}: draw at least 1 sample.")
  loaded = load_workdir(workdir, best)
  tokens = loaded.codec.encode(prompt, f"--prompt {prompt!r}")
  block = loaded.model.block_size
  if max_new_tokens == 0 and len(tokens) >= block:
    raise ConfigError(f"--prompt is {len(tokens)} tokens long, which fills the model's context "
                      f"of {block} (its block_size): use a shorter prompt.")
  out = generate(loaded.model, loaded.params, np.tile(tokens, (num_samples, 1)),
                 jax.random.key(seed), max_new_tokens or block - len(tokens), temperature,
                 top_k, top_p)
  return [loaded.codec.decode(row) for row in out]
