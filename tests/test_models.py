"""Tests for research.models: the shared contract of every model, and build_model errors."""

from __future__ import annotations

import functools

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from research.errors import ConfigError
from research.models import (ACTIVATIONS, MLP, MODELS, KerasCNN, Linear, SmallCNN,
                             build_model, config_fields, max_pool_2x2)
from research.models.layers import avg_pool_2x2

BATCH = 3
NUM_OUTPUTS = 5

# Per registered model: extra config fields and a realistic input shape (no batch).
# Every registered name must appear here, so a new model cannot skip the contract.
SPECS: dict[str, tuple[dict, tuple[int, ...]]] = {
    'linear': ({}, (7,)),
    'linear_regression': ({}, (7,)),
    'logistic_regression': ({}, (6, 6, 1)),
    'softmax_regression': ({}, (8, 8, 1)),
    'mlp': ({'hidden_sizes': (16, 8)}, (4, 4, 2)),
    'keras_cnn': ({}, (28, 28, 1)),
    'lenet5': ({}, (28, 28, 1)),
    'small_cnn': ({'features': (8, 16), 'dense': 32}, (8, 8, 1)),
    'gpt': ({'num_layers': 1, 'num_heads': 2, 'width': 8, 'vocab_size': NUM_OUTPUTS,
             'block_size': 6}, (6,)),
    'matrix_factorization': ({'num_users': NUM_OUTPUTS, 'num_items': NUM_OUTPUTS,
                              'num_factors': 4}, (2,)),
    'neumf': ({'num_users': NUM_OUTPUTS, 'num_items': NUM_OUTPUTS, 'mf_dim': 4,
               'mlp_sizes': (8, 4)}, (2,)),
    'rnn_classifier': ({'vocab_size': NUM_OUTPUTS, 'embed_dim': 4, 'hidden_size': 4,
                        'bidirectional': True}, (8,)),
    'transformer_classifier': ({'vocab_size': NUM_OUTPUTS, 'd_model': 8, 'num_heads': 2,
                                'num_layers': 1, 'mlp_dim': 16, 'max_position': 8}, (8,)),
}
# Models whose inputs are token ids in [0, NUM_OUTPUTS) rather than features.
TOKEN_MODELS = ('gpt', 'matrix_factorization', 'neumf',  # recommenders: [user, item]
                'rnn_classifier', 'transformer_classifier')  # text classifiers
# Output shape per example where it is not (NUM_OUTPUTS,): language models give one
# distribution per position.
OUTPUT_SHAPES = {'gpt': (6, NUM_OUTPUTS), 'matrix_factorization': (1,)}


def _config(name: str, **fields) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({'name': name, **fields})


def _key(seed: int) -> jax.Array:
  # 'rbg' keys: XLA:CPU compiles their init/dropout sampling several times faster
  # than threefry's, and the models do not care which PRNG feeds them.
  return jax.random.key(seed, impl='rbg')


def _inputs(shape: tuple[int, ...], seed: int = 0) -> jax.Array:
  """Uniform [0, 1) inputs, made with numpy so no sampling kernel is compiled."""
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape), jnp.float32)


def _build(name: str, dtype=jnp.float32, **overrides) -> tuple[nn.Module, jax.Array]:
  fields, shape = SPECS[name]
  width = OUTPUT_SHAPES.get(name, (NUM_OUTPUTS,))[-1]  # MF predicts one score per pair
  model = build_model(_config(name, **{**fields, **overrides}), width, dtype)
  if name in TOKEN_MODELS:
    ids = np.random.default_rng(0).integers(0, NUM_OUTPUTS, (BATCH, *shape))
    return model, jnp.asarray(ids, jnp.int32)
  return model, _inputs((BATCH, *shape))


def _output_shape(name: str) -> tuple[int, ...]:
  return (BATCH, *OUTPUT_SHAPES.get(name, (NUM_OUTPUTS,)))


@functools.cache
def _variables(name: str) -> dict:
  """Initialised once per model name, then shared: init is the slow part on CPU.

  Variables depend only on the architecture, not on dtype or dropout_rate, so the
  bf16 and dropout variants of a model reuse them.
  """
  model, x = _build(name)
  return jax.jit(model.init)(_key(0), x)


