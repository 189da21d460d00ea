"""The time-based train/test split and what it reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prnn.data import SECONDS_PER_DAY, EventLog, read_events, split_by_time
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


# ---- the streaming split (prnn split --low-memory) ----------------------------------------------


@pytest.mark.parametrize("support, split_by", [(1, "end"), (5, "start")])
def test_the_streaming_split_equals_the_in_memory_one(tmp_path, support, split_by):
    from pathlib import Path

    from prnn.streaming_split import split_by_time_streaming

    path = Path(__file__).resolve().parents[2] / "shared/data/rsc15_100k/events.csv.gz"
    report = split_by_time_streaming(
        path, tmp_path, 1.0, split_by=split_by, min_item_support=support
    )
    train, test, expected = split_by_time(
        read_events(path), 1.0, split_by=split_by, min_item_support=support
    )
    assert report == expected
    for name, log in (("train.csv", train), ("test.csv", test)):
        written = read_events(tmp_path / name)
        key = lambda e: sorted(  # noqa: E731
            zip(e.session_ids.astype(str), e.item_ids.astype(str), e.timestamps)
        )
        assert key(written) == key(log)


def test_prnn_split_low_memory_and_its_errors(tmp_path, capsys):
    from prnn.cli import main

    log = tmp_path / "log.csv"
    log.write_text(
        "session_id,item_id,timestamp,kind\n"
        + "".join(
            f"{s},{i},{s * 100000 + i},{'a' if s % 2 else 'b'}\n"
            for s in range(1, 9)
            for i in range(3)
        )
    )
    out = tmp_path / "split"
    args = ["-q", "split", str(log), "--test-days", "1", "--out-dir", str(out), "--low-memory"]
    assert main(args) == 0
    summary = json.loads((out / "split.json").read_text())
    assert summary["train_events"] + summary["test_events"] == 24
    assert main([*args, "--where", "kind=a", "--force"]) == 0
    assert json.loads((out / "split.json").read_text())["train_sessions"] <= 4
    bad = tmp_path / "bad.csv"
    bad.write_text("session_id,item_id,timestamp\n1,2,3\n1,3,soon\n")
    capsys.readouterr()
    assert (
        main(
            [
                "split",
                str(bad),
                "--test-days",
                "1",
                "--out-dir",
                str(tmp_path / "b"),
                "--low-memory",
            ]
        )
        == 2
    )
    assert "column 'timestamp' has 1 empty or non-numeric value(s)" in capsys.readouterr().err
