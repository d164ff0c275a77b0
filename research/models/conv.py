"""`conv_general_dilated`: `lax.conv_general_dilated`, but fast for single-channel images on CPU.

XLA:CPU's convolution kernel is built for many input channels. The first layer of an
MNIST-family model has one, and there its forward pass is several times slower than the
same arithmetic written out: one broadcast multiply-add per kernel tap, which XLA fuses
into a single loop (Keras CNN conv1, 28x28x1 -> 26x26x32 at batch 64 on 2 cores: about
0.2 ms against 1.3-1.5 ms; PyTorch's oneDNN takes 0.3 ms). A custom VJP keeps the backward
pass out of that loop: the kernel gradient is one matmul and the input gradient XLA's own
(autodiff of the taps would reduce over broadcasts: 19 ms). The whole `seed_cnn` step got
about 10% faster (BENCHMARKS.md).

Pass it to a flax conv (`nn.Conv(..., conv_general_dilated=conv_general_dilated)`). Any
convolution it does not cover (more than one input channel, dilation, feature groups, a
layout other than flax's channels-last, or a backend other than CPU, where cuDNN has no
such weakness) goes to `lax.conv_general_dilated` unchanged.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax import lax

Padding = tuple[tuple[int, int], ...]


def _is_channels_last(dimension_numbers: Any, ndim: int) -> bool:
  """True for flax's layout: (batch, spatial..., features) input and output, HWIO kernel."""
  if dimension_numbers is None or ndim != 4:
    return False
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return (tuple(dimension_numbers.lhs_spec) == (0, 3, 1, 2)
            and tuple(dimension_numbers.rhs_spec) == (3, 2, 0, 1)
            and tuple(dimension_numbers.out_spec) == (0, 3, 1, 2))
  return tuple(dimension_numbers) == ('NHWC', 'HWIO', 'NHWC')


def _windows(x: jax.Array, kernel_shape: tuple[int, ...], strides: tuple[int, ...],
             padding: Padding) -> list[jax.Array]:
  """For each kernel tap (i, j), row-major, the strided input window it multiplies."""
  kh, kw = kernel_shape[:2]
  padded = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  rows = (padded.shape[1] - kh) // strides[0] + 1
  cols = (padded.shape[2] - kw) // strides[1] + 1
  return [lax.slice(padded, (0, i, j, 0),
                    (padded.shape[0], i + (rows - 1) * strides[0] + 1,
                     j + (cols - 1) * strides[1] + 1, padded.shape[3]), (1, *strides, 1))
          for i in range(kh) for j in range(kw)]


def _by_taps(x: jax.Array, kernel: jax.Array, strides: tuple[int, ...],
             padding: Padding) -> jax.Array:
  """Sum over kernel taps of the tap's input window times its kernel row, accumulated in
  float32 (as XLA's convolution accumulates)."""
  taps = kernel.astype(jnp.float32).reshape(-1, kernel.shape[-1])
  out = None
  for window, tap in zip(_windows(x.astype(jnp.float32), kernel.shape, strides, padding),
                         taps):
    term = window * tap
    out = term if out is None else out + term
  return out.astype(jnp.result_type(x, kernel))


def _lax_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, ...],
              padding: Padding) -> jax.Array:
  return lax.conv_general_dilated(x, kernel, strides, padding,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _single_channel_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, ...],
                         padding: Padding) -> jax.Array:
  return _by_taps(x, kernel, strides, padding)


def _forward(x, kernel, strides, padding):
  return _by_taps(x, kernel, strides, padding), (x, kernel)


def _backward(strides, padding, residuals, cotangent):
  """The kernel gradient as one matmul, (taps, positions) x (positions, features); XLA's
  kernel-gradient convolution would first transpose the cotangent. The input gradient
  is XLA's own (its unused parts are dead code under jit when the input is data)."""
  x, kernel = residuals
  features = kernel.shape[-1]
  windows = jnp.stack([w.reshape(-1) for w in _windows(x, kernel.shape, strides, padding)])
  kernel_grad = lax.dot_general(windows, cotangent.reshape(-1, features),
                                (((1,), (0,)), ((), ())),
                                preferred_element_type=jnp.float32)
  _, input_vjp = jax.vjp(lambda v: _lax_conv(v, kernel, strides, padding), x)
  return input_vjp(cotangent)[0], kernel_grad.reshape(kernel.shape).astype(kernel.dtype)


_single_channel_conv.defvjp(_forward, _backward)


def _all_ones(values: Sequence[int] | None) -> bool:
  return values is None or all(v == 1 for v in values)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]],
                         lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision: Any = None,
                         preferred_element_type: Any = None) -> jax.Array:
  """`lax.conv_general_dilated`, computed tap by tap for one input channel on CPU."""
  if (jax.default_backend() == 'cpu' and _is_channels_last(dimension_numbers, lhs.ndim)
      and lhs.shape[-1] == 1 and _all_ones(lhs_dilation) and _all_ones(rhs_dilation)
      and feature_group_count == 1 and batch_group_count == 1
      and preferred_element_type is None):
    strides = tuple(int(s) for s in window_strides)
    if isinstance(padding, str):
      padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
    return _single_channel_conv(lhs, rhs, strides, tuple(tuple(map(int, p)) for p in padding))
  return lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type)