@functools.partial(jax.jit, static_argnames=('model', 'train'))
def _jit_apply(model: nn.Module, variables: dict, x: jax.Array, train: bool,
               rngs: dict | None) -> jax.Array:
  # Modules hash by their fields, so equal models share one compilation; a whole
  # compiled apply is cheaper on CPU than compiling each op eagerly.
  return model.apply(variables, x, train=train, rngs=rngs)


def _apply(model: nn.Module, variables: dict, x: jax.Array, train: bool = False,
           rng: jax.Array | None = None) -> jax.Array:
  rngs = None if rng is None else {'dropout': rng}
  return _jit_apply(model, variables, x, train=train, rngs=rngs)


# Models that do not fit the one-input, one-output contract above, with their own tests.
TESTED_ELSEWHERE = {
    'dcgan': 'tests/test_gan.py',  # two players, generate / discriminate
    'resnet': 'tests/test_vision.py', 'cifar_resnet': 'tests/test_vision.py',  # BatchNorm state
    'bert_mlm': 'tests/test_bert.py',  # needs a vocabulary with <mask>
    'seq2seq_transformer': 'tests/test_seq2seq.py',  # two inputs (source, target), cached decoding
}


def test_specs_cover_every_registered_model():
  assert sorted(SPECS) == sorted(set(MODELS.names()) - set(TESTED_ELSEWHERE))


@pytest.mark.parametrize('name', sorted(SPECS))
def test_output_shape_and_float32_dtype(name):
  model, x = _build(name)
  variables = _variables(name)
  assert set(variables) == {'params'}  # no batch stats or other mutable state
  y = _apply(model, variables, x)
  assert y.shape == _output_shape(name)
  assert y.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(y)))
  assert float(jnp.std(y)) > 0  # outputs actually depend on the inputs/params


