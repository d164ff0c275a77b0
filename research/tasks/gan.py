"""A GAN as a task: its own pure two-player train step, FID on a framework classifier.

The loop stays generic: this task overrides the hooks `create_state` (each player gets
its own optimizer state from the one `tx`), `train_step` (one discriminator update, then
one generator update against the updated discriminator) and `on_evaluation` (sample grids).
Both players live in the one TrainState, so checkpoints save and resume them together.

Loss: the non-saturating GAN loss of Goodfellow et al. (2014), as DCGAN trains it:
  D: BCE(D(x), 1) + BCE(D(G(z)), 0)        G: BCE(D(G(z)), 1)
Images (uint8) are scaled to [-1, 1], the generator's tanh range.

Evaluation generates one fake per real example of the split, from a latent fixed by the
example's index (so the number does not depend on batching), and compares the frozen
classifier's penultimate features of reals and fakes with the Fréchet distance. The metric
is named `fid_<dataset>_classifier`: it is *not* Inception-FID and compares only with FIDs
on the same classifier.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from research import images as images_lib
from research import metrics as M
from research.errors import ConfigError
from research.models.gan import check_image_shape
from research.tasks.base import Batch, Metrics, Task, TrainState, prepare_inputs
from research.tasks import classifier_features
from research.training.optimizers import penalty

PLAYERS = ("generator", "discriminator")
# fold_in constants: evaluation latents and the sample grid's latents apart from training's.
EVAL_STREAM = 0x6576616C
SAMPLE_STREAM = 0x73616D70
SAMPLES_DIR = "samples"


def latents(seed: int, indices: jax.Array, latent_dim: int, stream: int = EVAL_STREAM) -> jax.Array:
  """One fixed N(0, I) latent per index: the same index always gets the same latent."""
  key = jax.random.fold_in(jax.random.key(seed), stream)
  return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (latent_dim,)))(indices)


def generate(model: Any, params: Any, model_state: Any, z: jax.Array) -> jax.Array:
  """Images in [-1, 1] from latents, with BatchNorm's running statistics (eval mode)."""
  return model.apply({"params": params, **model_state}, z, False, method="generate")


_generate_jit = jax.jit(generate, static_argnums=0)


def sample_grid(model: Any, params: Any, model_state: Any, num: int, seed: int) -> np.ndarray:
  """A uint8 grid image of `num` samples from latents fixed by `seed` (the same latents at
  every call, so the grids of successive evaluations show how the same z evolves)."""
  z = latents(seed, jnp.arange(num), int(model.latent_dim), SAMPLE_STREAM)
  fakes = _generate_jit(model, params, model_state, z)
  return images_lib.image_grid(images_lib.to_uint8(np.asarray(jax.device_get(fakes))))


def to_unit_range(fakes: jax.Array) -> jax.Array:
  """Generator output in [-1, 1] -> [0, 1], rounded to 8 bits like the real images."""
  return jnp.round((fakes + 1.0) * 127.5) / 255.0


