"""Tests for research.models.conv: the single-channel convolution equals XLA's own."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from research.models.conv import conv_general_dilated

CASES = [  # input shape, kernel shape, strides, padding
    ((4, 28, 28, 1), (3, 3, 1, 32), (1, 1), 'VALID'),     # Keras CNN conv1
    ((3, 28, 28, 1), (5, 5, 1, 6), (1, 1), 'SAME'),       # LeNet-5 conv1
    ((4, 28, 28, 1), (4, 4, 1, 8), (2, 2), 'SAME'),       # DCGAN discriminator conv1
    ((2, 9, 7, 1), (3, 2, 1, 4), (2, 1), ((1, 2), (0, 1))),  # odd sizes, explicit padding
]


def _dimension_numbers(x, kernel):
  return lax.conv_dimension_numbers(x.shape, kernel.shape, ('NHWC', 'HWIO', 'NHWC'))


def _inputs(x_shape, kernel_shape):
  x = jax.random.normal(jax.random.key(0), x_shape)
  return x, jax.random.normal(jax.random.key(1), kernel_shape) * 0.3


@pytest.mark.parametrize('x_shape, kernel_shape, strides, padding', CASES)
def test_values_and_both_gradients_match_lax(x_shape, kernel_shape, strides, padding):
  x, kernel = _inputs(x_shape, kernel_shape)
  numbers = _dimension_numbers(x, kernel)

  def loss(conv, x, kernel):  # sin: a cotangent that differs at every output
    return jnp.sum(jnp.sin(conv(x, kernel, strides, padding, dimension_numbers=numbers)))

  ours = jax.jit(jax.value_and_grad(functools.partial(loss, conv_general_dilated), (0, 1)))
  ref = jax.jit(jax.value_and_grad(functools.partial(loss, lax.conv_general_dilated), (0, 1)))
  (value, (dx, dk)), (value_ref, (dx_ref, dk_ref)) = ours(x, kernel), ref(x, kernel)
  np.testing.assert_allclose(value, value_ref, rtol=1e-5)
  np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dk, dk_ref, rtol=1e-5, atol=1e-4)


def test_single_channel_forward_runs_without_a_convolution_on_cpu():
  x, kernel = _inputs(*CASES[0][:2])
  jaxpr = str(jax.make_jaxpr(lambda x, k: conv_general_dilated(
      x, k, (1, 1), 'VALID', dimension_numbers=_dimension_numbers(x, k)))(x, kernel))
  assert 'conv_general_dilated' not in jaxpr


@pytest.mark.parametrize('why, x_shape, kwargs', [
    ('three input channels', (2, 8, 8, 3), {}),
    ('kernel dilation', (2, 8, 8, 1), {'rhs_dilation': (2, 2)}),
    ('input dilation', (2, 8, 8, 1), {'lhs_dilation': (2, 2)}),
])
def test_other_convolutions_go_to_lax_unchanged(why, x_shape, kwargs):
  x, kernel = _inputs(x_shape, (3, 3, x_shape[-1], 4))
  numbers = _dimension_numbers(x, kernel)
  padding = ((1, 1), (1, 1))
  ours = conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=numbers, **kwargs)
  ref = lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=numbers,
                                 **kwargs)
  np.testing.assert_array_equal(ours, ref, err_msg=why)


def test_bfloat16_inputs_give_bfloat16_outputs_close_to_lax():
  x, kernel = _inputs((2, 12, 12, 1), (3, 3, 1, 8))
  x, kernel = x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16)
  numbers = _dimension_numbers(x, kernel)
  ours = conv_general_dilated(x, kernel, (1, 1), 'VALID', dimension_numbers=numbers)
  ref = lax.conv_general_dilated(x, kernel, (1, 1), 'VALID', dimension_numbers=numbers,
                                 preferred_element_type=jnp.float32)
  assert ours.dtype == jnp.bfloat16
  np.testing.assert_allclose(ours.astype(jnp.float32), ref, rtol=1e-2, atol=1e-2)


def test_flax_conv_keeps_its_parameters_and_outputs():
  x = jax.random.normal(jax.random.key(0), (2, 10, 10, 1))
  plain = nn.Conv(6, (3, 3), padding='SAME')
  fast = nn.Conv(6, (3, 3), padding='SAME', conv_general_dilated=conv_general_dilated)
  params = plain.init(jax.random.key(1), x)
  assert jax.tree.structure(fast.init(jax.random.key(1), x)) == jax.tree.structure(params)
  np.testing.assert_allclose(fast.apply(params, x), plain.apply(params, x), rtol=1e-5,
                             atol=1e-6)
