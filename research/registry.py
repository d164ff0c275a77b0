"""Name -> factory registries, so configs can name models, datasets, tasks by string."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from research.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
  """A mapping from names to factories with helpful errors for unknown names."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    def decorator(entry: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} registered twice")
      self._entries[name] = entry
      return entry
    return decorator

  def get(self, name: str, field: str | None = None) -> T:
    if name not in self._entries:
      raise ConfigError(unknown_name_message(self.kind, name, self.names(), field))
    return self._entries[name]

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries


def unknown_name_message(kind: str, name: str, valid: list[str], field: str | None = None) -> str:
  """"unknown model 'mpl' (config.model.name): did you mean 'mlp'? Known: ..." """
  where = f" ({field})" if field else ""
  close = difflib.get_close_matches(str(name), valid, n=1)
  hint = f" Did you mean {close[0]!r}?" if close else ""
  return f"unknown {kind} {name!r}{where}.{hint} Known {kind}s: {', '.join(valid)}."
