"""Greedy and beam-search decoding of an encoder-decoder model over its KV cache.

Both are pure jax functions (traced inside the seq2seq task's compiled evaluation, or
jitted by `translate`): the model's `start_decoding(source)` encodes the source and fills
the 'cache' collection, then each `decode_step(tokens)` costs one token's forward pass.
A `lax.while_loop` stops as soon as every sequence is finished. <pad> (the decoder's start
token) is never generated. Outputs are (batch, max_length) token ids ending with EOS where
the model emitted one, padded with 0 after it.

Beam search keeps `beam_size` live hypotheses per sentence and the best `beam_size`
finished ones, scored by log-probability / GNMT length penalty ((5 + length) / 6) ** alpha
(Wu et al. 2016); it stops when no live hypothesis can beat the worst finished one. With
beam_size 1 and alpha 0 it returns exactly the greedy output.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research.errors import ConfigError

PAD_ID = 0
NEG_INF = -1.0e9  # finite: -inf - -inf would make NaNs in the beam bookkeeping


def check_decoding(beam_size: int, length_penalty: float, max_length: int,
                   model_max_length: int, where: str = "config.task.") -> None:
  """ConfigError naming the setting (`where` + name: a config field or a flag) that cannot work."""
  if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
    raise ConfigError(f"{where}beam_size = {beam_size!r}: it must be an integer >= 1 "
                      "(1 = greedy).")
  if not length_penalty >= 0:
    raise ConfigError(f"{where}length_penalty = {length_penalty!r}: it must be >= 0 "
                      "(0 = no length normalisation).")
  if not 1 <= max_length <= model_max_length:
    raise ConfigError(f"{where}max_decode_length = {max_length}: it must be in [1, "
                      f"{model_max_length}] (config.model.max_length, the decoder's positions).")


def _start(model: nn.Module, params: Any, source: jax.Array) -> tuple[jax.Array, Any]:
  logits, variables = model.apply({"params": params}, source, method="start_decoding",
                                  mutable=["cache"])
  return logits, variables["cache"]


def _step(model: nn.Module, params: Any, cache: Any, tokens: jax.Array) -> tuple[jax.Array, Any]:
  logits, variables = model.apply({"params": params, "cache": cache}, tokens[:, None],
                                  method="decode_step", mutable=["cache"])
  return logits, variables["cache"]


def _log_probs(logits: jax.Array) -> jax.Array:
  """float32 log-probabilities with <pad> (the start token) ruled out."""
  return jax.nn.log_softmax(logits.astype(jnp.float32).at[:, PAD_ID].set(NEG_INF), axis=-1)


def greedy(model: nn.Module, params: Any, source: jax.Array, eos_id: int,
           max_length: int) -> jax.Array:
  """The most likely next token at every step: (batch, max_length) ids."""
  batch = source.shape[0]
  logits, cache = _start(model, params, source)
  token = jnp.argmax(_log_probs(logits), -1).astype(jnp.int32)
  out = jnp.zeros((batch, max_length), jnp.int32).at[:, 0].set(token)

  def cond(carry):
    i, _, _, _, done = carry
    return (i < max_length) & ~jnp.all(done)

  def body(carry):
    i, cache, out, token, done = carry
    logits, cache = _step(model, params, cache, token)
    token = jnp.where(done, PAD_ID, jnp.argmax(_log_probs(logits), -1)).astype(jnp.int32)
    return i + 1, cache, out.at[:, i].set(token), token, done | (token == eos_id)

  carry = (jnp.int32(1), cache, out, token, token == eos_id)
  return jax.lax.while_loop(cond, body, carry)[2]


def _gather_beams(tree: Any, indices: jax.Array) -> Any:
  """Rows `indices` (flat batch * beam) of every batched leaf; scalars (cache indices) kept."""
  return jax.tree.map(lambda x: x if x.ndim == 0 else jnp.take(x, indices, axis=0), tree)


def length_penalty(length: jax.Array | int, alpha: float) -> jax.Array:
  """GNMT's ((5 + length) / 6) ** alpha: divides a hypothesis' log-probability."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def beam_search(model: nn.Module, params: Any, source: jax.Array, eos_id: int,
                max_length: int, beam_size: int = 4, alpha: float = 0.6) -> jax.Array:
  """The best finished hypothesis of each sentence (else its best live one): (batch, L) ids."""
  batch, k = source.shape[0], beam_size
  logits, cache = _start(model, params, jnp.repeat(source, k, axis=0))
  vocab = logits.shape[-1]
  if vocab < 2 * k:
    raise ConfigError(f"config.task.beam_size = {k} needs a vocabulary of at least {2 * k} "
                      f"tokens; the model has {vocab}.")
  empty = jnp.zeros((batch, k, max_length), jnp.int32)
  alive_logp = jnp.full((batch, k), NEG_INF).at[:, 0].set(0.0)
  finished_scores = jnp.full((batch, k), NEG_INF)
  best_possible = length_penalty(max_length, alpha)
  offsets = (jnp.arange(batch) * k)[:, None]

  def cond(carry):
    i, _, alive_logp, _, finished_scores, _, _ = carry
    # A live hypothesis scores at most its log-probability now over the longest penalty.
    hopeless = finished_scores.min(axis=1) >= alive_logp[:, 0] / best_possible
    return (i < max_length) & ~jnp.all(hopeless)

  def body(carry):
    i, alive_seqs, alive_logp, finished_seqs, finished_scores, logp, cache = carry
    candidates = (alive_logp[:, :, None] + logp.reshape(batch, k, vocab)).reshape(batch, -1)
    top_logp, top_index = jax.lax.top_k(candidates, 2 * k)
    beam, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)
    seqs = jnp.take_along_axis(alive_seqs, beam[:, :, None], axis=1).at[:, :, i].set(token)
    is_eos = token == eos_id
    # The best k of the finished ones so far and those that end with EOS now.
    new_scores = jnp.where(is_eos, top_logp / length_penalty(i + 1, alpha), NEG_INF)
    scores = jnp.concatenate([finished_scores, new_scores], axis=1)
    finished_scores, keep = jax.lax.top_k(scores, k)
    finished_seqs = jnp.take_along_axis(jnp.concatenate([finished_seqs, seqs], axis=1),
                                        keep[:, :, None], axis=1)
    # The best k that go on.
    alive_logp, keep = jax.lax.top_k(jnp.where(is_eos, NEG_INF, top_logp), k)
    alive_seqs = jnp.take_along_axis(seqs, keep[:, :, None], axis=1)
    parents = jnp.take_along_axis(beam, keep, axis=1)
    cache = _gather_beams(cache, (offsets + parents).reshape(-1))
    last = jnp.take_along_axis(token, keep, axis=1).reshape(-1)
    logits, cache = _step(model, params, cache, last)
    return (i + 1, alive_seqs, alive_logp, finished_seqs, finished_scores, _log_probs(logits),
            cache)

  carry = (jnp.int32(0), empty, alive_logp, empty, finished_scores, _log_probs(logits), cache)
  _, alive_seqs, _, finished_seqs, finished_scores, _, _ = jax.lax.while_loop(cond, body, carry)
  any_finished = finished_scores[:, 0] > NEG_INF / 2
  return jnp.where(any_finished[:, None], finished_seqs[:, 0], alive_seqs[:, 0])


