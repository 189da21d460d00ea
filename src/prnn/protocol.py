"""The evaluation protocol's settings and defaults, defined once: light enough for the command
line's parser to read them without importing the evaluator (or PyTorch)."""

from __future__ import annotations

from typing import Literal

from prnn.errors import ConfigError

TiePolicy = Literal["conservative", "optimistic", "median"]
#: Share of the items tied with the target that rank above it.
TIE_SHARE_ABOVE = {"optimistic": 0.0, "median": 0.5, "conservative": 1.0}
DEFAULT_TIES: TiePolicy = "conservative"
DEFAULT_CUTOFFS = (1, 5, 10, 20)
DEFAULT_CANDIDATES = "all"
OUTSIDE_CANDIDATES_POLICY = "counted as misses"


def parse_candidates(spec: str, name: str = "candidates") -> int | None:
    """``all`` -> None, ``top:N`` -> N; ``name`` is what the error calls the setting."""
    text = spec.strip().lower()
    if text == "all":
        return None
    kind, _, number = text.partition(":")
    if kind != "top" or not number.isdigit() or int(number) < 1:
        raise ConfigError(f"{name} must be 'all' or 'top:N' with N >= 1; got {spec!r}")
    return int(number)
