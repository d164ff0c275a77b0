"""The model registry and `build_model`, which turns `config.model` into a module.

Kept apart from `__init__` so model files can import `MODELS` without a cycle.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from research.errors import ConfigError
from research.registry import Registry

MODELS: Registry[type[nn.Module]] = Registry('model')

# Dataclass fields every linen Module has, which a config must never set.
_MODULE_FIELDS = ('parent', 'name')
# Fields build_model fills in itself: they come from the task and the run's dtype.
_BUILD_FIELDS = ('num_outputs', 'dtype')


def config_fields(model_cls: type[nn.Module]) -> list[str]:
  """The fields `config.model` may set for this model class, in declaration order."""
  return [
      f.name for f in dataclasses.fields(model_cls)
      if f.init and f.name not in _MODULE_FIELDS + _BUILD_FIELDS
  ]


def _required_fields(model_cls: type[nn.Module]) -> list[str]:
  return [
      f.name for f in dataclasses.fields(model_cls)
      if f.init and f.name not in _MODULE_FIELDS + _BUILD_FIELDS
      and f.default is dataclasses.MISSING
      and f.default_factory is dataclasses.MISSING
  ]


def _freeze(value: Any) -> Any:
  """Lists -> tuples (recursively): module fields must be hashable."""
  if isinstance(value, (list, tuple)):
    return tuple(_freeze(v) for v in value)
  return value


def build_model(model_config: ml_collections.ConfigDict, num_outputs: int,
                dtype: Any = jnp.float32,
                data_fields: dict[str, Any] | None = None) -> nn.Module:
  """Builds the module named by `model_config.name` from the rest of its fields.

  Every field other than `name` becomes a constructor kwarg, so adding a model
  option needs no plumbing here. `num_outputs` comes from the task (number of
  classes / targets) and `dtype` from the run's precision setting, which is why
  the config must not set them. `data_fields` are sizes only the data knows (e.g.
  `vocab_size` of a vocabulary built from the train text, `num_users`): each is
  passed to the model if the model declares that field, and the config must not set
  it either. Mistakes are reported as ConfigErrors naming the offending
  `config.model.<field>` and the valid fields.
  """
  data_fields = dict(data_fields or {})
  if isinstance(model_config, ml_collections.ConfigDict):
    fields = model_config.to_dict()
  else:
    fields = dict(model_config)
  name = fields.pop('name', None)
  if name is None:
    raise ConfigError(
        f'config.model.name is missing. Known models: {", ".join(MODELS.names())}.')
  model_cls = MODELS.get(name, field='config.model.name')
  valid = config_fields(model_cls)
  valid_msg = ', '.join(valid) if valid else '(none)'
  for field in fields:
    if field in _BUILD_FIELDS:
      raise ConfigError(
          f'config.model.{field} must not be set: it is filled in from the task '
          f'(num_outputs) or the run precision (dtype). Remove it.')
    if field in data_fields:
      raise ConfigError(
          f'config.model.{field} must not be set: it is filled in from the dataset '
          f'({field}={data_fields[field]}). Remove it; change the dataset config instead.')
    if field not in valid:
      raise ConfigError(
          f'unexpected field config.model.{field} for model {name!r}. '
          f'Valid fields: {valid_msg}.')
  fields.update({k: v for k, v in data_fields.items() if k in valid})
  missing = [f for f in _required_fields(model_cls) if f not in fields]
  if missing:
    raise ConfigError(
        f'model {name!r} needs ' + ', '.join(f'config.model.{f}' for f in missing)
        + f'. Valid fields: {valid_msg}.')
  kwargs = {k: _freeze(v) for k, v in fields.items()}
  return model_cls(num_outputs=num_outputs, dtype=dtype, **kwargs)
