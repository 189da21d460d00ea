"""Prepared event arrays: a click log laid out once as NumPy files, read memory-mapped.

``prepare_event_arrays(log, folder)`` writes the log as the arrays of an ``EventLog`` (events
sorted by session, then time): ``session_ids.npy``, ``item_ids.npy``, ``timestamps.npy``,
``session_offsets.npy`` and ``events.json`` (what the folder is, counts, the source). Reading
the folder back (``read_events(folder)`` or ``load_event_arrays``) maps the files instead of
loading them: opening costs nothing, and the log's columns (ids and times, 24 bytes an event)
are pages the operating system keeps or drops rather than process memory. Training still
builds its own per-event indices (item indices and the mini-batch schedule, about 40 bytes an
event) in memory.

Preparing streams the log (Polars' streaming engine), never holding the events as a whole:
one streaming scan checks the rows and settles the id types, a second counts each session's
events, which gives every session its place; then the chunks of events are written at their
sessions' places, in file order; last, each session's events are sorted by time, a chunk of
whole sessions at a time. The result is the same log as ``read_events`` of the file (ids as
int64 when every id is a plain integer, else as text; ties in time keep file order), which
``tests/test_event_arrays.py`` checks.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from prnn.data import EventLog, _pick_column
from prnn.errors import DataError
from prnn.file_kinds import EVENT_ARRAYS_FORMAT, is_event_arrays
from prnn.streaming_split import STREAMING, scan_log

FORMAT = EVENT_ARRAYS_FORMAT
VERSION = 1
MARKER = "events.json"
ARRAYS = ("session_ids", "item_ids", "timestamps", "session_offsets")
#: events per streamed chunk (and per chunk of whole sessions when sorting)
CHUNK_EVENTS = 1_000_000


def load_event_arrays(path: str | os.PathLike, *, mmap: bool = True) -> EventLog:
    """The log of a prepared folder, its arrays memory-mapped (read-only) unless ``mmap`` is
    False."""
    path = Path(path)
    if not is_event_arrays(path):
        raise DataError(f"{path}: not a folder of prepared event arrays (prnn prepare writes one)")
    meta = json.loads((path / MARKER).read_text(encoding="utf-8"))
    missing = [k for k in ("version", "events", "sessions", "has_time", "source") if k not in meta]
    if missing:
        raise DataError(
            f"{path / MARKER}: lacks {', '.join(missing)} (a damaged folder: prepare the log again)"
        )
    if meta.get("version") != VERSION:
        raise DataError(
            f"{path}: prepared with format version {meta.get('version')!r}; this prnn reads "
            f"version {VERSION} (prepare the log again)"
        )
    arrays = {}
    for name in ARRAYS:
        file = path / f"{name}.npy"
        try:
            arrays[name] = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DataError(f"{file}: cannot be read ({error})") from None
    n_events, n_sessions = meta["events"], meta["sessions"]
    lengths = {name: len(array) for name, array in arrays.items()}
    expected = dict.fromkeys(ARRAYS[:3], n_events) | {"session_offsets": n_sessions + 1}
    if lengths != expected:
        raise DataError(
            f"{path}: the arrays have lengths {lengths}; events.json says {expected} "
            "(a damaged folder: prepare the log again)"
        )
    return EventLog(**arrays, source=meta["source"], has_time=meta["has_time"])


@dataclass(frozen=True)
class PreparedSummary:
    events: int
    sessions: int
    items: int


def _all_plain_integers(column: str) -> pl.Expr:
    """Whether every value of ``column`` is an integer written plainly: then ``read_events``
    reads the ids as int64, else as text ("007" stays apart from "7")."""
    text = pl.col(column).cast(pl.String)
    return (text.cast(pl.Int64, strict=False).cast(pl.String) == text).fill_null(False).all()


def _id_expression(column: str, is_integer: bool) -> pl.Expr:
    text = pl.col(column).cast(pl.String)
    return text.cast(pl.Int64) if is_integer else text


def _numpy_ids(series: pl.Series, is_integer: bool) -> np.ndarray:
    return series.to_numpy() if is_integer else np.asarray(series.to_numpy(), dtype=str)


def prepare_event_arrays(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    session_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    where: dict[str, str] | None = None,
    chunk_events: int = CHUNK_EVENTS,
) -> PreparedSummary:
    """Write the log at ``path`` (CSV, TSV, gzipped or not, or Parquet) as prepared arrays in
    the folder ``out`` (replaced as a whole: written beside it, then renamed)."""
    try:
        return _prepare(path, out, session_col, item_col, time_col, where, chunk_events)
    except pl.exceptions.PolarsError as error:  # a malformed file, found while streaming it
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise DataError(f"{path}: cannot be read: {first_line or type(error).__name__}") from None


def _prepare(path, out, session_col, item_col, time_col, where, chunk_events) -> PreparedSummary:
    path, out = Path(path), Path(out)
    scan, columns = scan_log(path, where)
    session = _pick_column("session", session_col, columns, str(path))
    item = _pick_column("item", item_col, columns, str(path))
    has_time = not (time_col is not None and time_col.lower() == "none")
    time = _pick_column("time", time_col, columns, str(path)) if has_time else None

    # pass 1: every row complete, the id types, the item count and the widest text item id;
    # then each session's size
    raw = scan.select(
        pl.col(session).alias("session_id"),
        pl.col(item).alias("item_id"),
        *([pl.col(time).alias("timestamp")] if has_time else []),
    )
    time_expr = pl.col("timestamp")
    if has_time and raw.collect_schema()["timestamp"].is_temporal():
        time_expr = time_expr.cast(pl.Datetime("ms")).dt.epoch("ms") / 1000.0
    checked = raw.select(
        *(
            (pl.col(name).is_null() | (pl.col(name).cast(pl.String).str.strip_chars() == ""))
            .sum()
            .alias(name)
            for name in ("session_id", "item_id")
        ),
        *(
            [time_expr.cast(pl.Float64, strict=False).is_null().sum().alias("bad_time")]
            + [time_expr.cast(pl.Float64, strict=False).is_infinite().sum().alias("inf_time")]
            + [time_expr.cast(pl.Float64, strict=False).is_nan().sum().alias("nan_time")]
            if has_time
            else []
        ),
        pl.len().alias("n"),
        _all_plain_integers("session_id").alias("session_int"),
        _all_plain_integers("item_id").alias("item_int"),
        pl.col("item_id").cast(pl.String).n_unique().alias("items"),
        pl.col("item_id").cast(pl.String).str.len_chars().max().alias("item_width"),
    ).collect(engine=STREAMING)
    counts = checked.row(0, named=True)
    if counts["n"] == 0:
        raise DataError(f"{path}: no events" + (" match the --where filter" if where else ""))
    for name, original in (("session_id", session), ("item_id", item)):
        if counts[name]:
            raise DataError(
                f"{path}: column {original!r} has {counts[name]} missing id(s); prnn prepare "
                "needs every row complete (prnn split names the first bad line)"
            )
    if has_time and counts["bad_time"] + counts["inf_time"] + counts["nan_time"]:
        bad = counts["bad_time"] + counts["inf_time"] + counts["nan_time"]
        raise DataError(
            f"{path}: column {time!r} has {bad} missing or non-numeric time(s) (expected "
            "seconds since the epoch)"
        )
    session_int, item_int = bool(counts["session_int"]), bool(counts["item_int"])
    events = raw.select(
        _id_expression("session_id", session_int).alias("session_id"),
        _id_expression("item_id", item_int).alias("item_id"),
        *([time_expr.cast(pl.Float64).alias("timestamp")] if has_time else []),
    )
    sessions = (events.group_by("session_id").agg(pl.len().alias("n")).sort("session_id")).collect(
        engine=STREAMING
    )
    session_ids = _numpy_ids(sessions["session_id"], session_int)
    lengths = sessions["n"].to_numpy().astype(np.int64)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    n_events, n_sessions = int(offsets[-1]), len(lengths)
    n_items = int(counts["items"])
    item_dtype = np.dtype(np.int64) if item_int else np.dtype(f"<U{max(1, counts['item_width'])}")

    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    try:
        _write_arrays(
            temp, events, session_ids, offsets, session_int, item_dtype, has_time, chunk_events
        )
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "events": n_events,
            "sessions": n_sessions,
            "items": n_items,
            "has_time": has_time,
            "source": str(path),
        }
        (temp / MARKER).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        temp.rename(out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return PreparedSummary(events=n_events, sessions=n_sessions, items=n_items)


def _write_arrays(
    folder: Path,
    events: pl.LazyFrame,
    session_ids: np.ndarray,
    offsets: np.ndarray,
    session_int: bool,
    item_dtype: np.dtype,
    has_time: bool,
    chunk_events: int,
) -> None:
    """Passes 2 and 3: events to their sessions' places, then each session sorted by time."""
    open_memmap = np.lib.format.open_memmap
    np.save(folder / "session_offsets.npy", offsets)
    lengths = np.diff(offsets)
    n_events = int(offsets[-1])
    sessions_out = open_memmap(
        folder / "session_ids.npy", mode="w+", dtype=session_ids.dtype, shape=(n_events,)
    )
    for first in range(0, len(lengths), max(1, chunk_events // 4)):
        last = min(first + max(1, chunk_events // 4), len(lengths))
        sessions_out[offsets[first] : offsets[last]] = np.repeat(
            session_ids[first:last], lengths[first:last]
        )
    sessions_out.flush()
    del sessions_out

    items_out = open_memmap(folder / "item_ids.npy", mode="w+", dtype=item_dtype, shape=(n_events,))
    times_out = open_memmap(
        folder / "timestamps.npy", mode="w+", dtype=np.float64, shape=(n_events,)
    )
    filled = np.zeros(len(lengths), dtype=np.int64)  # events placed per session so far
    position = 0  # file order, for logs without time
    for batch in events.collect_batches(chunk_size=chunk_events, maintain_order=True):
        codes = np.searchsorted(session_ids, _numpy_ids(batch["session_id"], session_int))
        # each event's rank among this chunk's events of its session, in file order
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
        group_start = np.repeat(starts, np.diff(np.r_[starts, len(codes)]))
        rank = np.empty(len(codes), dtype=np.int64)
        rank[order] = np.arange(len(codes)) - group_start
        slots = offsets[codes] + filled[codes] + rank
        filled += np.bincount(codes, minlength=len(lengths))
        items_out[slots] = _numpy_ids(batch["item_id"], item_dtype.kind == "i")
        if has_time:
            times_out[slots] = batch["timestamp"].to_numpy()
        else:
            times_out[slots] = np.arange(position, position + len(codes), dtype=np.float64)
        position += len(codes)
    if not np.array_equal(filled, lengths):
        raise DataError(
            "the log changed while it was being prepared (counts differ between passes)"
        )

    # pass 3: each session's events by time, stably (ties keep file order), whole sessions
    # at a time
    first = 0
    while first < len(lengths):
        last = int(np.searchsorted(offsets, offsets[first] + chunk_events, side="right")) - 1
        last = min(max(last, first + 1), len(lengths))
        lo, hi = offsets[first], offsets[last]
        times = np.asarray(times_out[lo:hi])
        local = np.repeat(np.arange(last - first), lengths[first:last])
        unsorted = np.flatnonzero((np.diff(times) < 0) & (local[1:] == local[:-1]))
        if len(unsorted):
            order = np.lexsort((times, local))
            times_out[lo:hi] = times[order]
            items_out[lo:hi] = np.asarray(items_out[lo:hi])[order]
        first = last
    items_out.flush()
    times_out.flush()
