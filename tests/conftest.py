"""Suite-wide set-up: one persistent JAX compilation cache shared by every test process.

Many tests launch `launch.main` (or a sweep worker) in subprocesses that compile the same
tiny programs again: a resume test compiles one train step three times, in three processes.
JAX's persistent cache lets the second and later compiles read the first one's executable
(measured on 2 cores: the suite's summed test time 1,137 s -> 1,001 s, wall 589 s -> 523 s).
The executable is the same either way, so results, including the bit-exact resume tests, do
not change.

The controller creates the directory before pytest-xdist starts its workers, which inherit
it (and pass it on to their subprocesses) through the environment; it is removed at the end.
A cache the caller chose (JAX_COMPILATION_CACHE_DIR already set) is used and kept.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest

_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
_created: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
  if os.environ.get(_CACHE_ENV):
    return  # a worker (the controller set it) or the caller's own cache
  path = tempfile.mkdtemp(prefix="jax-compilation-cache-")
  _created.append(path)
  os.environ[_CACHE_ENV] = path
  # Tiny test programs compile in well under JAX's default 1 s threshold; cache them all.
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  if "jax" in sys.modules:  # read from the environment only when jax is first imported
    import jax
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def pytest_unconfigure(config: pytest.Config) -> None:
  for path in _created:
    shutil.rmtree(path, ignore_errors=True)