class GAN(Task):
  """DCGAN-style adversarial training of `config.model` (a model with `generate` and
  `discriminate` methods, e.g. 'dcgan'). Config (config.task): classifier_workdir,
  classifier_best, num_samples (sample-grid size), sample_seed."""

  default_mode = "min"
  supports_qat = False  # two players, each applied outside Task.apply

  def __init__(self, config: ml_collections.ConfigDict, model: Any, num_classes: int | None):
    super().__init__(config, model, num_classes)
    if not (hasattr(model, "generate") and hasattr(model, "discriminate")):
      raise ConfigError(f"config.task.name='gan' needs a generative model with generate and "
                        f"discriminate methods, e.g. config.model.name='dcgan'; got "
                        f"{config.model.name!r}.")
    if self.augment is not None:
      raise ConfigError("config.augment is not supported by task 'gan' (augmenting only the "
                        "real images would teach the generator the augmentations): turn it "
                        "off.")
    task = config.task
    self.latent_dim = int(model.latent_dim)
    self.image_shape = check_image_shape(model.image_shape)
    self.num_samples = int(task.get("num_samples", 64))
    self.sample_seed = int(task.get("sample_seed", 0))
    if self.num_samples < 1:
      raise ConfigError(f"config.task.num_samples must be >= 1, got {self.num_samples}.")
    dataset = config.dataset.name
    self.fid_name = f"fid_{dataset}_classifier"
    self.default_metric = self.fid_name
    self.classifier = classifier_features.load(str(task.get("classifier_workdir", "")),
                                               dataset, bool(task.get("classifier_best", False)))
    if tuple(self.classifier.input_shape) != self.image_shape:
      raise ConfigError(
          f"the feature classifier ({self.classifier.workdir}) takes images of shape "
          f"{tuple(self.classifier.input_shape)} but config.model.image_shape="
          f"{self.image_shape}: set --config.model.image_shape="
          f"'{tuple(self.classifier.input_shape)}', the dataset's image shape.")

  @classmethod
  def num_outputs(cls, num_classes: int | None, target_dim: int = 1) -> int:
    return 1  # the discriminator's real-vs-fake logit

  def metric_names(self) -> tuple[str, ...]:
    return ("loss", self.fid_name, "classifier_confidence", "real_classifier_confidence")

  # -- state ------------------------------------------------------------------------

  def create_state(self, rng: jax.Array, sample_inputs: jax.Array,
                   tx: optax.GradientTransformation) -> TrainState:
    """Both players' params and BatchNorm statistics, and one optimizer state per player:
    a joint Adam state would advance the idle player's moments and step count too."""
    if tuple(sample_inputs.shape[1:]) != self.image_shape:
      raise ConfigError(
          f"config.model.image_shape={self.image_shape} does not match the dataset's images "
          f"{tuple(sample_inputs.shape[1:])}: set --config.model.image_shape="
          f"'{tuple(sample_inputs.shape[1:])}'.")
    variables = self.init_variables(rng, sample_inputs)
    params = variables.pop("params")
    return TrainState(step=0, apply_fn=self.model.apply, params=params, tx=tx,
                      opt_state={p: tx.init(params[p]) for p in PLAYERS},
                      model_state=dict(variables))

  # -- training ---------------------------------------------------------------------

  def loss_and_sums(self, params, model_state, batch, rng):
    raise NotImplementedError("task 'gan' trains with its own two-player train_step")

  def _run(self, method: str, params: dict[str, Any], stats: dict[str, Any], x: jax.Array,
           train: bool) -> tuple[jax.Array, dict[str, Any]]:
    """Runs one player (`method` 'generate' or 'discriminate') with only its own params
    (e.g. {'generator': g}); returns (output, all batch_stats, its own updated)."""
    variables = {"params": params, "batch_stats": stats}
    if not train:
      return self.model.apply(variables, x, False, method=method), stats
    out, updated = self.model.apply(variables, x, True, method=method, mutable=["batch_stats"])
    return out, updated["batch_stats"]

  @staticmethod
  def _update(tx: optax.GradientTransformation, grads: Any, opt_state: Any,
              params: Any) -> tuple[Any, Any]:
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  def train_step(self, state: TrainState, batch: Batch,
                 rng: jax.Array) -> tuple[TrainState, Metrics]:
    """One discriminator step on reals vs G(z), then one generator step through the
    updated discriminator; the same z for both, as in the reference DCGAN."""
    real = prepare_inputs(batch["inputs"]) * 2.0 - 1.0
    n = real.shape[0]
    z = jax.random.normal(rng, (n, self.latent_dim), jnp.float32)
    g, d = state.params["generator"], state.params["discriminator"]
    old_stats = state.model_state["batch_stats"]

    # One generator forward serves both updates: its pull-back gives G's gradient later.
    fake, pull_back, stats = jax.vjp(
        lambda g: self._run("generate", {"generator": g}, old_stats, z, True), g, has_aux=True)

    def discriminate(d, stats, images):
      logits, stats = self._run("discriminate", {"discriminator": d}, stats, images, True)
      return logits[:, 0], stats

    def d_objective(d):
      real_logits, s = discriminate(d, stats, real)
      fake_logits, s = discriminate(d, s, jax.lax.stop_gradient(fake))
      losses = jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits)
      return losses.mean() + penalty(d, self.l1, self.l2), (s, losses, real_logits, fake_logits)

    d_grads, (stats, d_losses, real_logits, fake_logits) = jax.grad(
        d_objective, has_aux=True)(d)
    d, d_opt = self._update(state.tx, d_grads, state.opt_state["discriminator"], d)

    def g_objective(fake):
      logits, s = discriminate(d, stats, fake)
      losses = jax.nn.softplus(-logits)  # non-saturating: -log D(G(z))
      return losses.mean(), (s, losses)

    fake_grads, (stats, g_losses) = jax.grad(g_objective, has_aux=True)(fake)
    (g_grads,) = pull_back(fake_grads)
    if self.l1 or self.l2:
      g_grads = jax.tree.map(jnp.add, g_grads, jax.grad(penalty)(g, self.l1, self.l2))
    g, g_opt = self._update(state.tx, g_grads, state.opt_state["generator"], g)

    count = jnp.float32(n)
    sums = {"loss": (d_losses + g_losses).sum(), "d_loss": d_losses.sum(),
            "g_loss": g_losses.sum(), "d_real": jax.nn.sigmoid(real_logits).sum(),
            "d_fake": jax.nn.sigmoid(fake_logits).sum(),
            "d_grad_norm": optax.tree.norm(d_grads) * count,
            "g_grad_norm": optax.tree.norm(g_grads) * count, "count": count}
    new_state = state.replace(step=state.step + 1,
                              params={"generator": g, "discriminator": d},
                              opt_state={"generator": g_opt, "discriminator": d_opt},
                              model_state={"batch_stats": stats})
    return new_state, sums

  # -- evaluation -------------------------------------------------------------------

  def outputs(self, params, model_state, batch: Batch) -> dict[str, jax.Array]:
    z = latents(self.config.seed, batch["index"], self.latent_dim)
    fake = generate(self.model, params, model_state, z)
    real_features, real_logits = self.classifier.features_and_logits(batch["inputs"])
    fake_features, fake_logits = self.classifier.features_and_logits(to_unit_range(fake))
    stats = model_state["batch_stats"]
    real = prepare_inputs(batch["inputs"]) * 2.0 - 1.0
    d_real = self._run("discriminate", params, stats, real, False)[0][:, 0]
    d_fake = self._run("discriminate", params, stats, fake, False)[0][:, 0]
    loss = (jax.nn.softplus(-d_real) + jax.nn.softplus(d_fake) + jax.nn.softplus(-d_fake))
    return {"real_features": real_features, "fake_features": fake_features,
            "fake_confidence": jax.nn.softmax(fake_logits).max(-1),
            "real_confidence": jax.nn.softmax(real_logits).max(-1),
            "loss": loss.astype(jnp.float32)}

  def metrics(self, outputs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    return {self.fid_name: M.fid_from_features(outputs["real_features"],
                                               outputs["fake_features"]),
            "classifier_confidence": float(outputs["fake_confidence"].mean()),
            "real_classifier_confidence": float(outputs["real_confidence"].mean()),
            "loss": float(outputs["loss"].mean())}

  # -- samples ----------------------------------------------------------------------

  def on_evaluation(self, state: TrainState, step: int, workdir: str, writer: Any) -> None:
    """Writes samples/step_XXXXXX.png and the same grid as a TensorBoard image."""
    grid = sample_grid(self.model, state.params, state.model_state, self.num_samples,
                       self.sample_seed)
    if jax.process_index() == 0:
      images_lib.write_png(os.path.join(workdir, SAMPLES_DIR, f"step_{step:06d}.png"), grid)
      writer.image(step, "samples", grid)
