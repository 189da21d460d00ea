"""The time split of a log too large to load: Polars' streaming engine, bounded memory.

Same rule and report as ``prnn.data.split_by_time`` (items below the minimum support removed,
then sessions below the minimum length; sessions whose last (or first) event lies in the last
``test_days`` days go to test; test events on items unseen in train removed, then test sessions
left too short), but the events are never loaded as a whole: each step is a streaming pass over
the file, and only per-session and per-item tables are held in memory. The outputs are written
as the passes stream (``train.csv``, ``test.csv``), not sorted; every reader of prnn sorts.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from prnn.atomic import atomic_path
from prnn.data import SECONDS_PER_DAY, SplitReport, _pick_column, _sniff_separator
from prnn.errors import DataError

STREAMING = "streaming"


def scan_log(path: Path, where: dict[str, str] | None) -> tuple[pl.LazyFrame, list[str]]:
    """(a lazy scan of the log at ``path`` keeping the rows ``where`` selects, its columns):
    CSV/TSV read as text, Parquet as stored."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        scan = pl.scan_parquet(path)
    else:
        scan = pl.scan_csv(path, separator=_sniff_separator(path), infer_schema=False)
    try:
        columns = scan.collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as error:
        raise DataError(f"{path}: cannot be read: {str(error).strip().splitlines()[0]}") from None
    for column, value in (where or {}).items():
        if column not in columns:
            raise DataError(
                f"{path}: missing column {column!r} to filter on (found columns: "
                f"{', '.join(columns)})"
            )
        scan = scan.filter(pl.col(column).cast(pl.String) == str(value))
    return scan, columns


def _count(frame: pl.LazyFrame) -> int:
    return int(frame.select(pl.len()).collect(engine=STREAMING).item())


def split_by_time_streaming(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    test_days: float,
    *,
    session_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    where: dict[str, str] | None = None,
    split_by: str = "end",
    min_item_support: int = 1,
    min_session_length: int = 2,
) -> SplitReport:
    """Split the log at ``path`` by time into ``out_dir``/train.csv and test.csv; returns the
    report (``split_by_time``'s)."""
    path, out_dir = Path(path), Path(out_dir)
    if test_days <= 0:
        raise DataError(f"test_days must be > 0; got {test_days}")
    if split_by not in ("start", "end"):
        raise DataError(f"split_by must be 'start' or 'end'; got {split_by!r}")
    scan, columns = scan_log(path, where)
    session = _pick_column("session", session_col, columns, str(path))
    item = _pick_column("item", item_col, columns, str(path))
    if time_col == "none":
        raise DataError(f"{path}: cannot split by time: the log has no time column")
    time = _pick_column("time", time_col, columns, str(path))
    events = scan.select(
        pl.col(session).cast(pl.String).alias("session_id"),
        pl.col(item).cast(pl.String).alias("item_id"),
        pl.col(time).cast(pl.Float64, strict=False).alias("timestamp"),
    )
    missing = events.select(pl.all().null_count()).collect(engine=STREAMING).row(0, named=True)
    for name, original in (("session_id", session), ("item_id", item), ("timestamp", time)):
        if missing[name]:
            what = "empty or non-numeric" if name == "timestamp" else "empty"
            raise DataError(
                f"{path}: column {original!r} has {missing[name]} {what} value(s); "
                "the streaming split needs every row complete (prnn split without "
                "--low-memory names the first bad line)"
            )
    n_events = _count(events)
    if n_events == 0:
        raise DataError(f"{path}: no events" + (" match the --where filter" if where else ""))
    if min_item_support > 1:
        supported = (
            events.group_by("item_id").agg(pl.len().alias("n"))
            .filter(pl.col("n") >= min_item_support).select("item_id")
        )  # fmt: skip
        events = events.join(supported, on="item_id", how="semi")
    n_supported = _count(events) if min_item_support > 1 else n_events
    sessions = (
        events.group_by("session_id")
        .agg(
            pl.len().alias("n"),
            pl.col("timestamp").min().alias("start"),
            pl.col("timestamp").max().alias("end"),
        )
        .collect(engine=STREAMING)
    )
    too_short = int((sessions["n"] < min_session_length).sum())
    sessions = sessions.filter(pl.col("n") >= min_session_length)
    if sessions.height == 0:
        raise DataError(f"{path}: no events left after the support and length filters")
    cutoff = float(sessions["end"].max()) - test_days * SECONDS_PER_DAY
    is_test = pl.col(split_by) >= cutoff
    train_ids = sessions.filter(~is_test).select("session_id").lazy()
    test_ids = sessions.filter(is_test).select("session_id").lazy()
    train = events.join(train_ids, on="session_id", how="semi")
    if _count(train) == 0:
        raise DataError(
            f"{path}: every session falls in the last {test_days} day(s); nothing is left for "
            "training"
        )
    train_items = train.select("item_id").unique().collect(engine=STREAMING).lazy()
    test = events.join(test_ids, on="session_id", how="semi")
    seen = test.join(train_items, on="item_id", how="semi")
    long_enough = (
        seen.group_by("session_id").agg(pl.len().alias("n"))
        .filter(pl.col("n") >= min_session_length).select("session_id")
    )  # fmt: skip
    test_kept = seen.join(long_enough, on="session_id", how="semi")
    out_dir.mkdir(parents=True, exist_ok=True)
    for frame, name in ((train, "train.csv"), (test_kept, "test.csv")):
        with atomic_path(out_dir / name) as temp:
            frame.sink_csv(temp, engine=STREAMING)

    def shape(frame: pl.LazyFrame) -> tuple[int, int, int]:
        row = frame.select(
            pl.len(), pl.col("session_id").n_unique(), pl.col("item_id").n_unique()
        ).collect(engine=STREAMING)
        return tuple(int(v) for v in row.row(0))

    train_shape, test_shape = shape(train), shape(test_kept)
    return SplitReport(
        cutoff_time=cutoff,
        split_by=split_by,
        dropped_events_low_item_support=n_events - n_supported,
        dropped_sessions_too_short=too_short,
        dropped_test_events_unseen_items=_count(test) - _count(seen),
        dropped_test_sessions_too_short=_count(seen.select("session_id").unique()) - test_shape[1],
        train_events=train_shape[0],
        train_sessions=train_shape[1],
        train_items=train_shape[2],
        test_events=test_shape[0],
        test_sessions=test_shape[1],
        test_items=test_shape[2],
    )
