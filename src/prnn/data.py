"""Event logs: reading click logs, the item vocabulary, and the time-based train/test split.

This module owns the event file formats and the only item id <-> index map (``Vocabulary``).
An ``EventLog`` holds plain arrays sorted by (session, time) plus session offsets, the layout
GRU4Rec's session-parallel iterator and the evaluator both walk.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from prnn.atomic import atomic_write_bytes
from prnn.errors import DataError

#: Column names tried, in order, when none is given: prnn's own, then GRU4Rec's.
DEFAULT_COLUMNS = {
    "session": ("session_id", "SessionId"),
    "item": ("item_id", "ItemId"),
    "time": ("timestamp", "Time"),
}
NO_TIME = "none"
SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class EventLog:
    """Click events sorted by session, then time (stably: ties keep file order).

    Attributes:
        session_ids: (N,) the original session id of each event (int64 or str).
        item_ids: (N,) the original item id of each event (int64 or str).
        timestamps: (N,) float64 event times in seconds; file order when the log has no time.
        session_offsets: (S + 1,) int64; session ``s`` is rows ``offsets[s]:offsets[s + 1]``.
        source: where the events came from, for messages.
        has_time: False when the file had no time column (``--time-col none``).
    """

    session_ids: np.ndarray
    item_ids: np.ndarray
    timestamps: np.ndarray
    session_offsets: np.ndarray
    source: str = "<memory>"
    has_time: bool = True

    @classmethod
    def from_arrays(
        cls,
        session_ids: np.ndarray | list,
        item_ids: np.ndarray | list,
        timestamps: np.ndarray | list | None = None,
        source: str = "<memory>",
    ) -> EventLog:
        """Build a log from unsorted parallel arrays; without timestamps the given order is time."""
        session_ids = np.asarray(session_ids)
        item_ids = np.asarray(item_ids)
        has_time = timestamps is not None
        times = (
            np.asarray(timestamps, dtype=np.float64)
            if has_time
            else np.arange(len(session_ids), dtype=np.float64)
        )
        if not (len(session_ids) == len(item_ids) == len(times)):
            raise DataError(
                f"{source}: session_ids, item_ids and timestamps must have one entry per event; "
                f"got {len(session_ids)}, {len(item_ids)} and {len(times)}"
            )
        _, session_codes = np.unique(session_ids, return_inverse=True)
        order = np.lexsort((times, session_codes))  # lexsort is stable
        codes = session_codes[order]
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(codes) else []
        offsets = np.r_[starts, len(codes)].astype(np.int64)
        return cls(
            session_ids=session_ids[order],
            item_ids=item_ids[order],
            timestamps=times[order],
            session_offsets=offsets,
            source=source,
            has_time=has_time,
        )

    @property
    def n_events(self) -> int:
        return len(self.item_ids)

    @property
    def n_sessions(self) -> int:
        return len(self.session_offsets) - 1

    @property
    def session_lengths(self) -> np.ndarray:
        return np.diff(self.session_offsets)

    @property
    def n_items(self) -> int:
        return len(np.unique(self.item_ids))

    def session_index(self) -> np.ndarray:
        """(N,) int64: the 0-based session number of each event."""
        return np.repeat(np.arange(self.n_sessions, dtype=np.int64), self.session_lengths)

    def select_events(self, keep: np.ndarray) -> EventLog:
        """A new log of the events where ``keep`` is True; order is kept, empty sessions vanish."""
        keep = np.asarray(keep, dtype=bool)
        session_of_event = self.session_index()[keep]
        counts = np.bincount(session_of_event, minlength=self.n_sessions)
        counts = counts[counts > 0]
        offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
        return EventLog(
            session_ids=self.session_ids[keep],
            item_ids=self.item_ids[keep],
            timestamps=self.timestamps[keep],
            session_offsets=offsets,
            source=self.source,
            has_time=self.has_time,
        )

    def select_sessions(self, keep_session: np.ndarray) -> EventLog:
        """A new log with the sessions where ``keep_session`` (shape (S,)) is True."""
        keep_session = np.asarray(keep_session, dtype=bool)
        return self.select_events(np.repeat(keep_session, self.session_lengths))


@dataclass(frozen=True)
class Vocabulary:
    """The item id <-> index map of a model, with each item's training event count.

    Items are indexed in sorted id order, so a lookup is a binary search and the map is stored as
    one array (memory-mappable; no dict of a million entries).

    Attributes:
        item_ids: (I,) sorted unique item ids, int64 or str.
        counts: (I,) int64 number of training events per item (popularity).
    """

    item_ids: np.ndarray
    counts: np.ndarray = field(repr=False)

    @classmethod
    def from_events(cls, events: EventLog) -> Vocabulary:
        item_ids, counts = np.unique(events.item_ids, return_counts=True)
        return cls(item_ids=item_ids, counts=counts.astype(np.int64))

    def __len__(self) -> int:
        return len(self.item_ids)

    def merged_with(self, events: EventLog) -> Vocabulary:
        """This vocabulary grown by the items of ``events`` (counts added): the vocabulary of
        a model that continues training on new events."""
        new = Vocabulary.from_events(events)
        converted, convertible = self._as_id_dtype(new.item_ids)
        if not convertible.all():
            example = new.item_ids[~convertible][0]
            raise DataError(
                f"{events.source}: item id {example!r} cannot be an id of this model, whose ids "
                "are integers"
            )
        item_ids = np.union1d(self.item_ids, converted)
        counts = np.zeros(len(item_ids), dtype=np.int64)
        merged = Vocabulary(item_ids=item_ids, counts=counts)
        np.add.at(counts, merged.index(self.item_ids), self.counts)
        np.add.at(counts, merged.index(converted), new.counts)
        return merged

    @property
    def ids_are_strings(self) -> bool:
        return self.item_ids.dtype.kind in ("U", "S", "O")

    def _as_id_dtype(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Convert queried ids to the vocabulary's id type; returns (converted, convertible)."""
        ids = np.asarray(ids)
        if self.ids_are_strings:
            return ids.astype(str), np.ones(len(ids), dtype=bool)
        if ids.dtype.kind in ("i", "u"):
            return ids.astype(np.int64), np.ones(len(ids), dtype=bool)
        converted = np.zeros(len(ids), dtype=np.int64)
        ok = np.zeros(len(ids), dtype=bool)
        for position, value in enumerate(ids.tolist()):
            try:
                number = int(value)
            except (TypeError, ValueError):
                continue
            if str(number) == str(value).strip():
                converted[position], ok[position] = number, True
        return converted, ok

    def index(self, ids: np.ndarray | list) -> np.ndarray:
        """(N,) int64 index of each id; -1 where the id is not in the vocabulary."""
        query, ok = self._as_id_dtype(np.asarray(ids))
        if len(self.item_ids) == 0:
            return np.full(len(query), -1, dtype=np.int64)
        positions = np.searchsorted(self.item_ids, query)
        positions = np.minimum(positions, len(self.item_ids) - 1)
        found = ok & (self.item_ids[positions] == query)
        return np.where(found, positions, -1).astype(np.int64)

    def ids(self, indices: np.ndarray | list) -> np.ndarray:
        """The item ids at the given indices."""
        return self.item_ids[np.asarray(indices, dtype=np.int64)]

    def most_popular(self, n: int) -> np.ndarray:
        """Indices of the ``n`` items with most training events (ties broken by index)."""
        order = np.lexsort((np.arange(len(self.counts)), -self.counts))
        return np.sort(order[:n])


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _line_of(row: int, is_csv: bool) -> str:
    # CSV line numbers count the header as line 1; Parquet has rows, not lines.
    return f"line {row + 2}" if is_csv else f"row {row + 1}"


