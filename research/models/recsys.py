"""Recommenders on [user, item] id pairs: biased matrix factorisation and NeuMF.

Inputs are integer arrays of shape (..., 2), [user index, item index]; outputs have shape
(..., num_outputs). Any leading shape works, so a task can score a user's 100 candidate items
as one (B, 100, 2) batch. `num_users` / `num_items` come from the dataset
(`Source.model_fields`), never from the config.

Both models expose `embedding_norms(inputs)`: the squared norms of the embedding rows that
the given pairs use, for the per-example L2 penalty of the classic MF recipe (Koren, Bell &
Volinsky, 2009): rows are regularised as often as they are used, unlike a penalty on whole
tables (`optimizer.l2`), which Adam's per-parameter scaling largely undoes.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.errors import ConfigError
from research.models.layers import check_dropout_rate, check_sizes
from research.models.registry import MODELS


def _check_positive(value: Any, field: str) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ConfigError(f'{field} must be a positive integer; got {value!r}.')


def _check_scale(value: Any) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
    raise ConfigError(f'config.model.init_scale must be a number >= 0; got {value!r}.')


def split_ids(inputs: jax.Array, model: str) -> tuple[jax.Array, jax.Array]:
  """(users, items) of (..., 2) integer id pairs; anything else is a ConfigError."""
  if not jnp.issubdtype(inputs.dtype, jnp.integer) or inputs.ndim < 1 or inputs.shape[-1] != 2:
    raise ConfigError(
        f'model {model!r} (config.model.name) needs integer [user, item] id pairs of shape '
        f'(..., 2); got {inputs.dtype} inputs of shape {tuple(inputs.shape)}. Use it with a '
        'MovieLens dataset (movielens_100k or movielens_100k_implicit).')
  return inputs[..., 0], inputs[..., 1]


@MODELS.register('matrix_factorization')
class MatrixFactorization(nn.Module):
  """Biased MF: r(u, i) = global_mean + b_u + b_i + <p_u, q_i> (the SVD of Funk and Koren).

  Attributes:
    num_users, num_items: table sizes (from the dataset).
    num_factors: length of the user and item vectors p_u, q_i.
    init_scale: std of the normal initialisation of p and q (biases start at 0).
    global_mean: the mean training rating (from the dataset); a constant, so the biases
      and factors model only deviations from it. 0 for data without one (implicit feedback).
  """

  num_users: int
  num_items: int
  num_outputs: int = 1
  num_factors: int = 64
  init_scale: float = 0.1
  global_mean: float = 0.0
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    for field in ('num_users', 'num_items', 'num_factors'):
      _check_positive(getattr(self, field), f'config.model.{field}')
    _check_scale(self.init_scale)
    if self.num_outputs != 1:
      raise ConfigError(
          f'model matrix_factorization predicts one score per (user, item) pair, but the task '
          f'needs {self.num_outputs} outputs: use it with task rating or implicit.')
    super().__post_init__()

  def setup(self) -> None:
    def table(size: int, features: int, init: Any) -> nn.Embed:
      return nn.Embed(size, features, dtype=self.dtype, param_dtype=jnp.float32,
                      embedding_init=init)

    normal = nn.initializers.normal(self.init_scale)
    self.user_factors = table(self.num_users, self.num_factors, normal)
    self.item_factors = table(self.num_items, self.num_factors, normal)
    self.user_bias = table(self.num_users, 1, nn.initializers.zeros)
    self.item_bias = table(self.num_items, 1, nn.initializers.zeros)

  def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
    del train  # No dropout; kept for the common signature.
    users, items = split_ids(inputs, 'matrix_factorization')
    dot = jnp.sum(self.user_factors(users) * self.item_factors(items), -1, keepdims=True)
    return (self.user_bias(users) + self.item_bias(items) + dot
            + jnp.asarray(self.global_mean, self.dtype))

  def embedding_norms(self, inputs: jax.Array) -> dict[str, jax.Array]:
    """Per pair: |p_u|^2 + |q_i|^2 ('factors') and b_u^2 + b_i^2 ('biases'), float32."""
    users, items = split_ids(inputs, 'matrix_factorization')
    sq = lambda e: jnp.sum(jnp.square(e.astype(jnp.float32)), -1)  # noqa: E731
    return {'factors': sq(self.user_factors(users)) + sq(self.item_factors(items)),
            'biases': sq(self.user_bias(users)) + sq(self.item_bias(items))}


@MODELS.register('neumf')
class NeuMF(nn.Module):
  """Neural matrix factorisation (He et al., "Neural Collaborative Filtering", WWW 2017).

  A GMF tower (element-wise product of user and item vectors of size `mf_dim`) and an MLP
  tower (user and item vectors of size mlp_sizes[0] / 2, concatenated, then ReLU layers of
  mlp_sizes[1:]), each with its own embeddings, concatenated into one linear head that gives
  a logit. `mf_dim=0` leaves only the MLP tower (the paper's "MLP"), `mlp_sizes=()` only GMF.

  Attributes:
    mf_dim: GMF embedding size (the paper's predictive factors, 8 for its NeuMF).
    mlp_sizes: MLP layer sizes, the first being the concatenated embedding (paper: 64-32-16-8).
    dropout_rate: dropout after each hidden MLP layer, only when train=True.
    init_scale: std of the normal initialisation of the embeddings (paper: 0.01).
  """

  num_users: int
  num_items: int
  num_outputs: int = 1
  mf_dim: int = 8
  mlp_sizes: tuple[int, ...] = (64, 32, 16, 8)
  dropout_rate: float = 0.0
  init_scale: float = 0.01
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    for field in ('num_users', 'num_items', 'num_outputs'):
      _check_positive(getattr(self, field), f'config.model.{field}')
    if self.mf_dim != 0:
      _check_positive(self.mf_dim, 'config.model.mf_dim')
    check_sizes(self.mlp_sizes, 'config.model.mlp_sizes')
    if self.mlp_sizes and self.mlp_sizes[0] % 2:
      raise ConfigError(f'config.model.mlp_sizes[0] = {self.mlp_sizes[0]} must be even: it is '
                        'the user and item MLP embeddings concatenated (half each).')
    if not self.mf_dim and not self.mlp_sizes:
      raise ConfigError('config.model.mf_dim = 0 and config.model.mlp_sizes = () leave NeuMF '
                        'with no tower: set mf_dim > 0 (GMF), mlp_sizes (MLP), or both.')
    check_dropout_rate(self.dropout_rate)
    _check_scale(self.init_scale)
    super().__post_init__()

  def setup(self) -> None:
    def table(size: int, features: int) -> nn.Embed:
      return nn.Embed(size, features, dtype=self.dtype, param_dtype=jnp.float32,
                      embedding_init=nn.initializers.normal(self.init_scale))

    if self.mf_dim:
      self.gmf_user = table(self.num_users, self.mf_dim)
      self.gmf_item = table(self.num_items, self.mf_dim)
    if self.mlp_sizes:
      self.mlp_user = table(self.num_users, self.mlp_sizes[0] // 2)
      self.mlp_item = table(self.num_items, self.mlp_sizes[0] // 2)
    self.hidden = [nn.Dense(size, dtype=self.dtype, param_dtype=jnp.float32, name=f'mlp{k}')
                   for k, size in enumerate(self.mlp_sizes[1:])]
    self.dropout = nn.Dropout(self.dropout_rate)
    self.head = nn.Dense(self.num_outputs, dtype=self.dtype, param_dtype=jnp.float32)

  def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
    users, items = split_ids(inputs, 'neumf')
    towers = []
    if self.mf_dim:
      towers.append(self.gmf_user(users) * self.gmf_item(items))
    if self.mlp_sizes:
      x = jnp.concatenate([self.mlp_user(users), self.mlp_item(items)], -1)
      for dense in self.hidden:
        x = nn.relu(dense(x))
        if self.dropout_rate > 0:
          x = self.dropout(x, deterministic=not train)
      towers.append(x)
    return self.head(jnp.concatenate(towers, -1))

  def embedding_norms(self, inputs: jax.Array) -> dict[str, jax.Array]:
    """Per pair: the squared norms of the user and item rows of both towers ('factors')."""
    users, items = split_ids(inputs, 'neumf')
    sq = lambda e: jnp.sum(jnp.square(e.astype(jnp.float32)), -1)  # noqa: E731
    total = jnp.zeros(users.shape, jnp.float32)
    if self.mf_dim:
      total += sq(self.gmf_user(users)) + sq(self.gmf_item(items))
    if self.mlp_sizes:
      total += sq(self.mlp_user(users)) + sq(self.mlp_item(items))
    return {'factors': total}
