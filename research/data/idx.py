"""A reader for the IDX format that MNIST and Fashion-MNIST are distributed in.

IDX (http://yann.lecun.com/exdb/mnist/): a big-endian header -- two zero bytes, a type byte
(0x08 = uint8), the number of dimensions, then one uint32 per dimension -- followed by the values.
Upstream ships the files gzip-compressed. Every way a downloaded file commonly goes wrong (missing,
not gzip, cut short, the wrong file under the right name) raises DataError naming the file, so
the user learns which file to replace instead of seeing a reshape error.
"""

from __future__ import annotations

import math
import os
import struct
import zlib

import numpy as np

from research.data.dataset import check_labels
from research.errors import DataError

UINT8_TYPE = 0x08
LABELS_MAGIC = 0x00000801  # uint8, 1-D.
IMAGES_MAGIC = 0x00000803  # uint8, 3-D.


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads a uint8 IDX file (gzip-compressed if its name ends in .gz) into a read-only array."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DataError(f"IDX file {path} does not exist: download it there, or set "
                    "dataset.data_dir to the directory that holds it.")
  with open(path, "rb") as f:
    raw = f.read()
  if path.endswith(".gz"):
    data, complete = _gunzip(path, raw)
  else:
    data, complete = raw, True

  def truncated(expected: int, what: str) -> DataError:
    why = "the gzip stream ends early" if not complete else "the file ends early"
    return DataError(f"IDX file {path} is truncated: expected {expected} bytes ({what}) but it "
                     f"holds only {len(data)} ({why}); the download was probably interrupted: "
                     "re-download it.")

  if len(data) < 4:
    raise truncated(4, "at least, for the magic number")
  magic, = struct.unpack(">I", data[:4])
  ndim = data[3]
  if data[0] != 0 or data[1] != 0 or data[2] != UINT8_TYPE or ndim == 0:
    raise DataError(
        f"IDX file {path} has magic number 0x{magic:08x}, expected 0x{LABELS_MAGIC:08x} "
        f"(uint8 labels) or 0x{IMAGES_MAGIC:08x} (uint8 images): it is not a uint8 IDX file, "
        "but another file saved under this name, or corrupt: re-download it.")
  header_size = 4 + 4 * ndim
  if len(data) < header_size:
    raise truncated(header_size, "at least, for the header")
  dims = struct.unpack(f">{ndim}I", data[4:header_size])
  num_values = math.prod(dims)
  expected = header_size + num_values
  if len(data) < expected:
    raise truncated(expected, f"header + {' x '.join(map(str, dims))} values")
  if not complete:
    raise DataError(f"IDX file {path} is truncated: it holds all {expected} bytes its header "
                    "declares, but its gzip stream ends before the end-of-stream checksum, so "
                    "they cannot be verified; the download was probably interrupted: "
                    "re-download it.")
  if len(data) > expected:
    raise DataError(f"IDX file {path} has {len(data) - expected} bytes after the "
                    f"{' x '.join(map(str, dims))} values its header declares ({expected} bytes "
                    f"expected, {len(data)} found): it is corrupt: re-download it.")
  return np.frombuffer(data, dtype=np.uint8, count=num_values, offset=header_size).reshape(dims)


def read_images_and_labels(images_path: str | os.PathLike, labels_path: str | os.PathLike,
                           image_shape: tuple[int, int], num_classes: int,
                           split_name: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads an IDX images/labels pair as uint8 (N, H, W, 1) images and int32 (N,) labels.

  Checks what a single file cannot: that the images file holds images of `image_shape`, the
  labels file 1-D labels in [0, num_classes), and that both have the same number of examples.
  """
  images_path, labels_path = os.fspath(images_path), os.fspath(labels_path)
  images = read_idx(images_path)
  labels = read_idx(labels_path)
  if images.ndim != 3 or images.shape[1:] != tuple(image_shape):
    raise DataError(
        f"IDX file {images_path} holds an array of shape {images.shape}, expected images of "
        f"shape (N, {image_shape[0]}, {image_shape[1]}) (magic 0x{IMAGES_MAGIC:08x}): it is "
        "not this dataset's images file: re-download it.")
  if labels.ndim != 1:
    raise DataError(
        f"IDX file {labels_path} holds an array of shape {labels.shape}, expected 1-D labels "
        f"(magic 0x{LABELS_MAGIC:08x}): it is not a labels file: re-download it.")
  if len(images) != len(labels):
    raise DataError(
        f"IDX files {images_path} ({len(images)} images) and {labels_path} ({len(labels)} "
        "labels) disagree on the number of examples: they come from different splits or "
        "versions: re-download both.")
  check_labels(split_name, labels, num_classes, source=labels_path)
  return images[..., None], labels.astype(np.int32)


def _gunzip(path: str, raw: bytes) -> tuple[bytes, bool]:
  """Decompresses all gzip members of `raw`; returns (data, whether the stream ended properly).

  Decompressing incrementally (rather than with gzip.decompress) keeps the data of a truncated
  file, so the error can say how much of it there is.
  """
  chunks = []
  remaining = raw
  while True:
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
      chunks.append(decompressor.decompress(remaining))
    except zlib.error as e:
      if chunks:  # Garbage after a complete member: what `gzip` itself tolerates is zeros.
        raise DataError(f"{path} has data after its gzip stream that is not gzip ({e}): it is "
                        "corrupt: re-download it.") from e
      raise DataError(f"{path} is not a readable gzip file ({e}): it is corrupt or not "
                      "compressed (then drop the .gz suffix): re-download it.") from e
    if not decompressor.eof:
      return b"".join(chunks), False
    remaining = decompressor.unused_data
    if not remaining.strip(b"\0"):
      return b"".join(chunks), True
