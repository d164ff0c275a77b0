"""Pure Flax modules, registered by name so a config can say `model.name = 'mlp'`."""

from __future__ import annotations

# Importing the model files registers their models in MODELS.
from research.models import cnn, linear, mlp  # noqa: F401
from research.models.cnn import KerasCNN, LeNet5, SmallCNN
from research.models.layers import ACTIVATIONS, activation_fn, max_pool_2x2
from research.models.linear import Linear
from research.models.mlp import MLP
from research.models.registry import MODELS, build_model, config_fields

__all__ = [
    'ACTIVATIONS',
    'KerasCNN',
    'LeNet5',
    'Linear',
    'MLP',
    'MODELS',
    'SmallCNN',
    'activation_fn',
    'build_model',
    'config_fields',
    'max_pool_2x2',
]
