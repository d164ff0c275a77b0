"""Post-training symmetric quantisation of weights (int8 by default), one scale per channel.

A kernel `w` (Dense: (in, out); Conv: (h, w, in, out); LSTM gates likewise) is stored as
`q = round(w / s)` in int8 with `s = max|w| / 127` over every axis but the last (the output
channel), so `|w - q * s| <= s / 2` element-wise. With `bits` < 8 the same scheme uses
`qmax = 2**(bits-1) - 1` levels (7 for 4 bits), still stored one value per int8 byte (no
bit packing: the compressed npz shows what packing would save). Embedding tables get one
scale per row (per token), the axis they are looked up by. Biases and normalisation
parameters stay float32: they are a tiny part of the bytes and the most sensitive to
rounding. Evaluation runs the model on the dequantised float weights (`q * s`): it measures
what the rounding costs in accuracy, not int8 arithmetic speed.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import Any

import jax
import numpy as np

from research.errors import CheckpointError
from research.training.transfer import path_name

# Arrays of the .npz files, by parameter path: 'conv1/kernel.q', '.scale', '.float'.
QUANTIZED, SCALE, FLOAT = ".q", ".scale", ".float"


def channel_axis(path: str, ndim: int) -> int | None:
  """The axis with one scale per entry, or None to keep the parameter in float32."""
  if ndim < 2:
    return None
  name = path.rsplit("/", 1)[-1]
  if name == "embedding":
    return 0
  if name == "kernel":
    return ndim - 1
  return None


def levels(bits: int) -> int:
  """The largest quantised magnitude: 127 for int8, 7 for int4."""
  if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
    raise ValueError(f"bits must be an integer in [2, 8], got {bits!r}")
  return 2 ** (bits - 1) - 1


def round_per_channel(w: Any, axis: int, bits: int, xp: Any = np) -> tuple[Any, Any]:
  """(w / scale rounded to the integers in [-qmax, qmax], scale with w's rank): the one
  rounding rule, shared by post-training quantisation (numpy) and QAT (`xp=jax.numpy`)."""
  qmax = levels(bits)
  reduce = tuple(a for a in range(w.ndim) if a != axis % w.ndim)
  scale = xp.max(xp.abs(w), axis=reduce, keepdims=True) / xp.asarray(qmax, w.dtype)
  safe = xp.where(scale > 0, scale, xp.ones_like(scale))
  return xp.clip(xp.round(w / safe), -qmax, qmax), scale


def quantize_array(w: np.ndarray, axis: int,
                   bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
  """(int8 values, float32 scales of shape w.shape[axis]); a channel of zeros gets scale 0."""
  q, scale = round_per_channel(np.asarray(w, np.float32), axis, bits)
  return q.astype(np.int8), scale.reshape(-1)


def dequantize_array(q: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
  shape = [1] * q.ndim
  shape[axis] = -1
  return q.astype(np.float32) * scale.reshape(shape)


def quantize_params(params: Any, bits: int = 8) -> dict[str, np.ndarray]:
  """The parameters as flat arrays by path: int8 + scales where `channel_axis` says, else
  float32. What `save` writes and `dequantize_params` reads."""
  levels(bits)
  arrays = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(jax.device_get(params)):
    name, leaf = path_name(path), np.asarray(leaf)
    axis = channel_axis(name, leaf.ndim)
    if axis is None:
      arrays[name + FLOAT] = leaf.astype(np.float32)
    else:
      arrays[name + QUANTIZED], arrays[name + SCALE] = quantize_array(leaf, axis, bits)
  return arrays


def dequantize_params(arrays: dict[str, np.ndarray], like: Any) -> Any:
  """Float parameters of `like`'s structure and dtypes from `quantize_params`' arrays."""

  def restore(path, leaf):
    name = path_name(path)
    if name + FLOAT in arrays:
      value = arrays[name + FLOAT]
    elif name + QUANTIZED in arrays:
      q = arrays[name + QUANTIZED]
      value = dequantize_array(q, arrays[name + SCALE], channel_axis(name, q.ndim))
    else:
      raise CheckpointError(f"the quantised weights hold no parameter {name!r}: they were "
                            "made from another model; quantise this workdir again.")
    if value.shape != tuple(leaf.shape):
      raise CheckpointError(f"quantised parameter {name!r} has shape {value.shape}, the model "
                            f"{tuple(leaf.shape)}: quantise this workdir again.")
    return value.astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(restore, like)


def float_arrays(params: Any) -> dict[str, np.ndarray]:
  """The float32 parameters by path: the baseline whose bytes int8 is compared with."""
  return {path_name(p) + FLOAT: np.asarray(v, np.float32)
          for p, v in jax.tree_util.tree_leaves_with_path(jax.device_get(params))}


def save(path: str, arrays: dict[str, np.ndarray], compressed: bool = False) -> int:
  """Writes an .npz (atomically: a temporary file renamed); returns its size in bytes."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    (np.savez_compressed if compressed else np.savez)(f, **arrays)
  os.replace(tmp, path)
  return os.path.getsize(path)


def load(path: str) -> dict[str, np.ndarray]:
  try:
    with np.load(path) as data:
      return {k: data[k] for k in data.files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise CheckpointError(f"{path} is not a readable .npz of quantised weights ({e}); "
                          "quantise the workdir again (python -m launch.quantize).") from e


def payload_bytes(arrays: dict[str, np.ndarray]) -> int:
  """Bytes of the arrays themselves (no file format overhead)."""
  return int(sum(a.nbytes for a in arrays.values()))


def npz_bytes(arrays: dict[str, np.ndarray], compressed: bool) -> int:
  """Size the .npz of `arrays` would have, without writing it."""
  buffer = io.BytesIO()
  (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
  return buffer.getbuffer().nbytes
