"""The time-based train/test split and what it reports."""

from __future__ import annotations

import numpy as np
import pytest

from prnn.data import SECONDS_PER_DAY, EventLog, split_by_time
from prnn.errors import DataError

DAY = SECONDS_PER_DAY


def _log():
    # session: (items, start day); events 60 s apart
    sessions = {
        1: (["a", "b", "c"], 0.0),
        2: (["a", "b"], 1.0),
        3: (["z"], 1.5),  # length 1: dropped before the split
        4: (["b", "new", "c"], 9.2),  # test; 'new' unseen in train
        5: (["new", "a"], 9.5),  # test; left with 1 event -> dropped
        6: (["c", "a", "b"], 9.6),  # test
        7: (["a", "c"], 8.0),  # ends before the last day: train
    }
    rows = [
        (s, item, start * DAY + 60 * k)
        for s, (items, start) in sessions.items()
        for k, item in enumerate(items)
    ]
    s, i, t = zip(*rows)
    return EventLog.from_arrays(np.array(s), np.array(i), np.array(t))


def test_split_by_end_counts_every_drop():
    train, test, report = split_by_time(_log(), test_days=1)
    assert sorted(set(train.session_ids.tolist())) == [1, 2, 7]
    assert sorted(set(test.session_ids.tolist())) == [4, 6]
    assert "new" not in test.item_ids.tolist()
    assert report.dropped_sessions_too_short == 1
    assert report.dropped_test_events_unseen_items == 2
    assert report.dropped_test_sessions_too_short == 1
    assert (report.train_events, report.train_sessions) == (7, 3)
    assert (report.test_events, report.test_sessions) == (5, 2)


def test_split_by_start_moves_straddling_session():
    log = EventLog.from_arrays(
        [1, 1, 2, 2, 3, 3],
        ["a", "b", "a", "b", "b", "a"],
        [0, 10, 8.5 * DAY, 9.7 * DAY, 9.5 * DAY, 9.8 * DAY],
    )
    _, test_end, _ = split_by_time(log, test_days=0.5, split_by="end")
    _, test_start, _ = split_by_time(log, test_days=0.5, split_by="start")
    assert sorted(set(test_end.session_ids.tolist())) == [2, 3]
    assert sorted(set(test_start.session_ids.tolist())) == [3]


def test_min_item_support_filter():
    train, _, report = split_by_time(_log(), test_days=1, min_item_support=3)
    # 'z' (1 event) and 'new' (2 events) fall below support 3 before the split
    assert report.dropped_events_low_item_support == 3
    assert {"z", "new"}.isdisjoint(train.item_ids.tolist())


def test_split_needs_time():
    log = EventLog.from_arrays([1, 1], ["a", "b"])
    with pytest.raises(DataError, match="no time column"):
        split_by_time(log, test_days=1)


def test_random_split_by_session_is_seeded_and_counts_drops():
    from prnn.data import split_sessions_randomly

    sessions = {s: [f"i{(s + k) % 7}" for k in range(3)] for s in range(50)}
    sessions[50] = ["only"]  # too short: dropped before the split
    rows = [(s, item, float(k)) for s, items in sessions.items() for k, item in enumerate(items)]
    s, i, t = zip(*rows)
    log = EventLog.from_arrays(np.array(s), np.array(i), np.array(t))
    train, test, report = split_sessions_randomly(log, 0.2, seed=3)
    again, _, _ = split_sessions_randomly(log, 0.2, seed=3)
    assert report.dropped_sessions_too_short == 1
    assert (train.n_sessions, test.n_sessions) == (40, 10)
    assert np.array_equal(train.session_ids, again.session_ids)
    assert set(train.session_ids.tolist()).isdisjoint(test.session_ids.tolist())
    assert "random (20% of sessions, seed 3)" in report.lines()[0]
