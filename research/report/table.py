"""Plain-text results tables for the terminal and Markdown files."""

from __future__ import annotations

from typing import Any, Mapping, Sequence


def _fmt(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.4f}"
  return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  cells = [[str(h) for h in header]] + [[_fmt(v) for v in row] for row in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
  line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
  sep = "| " + " | ".join("-" * w for w in widths) + " |"
  return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def results_table(result: Mapping[str, Any], splits: Sequence[str] = ("validation", "test")) -> str:
  """One row per split, one column per scalar metric (matrices are left to result.json)."""
  present = [s for s in splits if s in result]
  names: list[str] = []
  for split in present:
    for key, value in result[split].items():
      if not isinstance(value, (list, dict)) and key not in names:
        names.append(key)
  rows = [[split] + [result[split].get(n, "") for n in names] for split in present]
  return markdown_table(["split"] + names, rows)