def decode(model: nn.Module, params: Any, source: jax.Array, eos_id: int, max_length: int,
           beam_size: int = 1, alpha: float = 0.0) -> jax.Array:
  """Greedy when beam_size is 1, else beam search (traceable: call it inside jit)."""
  if beam_size == 1:
    return greedy(model, params, source, eos_id, max_length)
  return beam_search(model, params, source, eos_id, max_length, beam_size, alpha)


@functools.partial(jax.jit, static_argnames=("model", "eos_id", "max_length", "beam_size",
                                             "alpha"))
def decode_jit(model: nn.Module, params: Any, source: jax.Array, eos_id: int, max_length: int,
               beam_size: int = 1, alpha: float = 0.0) -> jax.Array:
  """`decode` compiled once per model, source shape and setting."""
  return decode(model, params, source, eos_id, max_length, beam_size, alpha)


def decode_batches(model: nn.Module, params: Any, sources: np.ndarray, eos_id: int,
                   max_length: int, beam_size: int = 1, alpha: float = 0.0,
                   batch_size: int = 64) -> np.ndarray:
  """`decode_jit` over (N, S) source ids in fixed-size batches (the last one padded)."""
  out = []
  for start in range(0, len(sources), batch_size):
    chunk = sources[start:start + batch_size]
    padded = np.zeros((batch_size, sources.shape[1]), np.int32)
    padded[:len(chunk)] = chunk
    ids = decode_jit(model, params, jnp.asarray(padded), eos_id, max_length, beam_size, alpha)
    out.append(np.asarray(ids)[:len(chunk)])
  return np.concatenate(out) if out else np.zeros((0, max_length), np.int32)
