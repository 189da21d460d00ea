"""Prepared event arrays: the same log as read_events, memory-mapped, streamed in chunks."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from prnn.bundled import example_events_path
from prnn.cli import main
from prnn.data import read_events
from prnn.errors import DataError
from prnn.event_arrays import load_event_arrays, prepare_event_arrays
from prnn.models import GRU4Rec

ARRAYS = ("session_ids", "item_ids", "timestamps", "session_offsets")


def assert_same_log(expected, got):
    for name in ARRAYS:
        a, b = getattr(expected, name), getattr(got, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert expected.has_time == got.has_time


@pytest.fixture
def shuffled_sample(tmp_path):
    """The bundled sample with its rows in random order (sessions interleaved, each session's
    clicks out of time order), as CSV and as Parquet."""
    table = pl.read_csv(example_events_path())
    table = table.sample(fraction=1.0, shuffle=True, seed=3)
    csv, parquet = tmp_path / "shuffled.csv", tmp_path / "shuffled.parquet"
    table.write_csv(csv)
    table.write_parquet(parquet)
    return csv, parquet


@pytest.mark.parametrize("kind", [0, 1])
def test_prepared_arrays_equal_read_events_when_streamed_in_small_chunks(
    tmp_path, shuffled_sample, kind
):
    path = shuffled_sample[kind]
    # chunks of 5,000 events: ~17 chunks in pass 2, sessions sorted chunk by chunk in pass 3
    summary = prepare_event_arrays(path, tmp_path / "arrays", chunk_events=5_000)
    expected = read_events(path)
    assert (summary.events, summary.sessions, summary.items) == (
        expected.n_events,
        expected.n_sessions,
        expected.n_items,
    )
    got = read_events(tmp_path / "arrays")
    assert all(isinstance(getattr(got, name), np.memmap) for name in ARRAYS)
    assert_same_log(expected, got)


def test_text_ids_ties_and_file_order_as_read_events(tmp_path):
    # "007" and "7" are different sessions (not plain integers: ids stay text); the ties at
    # time 5 keep file order; one session's rows come in reverse time order
    path = tmp_path / "log.csv"
    path.write_text(
        "session_id,item_id,timestamp\n"
        "007,b,5\n7,a,1\n007,a,5\n7,c,0\nx,zz,3\n007,c,5\nx,a,2\n7,b,2\n"
    )
    prepare_event_arrays(path, tmp_path / "arrays", chunk_events=3)
    expected = read_events(path)
    assert expected.session_ids.dtype.kind == "U"
    assert_same_log(expected, load_event_arrays(tmp_path / "arrays"))
    # and without a time column: file order is time
    prepare_event_arrays(path, tmp_path / "untimed", time_col="none", chunk_events=2)
    assert_same_log(read_events(path, time_col="none"), load_event_arrays(tmp_path / "untimed"))


def test_where_filter_and_column_names(tmp_path):
    path = tmp_path / "log.tsv"
    path.write_text(
        "SessionId\tItemId\tTime\tsplit\n1\t10\t1\ttrain\n1\t11\t2\ttrain\n2\t10\t3\ttest\n"
        "2\t12\t4\ttest\n"
    )
    prepare_event_arrays(path, tmp_path / "train", where={"split": "train"})
    log = load_event_arrays(tmp_path / "train")
    assert log.item_ids.tolist() == [10, 11]
    assert log.source == str(path)


def test_training_on_prepared_arrays_gives_the_same_model(tmp_path, shuffled_sample):
    path = shuffled_sample[1]
    prepare_event_arrays(path, tmp_path / "arrays", chunk_events=20_000)
    settings = dict(layers=(16,), n_epochs=1, n_sample=32, batch_size=16)
    from_file = GRU4Rec(**settings).fit(read_events(path), compile=False)
    from_arrays = GRU4Rec(**settings).fit(read_events(tmp_path / "arrays"), compile=False)
    for name, tensor in from_file._tensors().items():
        assert torch.equal(tensor, from_arrays._tensors()[name]), name


@pytest.mark.parametrize(
    "text, message",
    [
        ("session_id,item_id,timestamp\n1,,5\n1,2,6\n", "column 'item_id' has 1 missing id"),
        ("session_id,item_id,timestamp\n1,1,x\n1,2,6\n", "column 'timestamp' has 1 missing or"),
        ("session_id,item_id,timestamp\n", "no events"),
        ("sid,item_id,timestamp\n1,1,1\n", "missing column 'session_id'"),
    ],
)
def test_bad_logs_are_named(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        prepare_event_arrays(path, tmp_path / "arrays")
    assert not (tmp_path / "arrays").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.csv"]  # no partial folder left


def test_a_failure_while_writing_leaves_no_partial_folder(tmp_path, monkeypatch):
    import prnn.event_arrays

    def fail(folder, *args):
        (folder / "item_ids.npy").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(prnn.event_arrays, "_write_arrays", fail)
    with pytest.raises(OSError, match="disk full"):
        prepare_event_arrays(example_events_path(), tmp_path / "arrays")
    assert list(tmp_path.iterdir()) == []


def test_a_malformed_csv_is_a_data_error(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("session_id,item_id,timestamp\n1,2,3\n1,2,3,4\n")
    with pytest.raises(DataError, match="ragged.csv: cannot be read"):
        prepare_event_arrays(path, tmp_path / "arrays")


def test_damaged_or_foreign_folders_are_refused(tmp_path):
    prepare_event_arrays(example_events_path(), tmp_path / "arrays")
    with pytest.raises(DataError, match="no columns to choose or filter on"):
        read_events(tmp_path / "arrays", where={"split": "train"})
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="a folder, not a click log"):
        read_events(tmp_path / "other")
    meta = json.loads((tmp_path / "arrays" / "events.json").read_text())
    (tmp_path / "arrays" / "events.json").write_text(json.dumps(meta | {"events": 5}))
    with pytest.raises(DataError, match="a damaged folder"):
        read_events(tmp_path / "arrays")
    (tmp_path / "arrays" / "events.json").write_text(json.dumps(meta | {"version": 99}))
    with pytest.raises(DataError, match="format version 99"):
        read_events(tmp_path / "arrays")
    del meta["sessions"]
    (tmp_path / "arrays" / "events.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="lacks sessions"):
        read_events(tmp_path / "arrays")


def test_cli_prepare_then_train_and_evaluate_on_the_folder(tmp_path, capsys):
    arrays = tmp_path / "arrays"
    assert main(["-q", "prepare", str(example_events_path()), "--out", str(arrays)]) == 0
    assert "prepared 83846 events" in capsys.readouterr().out
    # preparing again replaces its own folder; a foreign one needs --force
    assert main(["-q", "prepare", str(example_events_path()), "--out", str(arrays)]) == 0
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    assert main(["-q", "prepare", str(example_events_path()), "--out", str(foreign)]) == 2
    assert "refusing to replace it" in capsys.readouterr().err
    assert (foreign / "keep.txt").read_text() == "mine"
    model = tmp_path / "m.prnn"
    train = ["-q", "train", str(arrays), "--model", "gru4rec", "--set", "n_epochs=1"]
    assert main([*train, "--out", str(model)]) == 0
    capsys.readouterr()
    assert main(["-q", "evaluate", str(model), str(arrays), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["recall@20"] > 0.3
    assert main([*train, "--out", str(model), "--force", "--valid", str(foreign)]) == 2
    assert "a folder that prnn prepare did not write" in capsys.readouterr().err
    # the in-memory split reads the folder too; the streaming one wants the file
    split = ["-q", "split", str(arrays), "--test-days", "1", "--out-dir", str(tmp_path / "sp")]
    assert main(split) == 0
    assert read_events(tmp_path / "sp" / "train.csv").n_events > 0
    assert main([*split, "--low-memory"]) == 2
    assert "--low-memory streams a click log file" in capsys.readouterr().err