@pytest.mark.parametrize('name', sorted(SPECS))
def test_bfloat16_computes_in_bf16_with_float32_params(name):
  model, x = _build(name, dtype=jnp.bfloat16)
  # Initialising the bf16 model itself must still create float32 parameters.
  shapes = jax.eval_shape(model.init, _key(0), x)
  assert {leaf.dtype for leaf in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
  variables = _variables(name)
  y = _apply(model, variables, x)
  assert y.shape == _output_shape(name)
  assert y.dtype == jnp.bfloat16
  # Same params in float32 give nearly the same outputs: bf16 is only a precision change.
  model32, _ = _build(name)
  y32 = _apply(model32, variables, x)
  np.testing.assert_allclose(np.asarray(y, np.float32), y32, atol=0.1, rtol=0.1)


DROPOUT_MODELS = sorted(n for n in SPECS if 'dropout_rate' in config_fields(MODELS.get(n)))


def test_dropout_models_are_the_expected_ones():
  assert DROPOUT_MODELS == ['gpt', 'keras_cnn', 'lenet5', 'mlp', 'neumf', 'rnn_classifier',
                            'small_cnn', 'transformer_classifier']


@pytest.mark.parametrize('name', DROPOUT_MODELS)
def test_dropout_only_active_in_training(name):
  model, x = _build(name, dropout_rate=0.5)
  variables = _variables(name)
  # Eval: no dropout rng needed, and the rng (if given) does not matter.
  y_eval = _apply(model, variables, x)
  np.testing.assert_array_equal(y_eval, _apply(model, variables, x, False, _key(7)))
  # Train: outputs depend on the dropout rng, reproducibly.
  y_a = _apply(model, variables, x, True, _key(1))
  y_a2 = _apply(model, variables, x, True, _key(1))
  y_b = _apply(model, variables, x, True, _key(2))
  np.testing.assert_array_equal(y_a, y_a2)
  assert not np.allclose(y_a, y_b)
  assert not np.allclose(y_a, y_eval)


def test_dropout_uses_the_dropout_rng_collection():
  model, x = _build('mlp', dropout_rate=0.5)
  variables = _variables('mlp')
  # Default (threefry) keys, as the trainer uses, work too.
  y = _apply(model, variables, x, True, jax.random.key(0))
  assert y.shape == (BATCH, NUM_OUTPUTS)
  assert not np.allclose(y, _apply(model, variables, x))
  with pytest.raises(flax.errors.InvalidRngError, match='dropout'):
    _apply(model, variables, x, True)  # no 'dropout' rng given


@pytest.mark.parametrize('name', ['mlp', 'small_cnn'])
def test_zero_dropout_training_needs_no_rng_and_matches_eval(name):
  model, x = _build(name, dropout_rate=0.0)
  variables = _variables(name)
  np.testing.assert_array_equal(_apply(model, variables, x, True),
                                _apply(model, variables, x))


def test_keras_cnn_parameter_count_matches_keras():
  model = KerasCNN(num_outputs=10)
  # eval_shape: shapes are all we need, so skip compiling and running.
  variables = jax.eval_shape(model.init, _key(0), jnp.zeros((1, 28, 28, 1)))
  assert sum(p.size for p in jax.tree.leaves(variables['params'])) == 93_322


def test_linear_aliases_are_one_class_and_flatten_images():
  for alias in ('linear', 'linear_regression', 'logistic_regression', 'softmax_regression'):
    assert MODELS.get(alias) is Linear
  model, x = _build('logistic_regression')
  variables = _variables('logistic_regression')
  np.testing.assert_allclose(_apply(model, variables, x),
                             _apply(model, variables, x.reshape(BATCH, -1)), rtol=1e-6)


def test_small_cnn_accepts_flat_square_features_as_images():
  model, x = _build('small_cnn')
  variables = _variables('small_cnn')
  y = _apply(model, variables, x)
  np.testing.assert_allclose(_apply(model, variables, x.reshape(BATCH, 64)), y, rtol=1e-6)
  np.testing.assert_allclose(_apply(model, variables, x[..., 0]), y, rtol=1e-6)


@pytest.mark.parametrize('name', ['keras_cnn', 'lenet5'])
def test_conv_model_rejects_too_small_images(name):
  model = MODELS.get(name)(num_outputs=10)
  with pytest.raises(ConfigError, match='at least'):
    jax.eval_shape(model.init, _key(0), jnp.zeros((1, 8, 8, 1)))


def test_conv_model_rejects_non_image_features():
  with pytest.raises(ConfigError, match='image inputs'):
    jax.eval_shape(SmallCNN(num_outputs=10).init, _key(0), jnp.zeros((1, 7)))


@pytest.mark.parametrize('shape', [(2, 8, 8, 3), (2, 7, 9, 3), (1, 5, 4, 2), (3, 3, 3, 1)])
def test_max_pool_2x2_matches_nn_max_pool_values_and_gradients(shape):
  x = _inputs(shape) - 0.5
  ref = lambda v: nn.max_pool(v, (2, 2), strides=(2, 2), padding='VALID')
  out_shape = (shape[0], shape[1] // 2, shape[2] // 2, shape[3])
  # Weight the outputs so the gradient checks *which* input each output came from.
  w = _inputs(out_shape, seed=1)

  @jax.jit
  def values_and_grads(v):
    grad = lambda f: jax.grad(lambda u: jnp.sum(f(u) * w))(v)
    return max_pool_2x2(v), ref(v), grad(max_pool_2x2), grad(ref)

  out, out_ref, grad, grad_ref = values_and_grads(x)
  assert out.shape == out_ref.shape == out_shape
  np.testing.assert_array_equal(out, out_ref)
  np.testing.assert_allclose(grad, grad_ref, rtol=1e-6)
  assert np.count_nonzero(grad) == out.size  # one winner per window


def test_max_pool_2x2_gives_tied_windows_gradient_to_the_first_entry_like_nn_max_pool():
  # Values on a coarse grid, so most windows hold ties (as after a ReLU, where they are 0).
  x = jnp.round(_inputs((2, 8, 8, 4)) * 2) / 2
  w = _inputs((2, 4, 4, 4), seed=1)
  ref = lambda v: nn.max_pool(v, (2, 2), strides=(2, 2), padding='VALID')
  grad = lambda f: jax.jit(jax.grad(lambda u: jnp.sum(f(u) * w)))(x)
  np.testing.assert_array_equal(grad(max_pool_2x2), grad(ref))


def test_max_pool_2x2_keeps_nan():
  x = jnp.zeros((1, 4, 4, 1)).at[0, 3, 2, 0].set(jnp.nan)
  out = np.asarray(max_pool_2x2(x))[0, :, :, 0]
  assert np.isnan(out[1, 1]) and np.isfinite(np.delete(out.ravel(), 3)).all()


@pytest.mark.parametrize('shape', [(2, 8, 8, 3), (2, 7, 9, 3)])
def test_avg_pool_2x2_matches_nn_avg_pool(shape):
  x = _inputs(shape)
  np.testing.assert_allclose(
      avg_pool_2x2(x), nn.avg_pool(x, (2, 2), strides=(2, 2), padding='VALID'),
      rtol=1e-6, atol=1e-6)


def test_build_model_unknown_name_suggests_close_match():
  with pytest.raises(ConfigError, match=r"config\.model\.name.*Did you mean 'mlp'"):
    build_model(_config('mpl', hidden_sizes=(4,)), 10)


def test_build_model_missing_name():
  with pytest.raises(ConfigError, match=r'config\.model\.name is missing'):
    build_model(ml_collections.ConfigDict({'hidden_sizes': (4,)}), 10)


def test_build_model_unexpected_field_names_it_and_lists_valid_fields():
  with pytest.raises(ConfigError) as info:
    build_model(_config('mlp', hidden_size=(4,)), 10)
  message = str(info.value)
  assert 'config.model.hidden_size ' in message
  for field in ('hidden_sizes', 'activation', 'dropout_rate'):
    assert field in message
  assert 'parent' not in message


@pytest.mark.parametrize('field', ['num_outputs', 'dtype'])
def test_build_model_rejects_fields_it_sets_itself(field):
  with pytest.raises(ConfigError, match=rf'config\.model\.{field} must not be set'):
    build_model(_config('linear', **{field: 3}), 10)


def test_build_model_missing_required_field():
  with pytest.raises(ConfigError, match=r'config\.model\.hidden_sizes'):
    build_model(_config('mlp'), 10)


def test_build_model_passes_fields_and_freezes_lists():
  model = build_model(_config('mlp', hidden_sizes=[8, 4], activation='gelu'), 3,
                      jnp.bfloat16)
  assert isinstance(model, MLP)
  assert model.hidden_sizes == (8, 4)
  assert model.activation == 'gelu'
  assert model.num_outputs == 3 and model.dtype == jnp.bfloat16
  params = jax.eval_shape(model.init, _key(0), jnp.zeros((1, 5)))['params']
  assert [params[k]['kernel'].shape for k in ('dense0', 'dense1', 'head')] == [
      (5, 8), (8, 4), (4, 3)]


def test_mlp_unknown_activation_names_field_and_valid_names():
  with pytest.raises(ConfigError) as info:
    build_model(_config('mlp', hidden_sizes=(4,), activation='rleu'), 10)
  message = str(info.value)
  assert 'config.model.activation' in message and "'rleu'" in message
  for name in ACTIVATIONS:
    assert name in message


@pytest.mark.parametrize('overrides, field', [
    ({'hidden_sizes': (4, 0)}, 'hidden_sizes'),
    ({'hidden_sizes': 4}, 'hidden_sizes'),
    ({'hidden_sizes': (4,), 'dropout_rate': 1.0}, 'dropout_rate'),
])
def test_mlp_rejects_bad_values(overrides, field):
  with pytest.raises(ConfigError, match=rf'config\.model\.{field}'):
    build_model(_config('mlp', **overrides), 10)


def test_every_activation_is_usable_and_distinct():
  x = jnp.linspace(-2.0, 2.0, 9)[None, :]
  # The activation has no parameters, so one set of variables serves them all.
  variables = jax.jit(MLP(num_outputs=2, hidden_sizes=(6,)).init)(_key(0), x)
  outputs = {}
  for name in ACTIVATIONS:
    model = MLP(num_outputs=2, hidden_sizes=(6,), activation=name)
    outputs[name] = np.asarray(_apply(model, variables, x))
    assert np.all(np.isfinite(outputs[name]))
  names = sorted(outputs)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      assert not np.allclose(outputs[a], outputs[b]), (a, b)


def test_build_model_fills_declared_data_fields_and_ignores_others():
  # MLP declares hidden_sizes but not vocab_size: only the declared field is passed.
  model = build_model(_config('mlp'), 3, data_fields={'hidden_sizes': (5,), 'vocab_size': 7})
  assert model.hidden_sizes == (5,)


def test_build_model_rejects_config_setting_a_data_field():
  with pytest.raises(ConfigError, match=r'config\.model\.hidden_sizes must not be set: it is '
                                        r'filled in from the dataset'):
    build_model(_config('mlp', hidden_sizes=(4,)), 3, data_fields={'hidden_sizes': (5,)})
