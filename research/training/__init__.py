"""Mesh, train state, optimizer factory, the one training loop, checkpoints, writers.

Import the pieces from their modules (`research.training.loop`, ...): this package's
`__init__` stays empty so importing the optimizer factory does not pull in the loop.
"""
