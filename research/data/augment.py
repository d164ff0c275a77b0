"""Image augmentation on device, inside the compiled train step.

Batches are gathered on device from uint8 images, so augmenting there costs no host work and
no transfer: each op is a few vectorised gathers/selects on the batch, drawn from the step's
RNG (so a resumed run augments exactly as the uninterrupted one). Evaluation never augments.

`config.augment` (all off by default):
  random_crop_padding  pad each side by p pixels (zeros), then crop back at a random offset
  horizontal_flip      flip left-right with probability 1/2
  cutout_size          zero one random square of this side (DeVries & Taylor, 2017)
  mixup_alpha          mix pairs of examples with weight ~ Beta(a, a) (Zhang et al., 2018);
                       the batch gains `mix_labels` / `mix_weight`, which the classification
                       task turns into the mixed loss
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from research.errors import ConfigError

Batch = dict[str, jax.Array]
Augment = Callable[[Batch, jax.Array], Batch]


def default_augment_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      random_crop_padding=0, horizontal_flip=False, cutout_size=0, mixup_alpha=0.0))


def validate(config: ml_collections.ConfigDict) -> None:
  for field in ("random_crop_padding", "cutout_size", "mixup_alpha"):
    if config[field] < 0:
      raise ConfigError(f"config.augment.{field} must be >= 0 (0 = off), got {config[field]}.")


def random_crop(images: jax.Array, rng: jax.Array, padding: int) -> jax.Array:
  """Zero-pads (B, H, W, C) images by `padding` and crops each back at a random offset."""
  b, h, w, _ = images.shape
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = jax.random.randint(rng, (b, 2), 0, 2 * padding + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, image.shape[-1]))

  return jax.vmap(crop)(padded, offsets)


def horizontal_flip(images: jax.Array, rng: jax.Array) -> jax.Array:
  flip = jax.random.bernoulli(rng, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1], images)


def cutout(images: jax.Array, rng: jax.Array, size: int) -> jax.Array:
  """Zeroes one size x size square per image, centred anywhere (clipped at the borders)."""
  b, h, w, _ = images.shape
  cy_rng, cx_rng = jax.random.split(rng)
  cy = jax.random.randint(cy_rng, (b, 1, 1, 1), 0, h)
  cx = jax.random.randint(cx_rng, (b, 1, 1, 1), 0, w)
  ys = jnp.arange(h)[None, :, None, None]
  xs = jnp.arange(w)[None, None, :, None]
  inside = ((ys >= cy - size // 2) & (ys < cy - size // 2 + size)
            & (xs >= cx - size // 2) & (xs < cx - size // 2 + size))
  return jnp.where(inside, jnp.zeros((), images.dtype), images)


def mixup(batch: Batch, rng: jax.Array, alpha: float) -> Batch:
  """Mixes each example with a random partner; inputs become float32."""
  weight_rng, perm_rng = jax.random.split(rng)
  weight = jax.random.beta(weight_rng, alpha, alpha)
  partner = jax.random.permutation(perm_rng, batch["labels"].shape[0])
  inputs = batch["inputs"]
  if inputs.dtype == jnp.uint8:  # keep the task's [0, 1] scaling of image bytes
    inputs = inputs.astype(jnp.float32) / 255.0
  inputs = inputs.astype(jnp.float32)
  return dict(batch, inputs=weight * inputs + (1 - weight) * inputs[partner],
              mix_labels=batch["labels"][partner], mix_weight=weight)


def make_augment(config: ml_collections.ConfigDict | None) -> Augment | None:
  """The train-time augmentation `config.augment` asks for, or None when it is all off."""
  if config is None:
    return None
  validate(config)
  pad, flip = int(config.random_crop_padding), bool(config.horizontal_flip)
  hole, alpha = int(config.cutout_size), float(config.mixup_alpha)
  if not (pad or flip or hole or alpha):
    return None

  def augment(batch: Batch, rng: jax.Array) -> Batch:
    crop_rng, flip_rng, cut_rng, mix_rng = jax.random.split(rng, 4)
    images = batch["inputs"]
    if images.ndim != 4 and (pad or flip or hole):
      raise ConfigError(f"config.augment crops/flips/cutout need (N, H, W, C) images, got "
                        f"inputs of shape {images.shape[1:]}: turn them off for this dataset.")
    if pad:
      images = random_crop(images, crop_rng, pad)
    if flip:
      images = horizontal_flip(images, flip_rng)
    if hole:
      images = cutout(images, cut_rng, hole)
    batch = dict(batch, inputs=images)
    return mixup(batch, mix_rng, alpha) if alpha else batch

  return augment
