"""Image grids and PNG files, for samples a generative model writes into its workdir."""

from __future__ import annotations

import math
import os

import numpy as np


def to_uint8(images: np.ndarray) -> np.ndarray:
  """Images in [-1, 1] (a generator's tanh output) -> uint8 bytes, rounded like a PNG."""
  images = np.asarray(images, dtype=np.float32)
  return np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, columns: int = 0, padding: int = 2) -> np.ndarray:
  """(N, H, W, C) uint8 images tiled into one (rows*(H+p)+p, cols*(W+p)+p, C) image.

  `columns` 0 = as square as possible. Empty cells and the padding between images are
  black, as in torchvision's `make_grid`.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.dtype != np.uint8:
    raise ValueError(f"image_grid needs (N, H, W, C) uint8 images, got {images.shape} "
                     f"{images.dtype}")
  n, h, w, c = images.shape
  columns = columns or math.ceil(math.sqrt(n))
  rows = math.ceil(n / columns)
  grid = np.zeros((rows * (h + padding) + padding, columns * (w + padding) + padding, c),
                  np.uint8)
  for i, image in enumerate(images):
    r, col = divmod(i, columns)
    top, left = padding + r * (h + padding), padding + col * (w + padding)
    grid[top:top + h, left:left + w] = image
  return grid


def write_png(path: str, image: np.ndarray) -> str:
  """Writes an (H, W, 1) grey or (H, W, 3) RGB uint8 image as PNG, atomically."""
  from PIL import Image  # imported here: only runs that write images need it
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] not in (1, 3) or image.dtype != np.uint8:
    raise ValueError(f"write_png needs an (H, W, 1|3) uint8 image, got {image.shape} {image.dtype}")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp"
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(tmp, format="PNG")
  os.replace(tmp, path)
  return path
