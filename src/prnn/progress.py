"""Progress bars on stderr, shown only on a terminal.

A bar redrawn in a terminal is one line updated in place; written to a file (a CI or batch job
log) every refresh becomes a new line. So bars are drawn only when stderr is a terminal, and
callers never test for that themselves.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm import tqdm

#: Seconds between redraws: a fast loop then costs nothing noticeable for its bar.
MIN_INTERVAL = 0.5


def progress_bar(
    iterable: Iterable | None = None,
    *,
    desc: str,
    total: int | None = None,
    unit: str,
    enabled: bool = True,
) -> tqdm:
    """A tqdm bar on stderr, drawn only when ``enabled`` and stderr is a terminal.

    Use it as tqdm: iterate over it, or call ``update(n)`` and ``close()``. Otherwise (``-q``,
    stderr redirected to a file or pipe) the bar is disabled: iterating over it still yields every
    item, and it writes nothing (nor counts: do not read its ``n``).

    Args:
        iterable: what to iterate over, or None for a bar driven by ``update``.
        desc: the label before the bar, e.g. ``"epoch 1/10"``.
        total: the expected number of units (default: ``len(iterable)`` when it has one).
        unit: the name of one unit, e.g. ``"batch"``, ``"ev"``, ``"img"``.
        enabled: False for no bar at all, e.g. ``enabled=not quiet``.
    """
    stream = sys.stderr
    drawn = enabled and stream is not None and stream.isatty()
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        file=stream,
        disable=not drawn,
        mininterval=MIN_INTERVAL,
        dynamic_ncols=True,
    )
