"""The event reader, its error messages, sorting, and the vocabulary."""

from __future__ import annotations

import gzip

import numpy as np
import polars as pl
import pytest

from prnn.data import EventLog, Vocabulary, read_events, write_events
from prnn.errors import DataError

from .conftest import write_text


def test_reads_csv_and_sorts_by_session_then_time_stably(tmp_path):
    path = write_text(
        tmp_path / "clicks.csv",
        "session_id,item_id,timestamp\n2,b,5\n1,x,9\n1,y,3\n2,a,5\n2,c,1\n",
    )
    events = read_events(path)
    assert events.session_ids.tolist() == [1, 1, 2, 2, 2]
    # within session 2: time 1 first, then the two events at time 5 in file order (b before a)
    assert events.item_ids.tolist() == ["y", "x", "c", "b", "a"]
    assert events.session_offsets.tolist() == [0, 2, 5]
    assert events.timestamps.dtype == np.float64


def test_reads_gzipped_tsv_with_gru4rec_column_names(tmp_path):
    path = tmp_path / "clicks.tsv.gz"
    path.write_bytes(gzip.compress(b"SessionId\tItemId\tTime\n7\t100\t1.5\n7\t200\t2.5\n"))
    events = read_events(path)
    assert events.item_ids.tolist() == [100, 200]
    assert events.item_ids.dtype == np.int64
    assert events.n_sessions == 1


def test_reads_parquet_and_custom_columns(tmp_path):
    path = tmp_path / "clicks.parquet"
    pl.DataFrame({"s": [1, 1, 2], "i": ["p", "q", "p"], "t": [3.0, 1.0, 2.0]}).write_parquet(path)
    events = read_events(path, session_col="s", item_col="i", time_col="t")
    assert events.item_ids.tolist() == ["q", "p", "p"]


def test_time_col_none_keeps_file_order(tmp_path):
    path = write_text(tmp_path / "seq.csv", "session_id,item_id\n1,c\n1,a\n1,b\n")
    events = read_events(path, time_col="none")
    assert events.item_ids.tolist() == ["c", "a", "b"]
    assert not events.has_time


def test_where_filters_rows(tmp_path):
    path = write_text(
        tmp_path / "c.csv",
        "session_id,item_id,timestamp,split\n1,a,1,train\n1,b,2,train\n2,c,3,test\n2,a,4,test\n",
    )
    assert read_events(path, where={"split": "test"}).item_ids.tolist() == ["c", "a"]
    with pytest.raises(DataError, match="no rows match split=valid"):
        read_events(path, where={"split": "valid"})


def test_ids_with_leading_zeros_stay_strings(tmp_path):
    path = write_text(tmp_path / "c.csv", "session_id,item_id,timestamp\n1,007,1\n1,7,2\n")
    events = read_events(path)
    assert events.item_ids.tolist() == ["007", "7"]
    assert len(Vocabulary.from_events(events)) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", r"file is empty"),
        ("session_id,item_id,timestamp\n", r"header but no events"),
        ("session,item_id,timestamp\n1,a,1\n", r"missing column 'session_id' or 'SessionId'"),
        (
            "session_id,item_id,timestamp\n1,a,1\n1,b,n/a\n",
            r"line 3, column 'timestamp': expected a number \(seconds since the epoch\), got 'n/a'",
        ),
        (
            "session_id,item_id,timestamp\n1,a,1\n1,b,\n",
            r"line 3, column 'timestamp': missing value",
        ),
        ("session_id,item_id,timestamp\n1,a,1\n,b,2\n", r"line 3, column 'session_id': missing"),
        ("session_id,item_id,timestamp\n1,a,1\n1,,2\n1,,3\n", r"line 3, column 'item_id': missing"),
        ("session_id,item_id,timestamp\n1,a,1\n1,b,2,9\n", r"cannot be read as CSV/TSV"),
    ],
)
def test_broken_files_give_one_clear_error(tmp_path, content, message):
    path = write_text(tmp_path / "broken.csv", content)
    with pytest.raises(DataError, match=message) as caught:
        read_events(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_named_column_that_is_absent(tmp_path):
    path = write_text(tmp_path / "c.csv", "session_id,item_id,timestamp\n1,a,1\n")
    with pytest.raises(DataError, match=r"missing column 'when' .*found columns: session_id"):
        read_events(path, time_col="when")


def test_missing_file():
    with pytest.raises(DataError, match="no such file"):
        read_events("/nonexistent/clicks.csv")


def test_vocabulary_lookup_and_unknown_ids():
    vocabulary = Vocabulary(item_ids=np.array([10, 20, 30]), counts=np.array([5, 1, 3]))
    assert vocabulary.index(np.array([30, 10, 99])).tolist() == [2, 0, -1]
    # ids typed on a command line arrive as strings
    assert vocabulary.index(["20", "x", "030"]).tolist() == [1, -1, -1]
    assert vocabulary.ids([2, 0]).tolist() == [30, 10]
    assert vocabulary.most_popular(2).tolist() == [0, 2]


def test_string_vocabulary():
    vocabulary = Vocabulary(item_ids=np.array(["a", "c"]), counts=np.array([1, 2]))
    assert vocabulary.index(["c", "b", "a"]).tolist() == [1, -1, 0]


def test_write_then_read_round_trip(tmp_path):
    events = EventLog.from_arrays([1, 1, 2], ["x", "y", "x"], [1.0, 2.0, 3.5])
    write_events(events, tmp_path / "out.csv.gz")
    again = read_events(tmp_path / "out.csv.gz")
    assert again.item_ids.tolist() == ["x", "y", "x"]
    assert again.timestamps.tolist() == [1.0, 2.0, 3.5]
    assert not list(tmp_path.glob(".*tmp"))


def test_select_sessions_recomputes_offsets():
    events = EventLog.from_arrays([1, 1, 2, 3, 3, 3], list("abcdef"), [1, 2, 3, 4, 5, 6])
    kept = events.select_sessions(np.array([True, False, True]))
    assert kept.item_ids.tolist() == ["a", "b", "d", "e", "f"]
    assert kept.session_offsets.tolist() == [0, 2, 5]
