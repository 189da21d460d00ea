"""Shared fixtures: hand-made logs with known answers, and the real datasets beside the checkout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prnn.data import EventLog

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RSC15 = SHARED_DATA / "rsc15_100k" / "events.csv.gz"


@pytest.fixture
def rsc15_path() -> Path:
    if not RSC15.exists():
        pytest.skip(f"real data not found at {RSC15}")
    return RSC15


def make_log(sessions: dict, start_times: dict | None = None) -> EventLog:
    """A log from {session_id: [item, item, ...]}; events one second apart within a session."""
    session_ids, item_ids, times = [], [], []
    for position, (session, items) in enumerate(sessions.items()):
        start = (start_times or {}).get(session, 1000.0 * position)
        for step, item in enumerate(items):
            session_ids.append(session)
            item_ids.append(item)
            times.append(start + step)
    return EventLog.from_arrays(np.array(session_ids), np.array(item_ids), np.array(times))


@pytest.fixture
def cyclic_log() -> EventLog:
    """Sessions that walk the cycle 1 -> 2 -> 3 -> 4 -> 1 from different starting points."""
    cycle = [1, 2, 3, 4]
    sessions = {}
    for session in range(40):
        start = session % 4
        sessions[session] = [cycle[(start + step) % 4] for step in range(5)]
    return make_log(sessions)


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
