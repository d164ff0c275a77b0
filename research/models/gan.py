"""DCGAN (Radford et al. 2016) for small images: 28x28x1 (MNIST family) or 32x32x3 (CIFAR).

One registered module, `dcgan`, holds both players as submodules, so that params and
BatchNorm statistics come as {'generator': ..., 'discriminator': ...} and a task can
update each player on its own. It is pure like every model here; the two-player train
step lives in `research/tasks/gan.py`.

  generate(z, train)      latent (B, latent_dim) -> images (B, H, W, C) in [-1, 1]
  discriminate(x, train)  images in [-1, 1] -> (B, num_outputs) logits (real vs fake)

Both nets have one stride-2 stage per halving of the image side, halving while the side
is even and larger than 4: 28 -> 14 -> 7 (two stages), 32 -> 16 -> 8 -> 4 (three).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.errors import ConfigError
from research.models.conv import conv_general_dilated
from research.models.registry import MODELS

# DCGAN's initialisation: conv and dense weights from N(0, 0.02).
_INIT = nn.initializers.normal(0.02)


def num_stages(side: int) -> int:
  """Stride-2 stages between the image side and the smallest feature map (>= 4, or odd)."""
  stages = 0
  while side % 2 == 0 and side > 4:
    side //= 2
    stages += 1
  return stages


def check_image_shape(image_shape: Any,
                      field: str = 'config.model.image_shape') -> tuple[int, int, int]:
  """(H, W, C) with H == W and at least one stride-2 stage; else a ConfigError."""
  shape = tuple(int(s) for s in image_shape) if isinstance(image_shape, (tuple, list)) else ()
  if len(shape) != 3 or min(shape) <= 0:
    raise ConfigError(f'{field} must be (height, width, channels), e.g. (28, 28, 1) or '
                      f'(32, 32, 3); got {image_shape!r}.')
  if shape[0] != shape[1] or num_stages(shape[0]) == 0:
    raise ConfigError(f'{field}={shape}: DCGAN needs square images whose side halves at '
                      'least once to a feature map of side >= 4 (e.g. 28 or 32).')
  return shape


# Output row 2m + a of a 4x4 stride-2 'SAME' transposed conv sums kernel tap t of input row
# m + shift, for (t, shift) in _TAPS[a] (the same for columns): taps a and a + 2, reading
# input rows m + a - 1 and m + a.
_TAPS = (((0, -1), (2, 0)), ((1, 0), (3, 1)))

# On CPU, an UpConv with at least this many output channels runs as four stride-1
# convolutions; a thinner one as a matmul and shifted adds (see UpConv).
_CPU_PHASE_MIN_CHANNELS = 16


def _shift(x: jax.Array, shift: int, axis: int) -> jax.Array:
  """x[i + shift] along `axis`, zero where that falls outside."""
  if shift == 0:
    return x
  n = x.shape[axis]
  pad = [(0, 0)] * x.ndim
  pad[axis] = (1, 0) if shift < 0 else (0, 1)
  start = 0 if shift < 0 else 1
  return jax.lax.slice_in_dim(jnp.pad(x, pad), start, start + n, axis=axis)


def _upconv_by_taps(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """One matmul (every input pixel times every kernel tap), then shifted adds."""
  b, h, w, c = x.shape
  features = kernel.shape[-1]
  taps = (x.reshape(-1, c) @ kernel.transpose(2, 0, 1, 3).reshape(c, -1)).reshape(
      b, h, w, 4, 4, features)
  rows = []
  for row_taps in _TAPS:
    cols = []
    for col_taps in _TAPS:
      cols.append(sum(_shift(_shift(taps[:, :, :, tx, ty], sx, 1), sy, 2)
                      for tx, sx in row_taps for ty, sy in col_taps))
    rows.append(jnp.stack(cols, axis=3))
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, features)


def _upconv_by_phases(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Each of the four output phases (row parity a, column parity b) is a 2x2 stride-1 conv
  of the input with taps kernel[a::2, b::2]; the phases are then interleaved."""
  b, h, w, _ = x.shape
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))

  def phase(row: int, col: int) -> jax.Array:
    return jax.lax.conv_general_dilated(
        padded[:, row:row + h + 1, col:col + w + 1], kernel[row::2, col::2], (1, 1), 'VALID',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  rows = [jnp.stack([phase(row, col) for col in (0, 1)], axis=3) for row in (0, 1)]
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, kernel.shape[-1])


class UpConv(nn.Module):
  """A 4x4 stride-2 'SAME' transposed convolution: `nn.ConvTranspose` with the same
  parameters and outputs, which doubles height and width.

  XLA:CPU computes the kernel gradient of `lax.conv_transpose` slowly (4x a matmul's time
  here), so on CPU it runs as four stride-1 2x2 convolutions, one per output phase
  (7x7x128 -> 14x14x64 at batch 256, forward and both gradients on 2 cores: about 100 ms,
  against 135-145 ms as one matmul and shifted adds and 780-890 ms as `lax.conv_transpose`),
  or, below 16 output channels, where XLA's convolutions are slow, as that matmul and
  shifted adds (the image layer 14x14x64 -> 28x28x1: 6 ms vs 114 ms as phases). Elsewhere it
  calls `lax.conv_transpose` (cuDNN).
  """

  features: int
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', _INIT, (4, 4, x.shape[-1], self.features), jnp.float32)
    x, kernel = jnp.asarray(x, self.dtype), kernel.astype(self.dtype)
    if jax.default_backend() != 'cpu':
      y = jax.lax.conv_transpose(x, kernel, (2, 2), 'SAME',
                                 dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    elif self.features >= _CPU_PHASE_MIN_CHANNELS:
      y = _upconv_by_phases(x, kernel)
    else:
      y = _upconv_by_taps(x, kernel)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,),
                         jnp.float32).astype(self.dtype)
    return y


