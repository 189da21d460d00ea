"""Printing a benchmark's table and writing it to its ``--out`` file, shared by the benchmarks."""

from __future__ import annotations

from pathlib import Path


def emit_table(table: str, out: str | Path | None) -> None:
    """Print ``table`` (markdown) and, with ``out``, also write it there (folders created)."""
    text = table if table.endswith("\n") else table + "\n"
    print(text, end="")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
