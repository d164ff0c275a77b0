"""BERT's masked-language-model objective: predict tokens hidden from the encoder.

The masking is drawn on device inside the compiled step (Devlin et al., 2019, section 3.1):
each real token is selected with probability `task.mask_rate` (0.15); a selected token is
replaced by <mask> with probability `task.mask_fraction` (0.8), by a random vocabulary token
with probability `task.random_fraction` (0.1), and left unchanged otherwise. Padding is never
selected. Selection is per token (HuggingFace's collator does the same), not a fixed count
per sequence, so a short SST-2 phrase may have none selected; the loss is the cross-entropy
at selected positions only, averaged over the batch's selected tokens.

`task.max_predictions` (BERT's max_predictions_per_seq; 0 = no limit) caps the tokens selected
per sequence in training (the first ones in order are kept) and has the model score only
those positions: the vocabulary projection is most of a small encoder's cost, and a masked
15% leaves the other 85% of its logits unused. Pick it well above `mask_rate` times the
train length (BERT: 20 for 128 tokens) so the cap rarely bites. Evaluation scores every
selected token, uncapped.

Randomness: training masks come from the step's RNG (a pure function of seed and step) on a
stream apart from dropout's. Evaluation masks come from a fixed key folded with each
example's index in its split, so every evaluation of a split scores the same masked tokens,
whatever the evaluation batch size: validation numbers compare across evaluations and runs.

Inputs are token ids (labels are ignored: the text is its own target); the dataset must
reserve the <mask> token (`dataset.mask_token=True`, id `research.data.text.MASK_ID`). The
model returns logits (batch, length, vocab_size), e.g. `bert_mlm`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from research import metrics as M
from research.data.text import MASK_ID, PAD_ID
from research.errors import ConfigError
from research.tasks.base import Batch, Metrics, Task

MASK_STREAM = 0x6d61736b  # fold_in constant: masking draws apart from dropout's
EVAL_MASK_SEED = 0x6576616c  # evaluation masks: the same for every evaluation of a split
FIRST_RANDOM_ID = MASK_ID + 1  # random replacements are ordinary tokens, never <pad>/<unk>/<mask>


class Masking(NamedTuple):
  """A masked batch: the model's inputs, and which positions it must predict."""
  inputs: jax.Array    # (batch, length) ids with the selected tokens replaced
  targets: jax.Array   # (batch, length) the original ids
  selected: jax.Array  # (batch, length) bool: positions scored by the loss


def mask_tokens(key: jax.Array, ids: jax.Array, vocab_size: int, rate: float = 0.15,
                mask_fraction: float = 0.8, random_fraction: float = 0.1,
                max_selected: int = 0) -> Masking:
  """BERT's 80/10/10 masking of the non-padding tokens of `ids` (..., length), drawn from
  `key`; with `max_selected`, at most the first that many selected tokens per sequence."""
  select_key, action_key, random_key = jax.random.split(key, 3)
  selected = (jax.random.uniform(select_key, ids.shape) < rate) & (ids != PAD_ID)
  if max_selected:
    selected &= jnp.cumsum(selected, axis=-1) <= max_selected
  action = jax.random.uniform(action_key, ids.shape)
  random_ids = jax.random.randint(random_key, ids.shape, FIRST_RANDOM_ID, vocab_size,
                                  dtype=ids.dtype)
  replaced = jnp.where(action < mask_fraction, jnp.asarray(MASK_ID, ids.dtype),
                       jnp.where(action < mask_fraction + random_fraction, random_ids, ids))
  return Masking(jnp.where(selected, replaced, ids), ids, selected)


