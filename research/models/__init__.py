"""Pure Flax modules, registered by name so a config can say `model.name = 'mlp'`."""

from __future__ import annotations

# Importing the model files registers their models in MODELS.
from research.models import (bert, cnn, gan, gpt, linear, mlp, recsys, resnet,  # noqa: F401
                             rnn, seq2seq, transformer)
from research.models.cnn import KerasCNN, LeNet5, SmallCNN
from research.models.gan import DCGAN
from research.models.gpt import GPT
from research.models.layers import ACTIVATIONS, activation_fn, max_pool_2x2
from research.models.linear import Linear
from research.models.mlp import MLP
from research.models.recsys import MatrixFactorization, NeuMF
from research.models.registry import MODELS, build_model, config_fields
from research.models.rnn import RNNClassifier
from research.models.transformer import (SelfAttention, TransformerBlock,
                                         TransformerClassifier)

__all__ = [
    'ACTIVATIONS',
    'DCGAN',
    'GPT',
    'KerasCNN',
    'LeNet5',
    'Linear',
    'MLP',
    'MODELS',
    'MatrixFactorization',
    'NeuMF',
    'RNNClassifier',
    'SelfAttention',
    'SmallCNN',
    'TransformerBlock',
    'TransformerClassifier',
    'activation_fn',
    'build_model',
    'config_fields',
    'max_pool_2x2',
]