def _pick_column(kind: str, requested: str | None, columns: list[str], path: str) -> str:
    option = f"--{kind}-col"
    if requested is not None:
        if requested not in columns:
            raise DataError(
                f"{path}: missing column {requested!r} (found columns: {', '.join(columns)}); "
                f"choose another with {option}"
            )
        return requested
    for candidate in DEFAULT_COLUMNS[kind]:
        if candidate in columns:
            return candidate
    expected = " or ".join(repr(c) for c in DEFAULT_COLUMNS[kind])
    raise DataError(
        f"{path}: missing column {expected} (found columns: {', '.join(columns)}); "
        f"name the {kind} column with {option}"
    )


def _sniff_separator(path: Path) -> str:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            header = handle.readline()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read file ({exc})") from None
    return "\t" if "\t" in header else ","


def _read_table(path: Path) -> tuple[pl.DataFrame, bool]:
    """Read CSV/TSV (maybe gzipped) as strings, or Parquet as stored; returns (table, is_csv)."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (expected a header line and at least one event)")
    is_parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        if is_parquet:
            return pl.read_parquet(path), False
        table = pl.read_csv(path, separator=_sniff_separator(path), infer_schema=False)
    except pl.exceptions.NoDataError:
        raise DataError(
            f"{path}: file is empty (expected a header line and at least one event)"
        ) from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        kind = "Parquet" if is_parquet else "CSV/TSV"
        raise DataError(f"{path}: cannot be read as {kind}: {first_line}") from None
    return table, True


def _first_bad_row(mask: pl.Series) -> int:
    return int(mask.arg_true()[0])


def _id_column(table: pl.DataFrame, column: str, path: Path, is_csv: bool) -> np.ndarray:
    """Ids as int64 when every value is an integer written plainly, else as strings."""
    series = table[column]
    nulls = series.is_null()
    if series.dtype == pl.String:
        nulls = nulls | (series.str.strip_chars() == "")
    if nulls.any():
        row = _first_bad_row(nulls)
        raise DataError(
            f"{path} {_line_of(row, is_csv)}, column {column!r}: missing value (expected an id); "
            f"{int(nulls.sum())} row(s) in all"
        )
    if series.dtype.is_integer():
        return series.cast(pl.Int64).to_numpy()
    text = series.cast(pl.String)
    as_int = text.cast(pl.Int64, strict=False)
    # Only a lossless round trip makes ids integers: "007" must stay distinct from "7".
    if as_int.null_count() == 0 and (as_int.cast(pl.String) == text).all():
        return as_int.to_numpy()
    return np.asarray(text.to_numpy(), dtype=str)


def _time_column(table: pl.DataFrame, column: str, path: Path, is_csv: bool) -> np.ndarray:
    series = table[column]
    if series.dtype.is_temporal():
        series = series.cast(pl.Datetime("ms")).dt.epoch("ms") / 1000.0
    missing = series.is_null()
    if missing.any():
        row = _first_bad_row(missing)
        raise DataError(
            f"{path} {_line_of(row, is_csv)}, column {column!r}: missing value "
            f"(expected a number: seconds since the epoch)"
        )
    numbers = series.cast(pl.Float64, strict=False)
    bad = numbers.is_null() | numbers.is_nan() | numbers.is_infinite()
    if series.dtype == pl.String:
        bad = bad | (series.str.strip_chars() == "")
    if bad.any():
        row = _first_bad_row(bad)
        raise DataError(
            f"{path} {_line_of(row, is_csv)}, column {column!r}: expected a number "
            f"(seconds since the epoch), got {series[row]!r}"
        )
    return numbers.to_numpy().astype(np.float64)


def read_events(
    path: str | os.PathLike,
    *,
    session_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    where: Mapping[str, str] | None = None,
) -> EventLog:
    """Read a click log from CSV, TSV (optionally ``.gz``) or Parquet, or a folder of prepared
    event arrays (``prnn.event_arrays``: memory-mapped, not loaded).

    Args:
        path: the file. The separator of a text file is a tab if its header has one, else a comma.
        session_col, item_col, time_col: column names; by default ``session_id``, ``item_id``,
            ``timestamp`` or GRU4Rec's ``SessionId``, ``ItemId``, ``Time``. ``time_col="none"``
            means the log has no time: file order is time order.
        where: keep only rows whose column equals the value (as text), e.g. ``{"split": "train"}``.

    Returns:
        The events, sorted by session and time (stably).

    Raises:
        DataError: naming the file, line and column, for a missing column, an empty file, a
            missing or non-numeric timestamp, or a missing id.
    """
    path = Path(path)
    if path.is_dir():
        from prnn.event_arrays import load_event_arrays
        from prnn.file_kinds import is_event_arrays

        if not is_event_arrays(path):
            raise DataError(f"{path}: a folder, not a click log (nor one prepared by prnn prepare)")
        if where or session_col or item_col or time_col:
            raise DataError(
                f"{path}: prepared event arrays have no columns to choose or filter on; "
                "give --where and the column options to prnn prepare"
            )
        return load_event_arrays(path)
    table, is_csv = _read_table(path)
    columns = table.columns
    if table.height == 0:
        raise DataError(f"{path}: file has a header but no events")
    if where:
        for column, value in where.items():
            if column not in columns:
                raise DataError(
                    f"{path}: missing column {column!r} to filter on "
                    f"(found columns: {', '.join(columns)})"
                )
            table = table.filter(pl.col(column).cast(pl.String) == str(value))
        if table.height == 0:
            condition = ", ".join(f"{k}={v}" for k, v in where.items())
            raise DataError(f"{path}: no rows match {condition}")
    session_column = _pick_column("session", session_col, columns, str(path))
    item_column = _pick_column("item", item_col, columns, str(path))
    if time_col is not None and time_col.lower() == NO_TIME:
        times = None
    else:
        time_column = _pick_column("time", time_col, columns, str(path))
        times = _time_column(table, time_column, path, is_csv)
    return EventLog.from_arrays(
        _id_column(table, session_column, path, is_csv),
        _id_column(table, item_column, path, is_csv),
        times,
        source=str(path),
    )


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_events(events: EventLog, path: str | os.PathLike) -> None:
    """Write events as CSV (``session_id,item_id,timestamp``; gzipped when the name ends in .gz)."""
    columns = {"session_id": events.session_ids, "item_id": events.item_ids}
    if events.has_time:
        columns["timestamp"] = events.timestamps
    text = pl.DataFrame(columns).write_csv().encode("utf-8")
    if str(path).endswith(".gz"):
        text = gzip.compress(text, mtime=0)
    atomic_write_bytes(path, text)


# --------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------

SplitBy = Literal["start", "end"]


@dataclass(frozen=True)
class SplitReport:
    """What a split kept and dropped, and why."""

    cutoff_time: float
    split_by: str
    dropped_events_low_item_support: int
    dropped_sessions_too_short: int
    dropped_test_events_unseen_items: int
    dropped_test_sessions_too_short: int
    train_events: int
    train_sessions: int
    train_items: int
    test_events: int
    test_sessions: int
    test_items: int

    def lines(self) -> list[str]:
        if self.split_by.startswith("random"):
            rule = f"split: {self.split_by} go to test"
        else:
            rule = (
                f"cutoff: sessions whose {self.split_by} time is >= {self.cutoff_time:.3f} "
                "go to test"
            )
        return [
            rule,
            f"dropped {self.dropped_events_low_item_support} events on items below the minimum "
            "item support",
            f"dropped {self.dropped_sessions_too_short} sessions shorter than the minimum length "
            "(before the split)",
            f"dropped {self.dropped_test_events_unseen_items} test events on items unseen in train",
            f"dropped {self.dropped_test_sessions_too_short} test sessions left shorter than the "
            "minimum length",
            f"train: {self.train_events} events, {self.train_sessions} sessions, "
            f"{self.train_items} items",
            f"test: {self.test_events} events, {self.test_sessions} sessions, "
            f"{self.test_items} items",
        ]


def _drop_short_sessions(events: EventLog, min_length: int) -> tuple[EventLog, int]:
    keep = events.session_lengths >= min_length
    return events.select_sessions(keep), int((~keep).sum())


def split_by_time(
    events: EventLog,
    test_days: float,
    *,
    split_by: SplitBy = "end",
    min_item_support: int = 1,
    min_session_length: int = 2,
) -> tuple[EventLog, EventLog, SplitReport]:
    """Time-based split as in the GRU4Rec literature.

    Sessions whose last event (``split_by="end"``, GRU4Rec's preprocessing) or first event
    (``"start"``) lies in the last ``test_days`` days of the log go to test, the rest to train.
    Before the split, items with fewer than ``min_item_support`` events are removed and then
    sessions shorter than ``min_session_length``. After it, test events on items unseen in train
    are removed and test sessions left shorter than ``min_session_length`` are dropped.

    Returns:
        (train, test, report)
    """
    if not events.has_time:
        raise DataError(f"{events.source}: cannot split by time: the log has no time column")
    if test_days <= 0:
        raise DataError(f"test_days must be > 0; got {test_days}")
    if split_by not in ("start", "end"):
        raise DataError(f"split_by must be 'start' or 'end'; got {split_by!r}")
    if min_item_support > 1:
        items, inverse, counts = np.unique(events.item_ids, return_inverse=True, return_counts=True)
        keep = counts[inverse] >= min_item_support
        dropped_support = int((~keep).sum())
        events = events.select_events(keep)
    else:
        dropped_support = 0
    events, dropped_short = _drop_short_sessions(events, min_session_length)
    if events.n_events == 0:
        raise DataError(f"{events.source}: no events left after the support and length filters")

    cutoff = float(events.timestamps.max()) - test_days * SECONDS_PER_DAY
    offsets = events.session_offsets
    position = offsets[1:] - 1 if split_by == "end" else offsets[:-1]
    is_test_session = events.timestamps[position] >= cutoff
    train = events.select_sessions(~is_test_session)
    test = events.select_sessions(is_test_session)
    if train.n_events == 0:
        raise DataError(
            f"{events.source}: every session falls in the last {test_days} day(s); "
            "nothing is left for training"
        )
    return _finish_split(
        train,
        test,
        min_session_length,
        cutoff_time=cutoff,
        split_by=split_by,
        dropped_events_low_item_support=dropped_support,
        dropped_sessions_too_short=dropped_short,
    )


def _finish_split(
    train: EventLog, test: EventLog, min_session_length: int, **report_fields
) -> tuple[EventLog, EventLog, SplitReport]:
    """Remove test events on items unseen in train, then too short test sessions; report."""
    seen = np.isin(test.item_ids, np.unique(train.item_ids))
    test = test.select_events(seen)
    test, dropped_test_short = _drop_short_sessions(test, min_session_length)
    report = SplitReport(
        **report_fields,
        dropped_test_events_unseen_items=int((~seen).sum()),
        dropped_test_sessions_too_short=dropped_test_short,
        train_events=train.n_events,
        train_sessions=train.n_sessions,
        train_items=train.n_items,
        test_events=test.n_events,
        test_sessions=test.n_sessions,
        test_items=test.n_items if test.n_events else 0,
    )
    return train, test, report


def split_sessions_randomly(
    events: EventLog,
    test_fraction: float,
    *,
    seed: int = 0,
    min_session_length: int = 2,
) -> tuple[EventLog, EventLog, SplitReport]:
    """Random split by session, for logs without meaningful time (e.g. user histories).

    A ``test_fraction`` share of the sessions, drawn with ``seed``, goes to test; then, as in the
    time split, test events on items unseen in train are removed and test sessions left shorter
    than ``min_session_length`` are dropped.
    """
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be between 0 and 1; got {test_fraction}")
    events, dropped_short = _drop_short_sessions(events, min_session_length)
    rng = np.random.default_rng(seed)
    is_test_session = np.zeros(events.n_sessions, dtype=bool)
    n_test = int(round(test_fraction * events.n_sessions))
    is_test_session[rng.choice(events.n_sessions, size=n_test, replace=False)] = True
    return _finish_split(
        events.select_sessions(~is_test_session),
        events.select_sessions(is_test_session),
        min_session_length,
        cutoff_time=float("nan"),
        split_by=f"random ({test_fraction:.0%} of sessions, seed {seed})",
        dropped_events_low_item_support=0,
        dropped_sessions_too_short=dropped_short,
    )
