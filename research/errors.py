"""Errors that mean "the user gave bad input", as opposed to bugs.

The launcher catches `UserError` and prints its message alone (no traceback),
exiting non-zero: the message must name the input and say how to fix it.
"""


class UserError(Exception):
  """Bad input from the user: a config value, a file, a flag."""


class ConfigError(UserError):
  """A config field is missing, mistyped, of the wrong type or out of range."""


class DataError(UserError):
  """A dataset is missing, truncated, corrupt or inconsistent with the config."""


class CheckpointError(UserError):
  """A checkpoint cannot be read or does not match the config."""


class WorkdirError(UserError):
  """The workdir holds a different experiment."""


class NonFiniteLossError(UserError):
  """Training produced a NaN or infinite loss."""