def _norm(train: bool, dtype: Any, name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      dtype=dtype, param_dtype=jnp.float32, name=name)


class Generator(nn.Module):
  """z -> Dense, reshape -> BN ReLU -> [UpConv (4x4 transposed conv) -> BN ReLU]* -> UpConv
  -> tanh.

  `refine_kernel` k > 0 adds a k x k stride-1 convolution (BN, ReLU) after the projection
  that halves its width, as TensorFlow's DCGAN tutorial (and torch_reference.py's `dcgan`)
  do with k = 5 and a projection twice as wide (`project_width`).
  """

  image_shape: tuple[int, int, int]
  base_width: int = 64
  dtype: Any = jnp.float32
  project_width: int = 0   # 0: base_width * 2 ** (stages - 1), Radford et al.'s rule
  refine_kernel: int = 0

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    side, _, channels = self.image_shape
    stages = num_stages(side)
    start = side // 2 ** stages
    width = self.project_width or self.base_width * 2 ** (stages - 1)
    x = nn.Dense(start * start * width, use_bias=False, kernel_init=_INIT, dtype=self.dtype,
                 param_dtype=jnp.float32, name='project')(jnp.asarray(z, self.dtype))
    x = x.reshape((x.shape[0], start, start, width))
    x = nn.relu(_norm(train, self.dtype, 'project_bn')(x))
    if self.refine_kernel:
      width //= 2
      x = nn.Conv(width, (self.refine_kernel,) * 2, padding='SAME', use_bias=False,
                  kernel_init=_INIT, dtype=self.dtype, param_dtype=jnp.float32,
                  name='refine')(x)
      x = nn.relu(_norm(train, self.dtype, 'refine_bn')(x))
    for i in range(stages - 1):
      width //= 2
      x = UpConv(width, use_bias=False, dtype=self.dtype, name=f'deconv{i + 1}')(x)
      x = nn.relu(_norm(train, self.dtype, f'deconv{i + 1}_bn')(x))
    x = UpConv(channels, dtype=self.dtype, name='to_image')(x)
    return jnp.tanh(x.astype(jnp.float32))


class Discriminator(nn.Module):
  """[Conv 4x4/2 -> (BN) -> LeakyReLU 0.2]* -> Dense(num_outputs); no BN on the first conv."""

  base_width: int = 64
  num_outputs: int = 1
  batchnorm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = jnp.asarray(x, self.dtype)
    for i in range(num_stages(x.shape[1])):
      x = nn.Conv(self.base_width * 2 ** i, (4, 4), (2, 2), padding='SAME',
                  use_bias=not (self.batchnorm and i > 0), kernel_init=_INIT,
                  dtype=self.dtype, param_dtype=jnp.float32,
                  conv_general_dilated=conv_general_dilated, name=f'conv{i + 1}')(x)
      if self.batchnorm and i > 0:
        x = _norm(train, self.dtype, f'conv{i + 1}_bn')(x)
      x = nn.leaky_relu(x, 0.2)
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_outputs, kernel_init=_INIT, dtype=self.dtype,
                    param_dtype=jnp.float32, name='head')(x).astype(jnp.float32)


@MODELS.register('dcgan')
class DCGAN(nn.Module):
  """Generator and discriminator of a DCGAN, as the submodules 'generator' / 'discriminator'.

  Attributes:
    image_shape: (H, W, C) of the images, e.g. (28, 28, 1); must match the dataset.
    latent_dim: size of the Gaussian latent z.
    base_width: channels of the discriminator's first conv (and the generator's last
      hidden layer); each stage doubles it.
    discriminator_batchnorm: BatchNorm after the discriminator's inner convs (DCGAN does).
    project_width, refine_kernel: see `Generator` (0, 0: Radford et al.'s generator).
    num_outputs: discriminator logits (1: real vs fake); filled in by the task.
  """

  num_outputs: int
  image_shape: tuple[int, int, int] = (28, 28, 1)
  latent_dim: int = 100
  base_width: int = 64
  discriminator_batchnorm: bool = True
  project_width: int = 0
  refine_kernel: int = 0
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    check_image_shape(self.image_shape)
    for field in ('latent_dim', 'base_width'):
      value = getattr(self, field)
      if not isinstance(value, int) or value < 1:
        raise ConfigError(f'config.model.{field} must be a positive integer, got {value!r}.')
    for field in ('project_width', 'refine_kernel'):
      value = getattr(self, field)
      if not isinstance(value, int) or value < 0:
        raise ConfigError(f'config.model.{field} must be an integer >= 0 (0: off), got '
                          f'{value!r}.')
    super().__post_init__()

  def setup(self) -> None:
    self.generator = Generator(tuple(self.image_shape), self.base_width, self.dtype,
                               self.project_width, self.refine_kernel)
    self.discriminator = Discriminator(self.base_width, self.num_outputs,
                                       self.discriminator_batchnorm, self.dtype)

  def generate(self, z: jax.Array, train: bool = False) -> jax.Array:
    return self.generator(z, train)

  def discriminate(self, images: jax.Array, train: bool = False) -> jax.Array:
    return self.discriminator(images, train)

  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    """Discriminator logits of `images` and of as many generated ones (initialises both)."""
    z = jnp.zeros((images.shape[0], self.latent_dim), self.dtype)
    return jnp.concatenate([self.discriminate(images, train),
                            self.discriminate(self.generate(z, train), train)])
