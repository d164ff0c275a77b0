"""Data order as a pure function of (seed, step), and small datasets living on device.

The host computes only batch *indices* (a seeded permutation per epoch, cheap); the
examples themselves are put on the devices once and gathered inside the compiled step.
So a resumed run sees exactly the batches it would have seen, and no examples cross
the host-device boundary during training.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import Mesh

from research.data.dataset import Split
from research.training import mesh as mesh_lib


class EpochOrder:
  """Batches of a split: epoch e uses permutation `default_rng([seed, e])`.

  The last incomplete batch of each epoch is dropped so compiled shapes stay fixed. With
  `group=k` (gradient accumulation over k batches) an epoch keeps a multiple of k batches,
  so batches k*s .. k*s+k-1 hold exactly the examples of batch s of an order with
  `batch_size * k` and no grouping: accumulating k batches of B sees what one step of kB sees.

  Length bucketing (`lengths`, the real length of each example, and `buckets`): the epoch's
  permutation is cut into pools of POOL_BATCHES batches, each pool sorted by length and
  split into batches, and the batches shuffled (the "sortish" order of fastai and
  tf.data's bucket_by_sequence_length). A batch then holds texts of similar length, and
  `length(step)` is the smallest bucket that holds its longest one: the train step runs on
  that many positions instead of the split's padded length (one compilation per bucket).
  Still a pure function of (seed, epoch).
  """

  POOL_BATCHES = 50

  def __init__(self, num_examples: int, batch_size: int, seed: int, group: int = 1,
               lengths: np.ndarray | None = None, buckets: tuple[int, ...] = ()):
    self.num_examples = num_examples
    self.batch_size = batch_size
    self.seed = seed
    self.steps_per_epoch = num_examples // (batch_size * group) * group
    self.lengths = None if lengths is None else np.asarray(lengths)
    self.buckets = np.asarray(sorted(buckets), np.int64)

  @functools.lru_cache(maxsize=2)
  def _batches(self, epoch: int) -> np.ndarray:
    """(steps_per_epoch, batch_size) example indices of `epoch`."""
    rng = np.random.default_rng([self.seed, epoch])
    used = self.steps_per_epoch * self.batch_size
    order = rng.permutation(self.num_examples).astype(np.int32)[:used]
    if self.lengths is None:
      return order.reshape(self.steps_per_epoch, self.batch_size)
    pool = self.batch_size * self.POOL_BATCHES
    pools = [order[i:i + pool] for i in range(0, used, pool)]
    order = np.concatenate([p[np.argsort(-self.lengths[p], kind="stable")] for p in pools])
    batches = order.reshape(self.steps_per_epoch, self.batch_size)
    return batches[rng.permutation(self.steps_per_epoch)]

  def indices(self, step: int) -> np.ndarray:
    """Example indices of the batch used by global step `step` (0-based)."""
    epoch, i = divmod(step, self.steps_per_epoch)
    return self._batches(epoch)[i]

  def length(self, step: int) -> int:
    """The bucket that holds every example of batch `step` (only with `lengths`)."""
    longest = int(self.lengths[self.indices(step)].max())
    return int(self.buckets[np.searchsorted(self.buckets, longest)])

  def chunk_length(self, start_step: int, num_steps: int) -> int | None:
    """The positions a chunk of steps runs on: None (all) without bucketing."""
    if self.lengths is None:
      return None
    return max(self.length(s) for s in range(start_step, start_step + num_steps))

  def window(self, epoch: int) -> np.ndarray:
    """(2 * steps_per_epoch, batch_size) indices of epochs `epoch` and `epoch + 1`.

    Uploaded once per epoch; a chunk of steps starting in `epoch` reads its rows on device,
    so chunks may cross into the next epoch.
    """
    return np.concatenate([self._batches(e) for e in (epoch, epoch + 1)])

  def block(self, start_step: int, num_steps: int) -> np.ndarray:
    """(num_steps, batch_size) indices for steps start_step .. start_step+num_steps-1."""
    return np.stack([self.indices(s) for s in range(start_step, start_step + num_steps)])


def token_lengths(inputs: np.ndarray, pad_id: int = 0) -> np.ndarray:
  """Each right-padded sequence's length: the position after its last non-padding token."""
  real = np.asarray(inputs) != pad_id
  return np.where(real.any(axis=1), real.shape[1] - np.argmax(real[:, ::-1], axis=1), 0)


def length_order(split: Split, batch_size: int, seed: int, group: int,
                 buckets: tuple[int, ...]) -> EpochOrder:
  """The train order, bucketed by length when `buckets` are given (see EpochOrder)."""
  if not buckets:
    return EpochOrder(len(split), batch_size, seed, group=group)
  padded = split.inputs.shape[1]
  return EpochOrder(len(split), batch_size, seed, group=group,
                    lengths=token_lengths(split.inputs),
                    buckets=tuple(b for b in buckets if b < padded) + (padded,))


def put_split(split: Split, mesh: Mesh) -> dict[str, jax.Array]:
  """The whole split on every device (replicated): small data, gathered in the step.

  `index` (each example's position in its split) travels with the batches, so a task can
  make per-example randomness that does not depend on batching, e.g. a GAN's evaluation
  latents; tasks that do not need it ignore it (and XLA drops the unused gather).
  """
  return mesh_lib.put({"inputs": split.inputs, "labels": split.labels,
                       "index": np.arange(len(split), dtype=np.int32)}, mesh_lib.replicated(mesh))


def put_window(order: EpochOrder, epoch: int, mesh: Mesh) -> tuple[jax.Array, jax.Array]:
  """`order.window(epoch)` on the mesh, each batch's columns split over the batch axes (each
  device, and each process, holds only the indices of its slice), and the window's first step.
  """
  window = mesh_lib.put(order.window(epoch), mesh_lib.batch_sharded(mesh, leading_axes=1))
  start = mesh_lib.put(np.int32(epoch * order.steps_per_epoch), mesh_lib.replicated(mesh))
  return window, start


def eval_blocks(num_examples: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Indices (num_batches, batch_size) covering a split in order, and a validity mask.

  The last batch is padded with index 0 and masked out, so every example counts once.
  """
  num_batches = -(-num_examples // batch_size)
  flat = np.arange(num_batches * batch_size, dtype=np.int32)
  mask = flat < num_examples
  flat = np.where(mask, flat, 0)
  return flat.reshape(num_batches, batch_size), mask.reshape(num_batches, batch_size)
