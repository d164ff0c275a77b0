"""What every `launch` entry point shares: exit codes, the one-line error, quiet logs.

A module of its own, without flags, so that entry points can share these without importing
each other (importing `launch.main` would define its absl flags a second time).
"""

from __future__ import annotations

import logging as pylogging
import sys
from typing import Callable

from absl import app, flags, logging

EXIT_BAD_INPUT = 2
EXIT_PREEMPTED = 143  # 128 + SIGTERM, after a clean checkpoint


def report_error(message: str) -> int:
  """Prints `error: <message>` to stderr and returns EXIT_BAD_INPUT.

  A multi-line message (e.g. the list of config fields that differ) keeps its lines but
  indents them, so exactly one line starts with `error:` for a user or script to find.
  """
  lines = str(message).splitlines() or [""]
  print("error: " + "\n  ".join(lines), file=sys.stderr)
  return EXIT_BAD_INPUT


class QuietLibraries(pylogging.Filter):
  """Drops INFO chatter of orbax and JAX internals; their warnings still show."""

  def filter(self, record: pylogging.LogRecord) -> bool:
    noisy = any(p in record.pathname for p in ("/orbax/", "/jax/_src/", "/etils/"))
    return record.levelno >= pylogging.WARNING or not noisy


def parse_flags(argv: list[str], program: str) -> list[str]:
  """absl's parser, with a bad flag reported like any other bad input.

  absl's default prints `FATAL Flags parsing error` and exits 1, which scripts cannot tell
  from a crash; a mistyped `--workdirr` is the user's to fix, so it gets exit code 2.
  """
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(report_error(f"{e} (`python -m {program} --helpshort` lists the flags)"))


def run_command(main: Callable[[], int], program: str) -> None:
  """Runs a command's `main()` under absl, the way every workdir command needs it.

  A bad flag, and any UserError that `main` raises, end as one `error:` line with exit code
  2; the INFO chatter of orbax and JAX is filtered out. `main` returns the exit code.
  """

  def body(argv: list[str]) -> None:
    del argv
    logging.get_absl_handler().addFilter(QuietLibraries())
    from research.errors import UserError  # after the flags: it imports JAX
    try:
      code = main()
    except UserError as e:
      code = report_error(str(e))
    sys.exit(code)

  app.run(body, flags_parser=lambda argv: parse_flags(argv, program))
