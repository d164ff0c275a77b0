r"""Translate text with a trained seq2seq workdir, one sentence per line.

  python -m launch.translate --workdir=runs/multi30k_transformer --input=test.de \
      --beam_size=4 --length_penalty=0.6 [--output=test.hyp.en] [--best]
  echo "Ein Hund rennt im Schnee." | python -m launch.translate --workdir=runs/multi30k_transformer

Reads only the workdir: config.json (the model), dataset.json (the tokenisers) and the
newest checkpoint (--best: the best one). --beam_size=1 is greedy decoding. Input is a file
or stdin; each line's translation is one output line (stdout or --output). A bad flag or
workdir ends with one `error:` line and exit code 2.
"""

from __future__ import annotations

import sys

from absl import flags

from launch.cli import report_error, run_command

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir that launch.main trained (seq2seq).")
_INPUT = flags.DEFINE_string("input", "-", "File of source sentences, one per line; - = stdin.")
_OUTPUT = flags.DEFINE_string("output", "-", "Where the translations go; - = stdout.")
_BEAM = flags.DEFINE_integer("beam_size", 4, "Beam width; 1 = greedy.")
_ALPHA = flags.DEFINE_float("length_penalty", 0.6,
                            "GNMT length penalty exponent; 0 = raw log-probability.")
_MAX_LENGTH = flags.DEFINE_integer("max_decode_length", 0, "Longest translation in tokens; 0 = the "
                                   "model's max_length.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Sentences decoded at once.")
_BEST = flags.DEFINE_bool("best", False, "Use the best checkpoint instead of the newest.")


def _read_lines(path: str) -> list[str]:
  if path == "-":
    return sys.stdin.read().splitlines()
  with open(path, encoding="utf-8") as f:
    return f.read().splitlines()


def main() -> int:
  if not _WORKDIR.value:
    return report_error("--workdir missing: pass the workdir of a trained seq2seq run.")
  if _BATCH.value < 1:
    return report_error(f"--batch_size={_BATCH.value}: it must be >= 1.")
  try:
    lines = _read_lines(_INPUT.value)
  except (OSError, UnicodeDecodeError) as e:
    return report_error(f"--input={_INPUT.value} cannot be read as UTF-8 text ({e}).")
  from research.translate import load_workdir
  translator = load_workdir(_WORKDIR.value, _BEST.value)
  translations = translator.translate(lines, _BEAM.value, _ALPHA.value, _MAX_LENGTH.value,
                                      _BATCH.value)
  output = "".join(t + "\n" for t in translations)
  if _OUTPUT.value == "-":
    sys.stdout.write(output)
  else:
    with open(_OUTPUT.value, "w", encoding="utf-8") as f:
      f.write(output)
  return 0


def run() -> None:
  run_command(main, "launch.translate")


if __name__ == "__main__":
  run()