def masked_token_losses(logits: jax.Array, targets: jax.Array,
                        selected: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(cross-entropy, correct) per position, both zero where the position is not selected."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  correct = jnp.argmax(logits, -1) == targets
  return jnp.where(selected, losses, 0.0), (correct & selected).astype(jnp.float32)


def scored_positions(selected: jax.Array, count: int) -> jax.Array:
  """(batch, count) indices: each row's selected positions first (in order), then others."""
  return jnp.argsort(~selected, axis=-1, stable=True)[:, :count].astype(jnp.int32)


def _fraction(config: ml_collections.ConfigDict, field: str, default: float) -> float:
  value = config.task.get(field, default)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
    raise ConfigError(f"config.task.{field} must be a number in [0, 1]; got {value!r}.")
  return float(value)


class MaskedLanguageModel(Task):
  """Masked-token loss, accuracy and perplexity; train sums count masked tokens."""

  default_metric = "loss"
  default_mode = "min"

  def __init__(self, config: ml_collections.ConfigDict, model: Any, num_classes: int | None):
    super().__init__(config, model, num_classes)
    if not config.dataset.get("mask_token", False):
      raise ConfigError("config.task.name='masked_lm' needs a <mask> token in the vocabulary: "
                        "set config.dataset.mask_token=True (and the same in any run that is "
                        "fine-tuned from this one, so the vocabularies agree).")
    self.rate = _fraction(config, "mask_rate", 0.15)
    self.mask_fraction = _fraction(config, "mask_fraction", 0.8)
    self.random_fraction = _fraction(config, "random_fraction", 0.1)
    if not self.rate > 0:
      raise ConfigError("config.task.mask_rate must be > 0: with no token masked there is "
                        "nothing to predict.")
    if self.mask_fraction + self.random_fraction > 1:
      raise ConfigError(f"config.task.mask_fraction + random_fraction = "
                        f"{self.mask_fraction + self.random_fraction:g} > 1: they are shares "
                        "of the selected tokens (BERT: 0.8 and 0.1).")
    vocab_size = getattr(model, "vocab_size", None)
    if not isinstance(vocab_size, int) or vocab_size <= FIRST_RANDOM_ID:
      raise ConfigError(f"config.task.name='masked_lm' needs a model with a vocab_size above "
                        f"{FIRST_RANDOM_ID} (e.g. 'bert_mlm'); model "
                        f"{config.model.name!r} has {vocab_size!r}.")
    self.vocab_size = vocab_size
    self.max_predictions = config.task.get("max_predictions", 0)
    if isinstance(self.max_predictions, bool) or not isinstance(self.max_predictions, int) \
        or self.max_predictions < 0:
      raise ConfigError(f"config.task.max_predictions must be an integer >= 0 (0 = no limit); "
                        f"got {self.max_predictions!r}.")

  def metric_names(self) -> tuple[str, ...]:
    return ("loss", "accuracy", "perplexity")

  def mask(self, key: jax.Array, ids: jax.Array, max_selected: int = 0) -> Masking:
    return mask_tokens(key, ids, self.vocab_size, self.rate, self.mask_fraction,
                       self.random_fraction, max_selected)

  def eval_mask(self, batch: Batch) -> Masking:
    """Each example's mask from (fixed key, its index in the split): batching-independent."""
    base = jax.random.key(EVAL_MASK_SEED)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(batch["index"])
    return jax.vmap(self.mask)(keys, batch["inputs"])

  def loss_and_sums(self, params, model_state, batch: Batch,
                    rng) -> tuple[jax.Array, tuple[Metrics, Any]]:
    cap = min(self.max_predictions, batch["inputs"].shape[1])
    masking = self.mask(jax.random.fold_in(rng, MASK_STREAM), batch["inputs"], cap)
    targets, selected, kwargs = masking.targets, masking.selected, {}
    if cap:
      kwargs["positions"] = positions = scored_positions(selected, cap)
      targets = jnp.take_along_axis(targets, positions, axis=1)
      selected = jnp.take_along_axis(selected, positions, axis=1)
    logits, model_state = self.apply(params, model_state, masking.inputs, rng, train=True,
                                     **kwargs)
    losses, correct = masked_token_losses(logits, targets, selected)
    count = selected.sum().astype(jnp.float32)
    sums = {"loss": losses.sum(), "accuracy": correct.sum(), "count": count}
    return losses.sum() / jnp.maximum(count, 1.0), (sums, model_state)

  def outputs(self, params, model_state, batch: Batch) -> dict[str, jax.Array]:
    masking = self.eval_mask(batch)
    logits, _ = self.apply(params, model_state, masking.inputs, None, train=False)
    losses, correct = masked_token_losses(logits, masking.targets, masking.selected)
    return {"loss_sum": losses.sum(-1), "correct": correct.sum(-1),
            "masked": masking.selected.sum(-1).astype(jnp.float32)}

  def metrics(self, outputs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    masked = float(np.sum(outputs["masked"], dtype=np.float64))
    nll = float(np.sum(outputs["loss_sum"], dtype=np.float64)) / max(masked, 1.0)
    return {"loss": nll, "perplexity": M.perplexity(nll),
            "accuracy": float(np.sum(outputs["correct"], dtype=np.float64)) / max(masked, 1.0),
            "masked_tokens": int(masked)}
