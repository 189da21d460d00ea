"""``prnn split`` (a time-based train/test split of a click log) and ``prnn prepare`` (a log
laid out as memory-mapped event arrays)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prnn.atomic import atomic_write_bytes
from prnn.cli.common import parse_where, read_events_from_args
from prnn.cli.paths import _check_writable_folder, input_events, input_file, output_folder
from prnn.data import split_by_time, write_events
from prnn.errors import ConfigError
from prnn.file_kinds import is_event_arrays, is_split_report

#: the files a split writes, and the one that shows an earlier split wrote them
SPLIT_FILES = ("train.csv", "test.csv", "split.json")
SPLIT_MARKER = ("split.json", is_split_report)


def command_split(args: argparse.Namespace) -> int:
    out_dir = output_folder(
        args.out_dir,
        "--out-dir",
        outputs=SPLIT_FILES,
        marker=SPLIT_MARKER,
        what="part of an earlier prnn split",
        force=args.force,
    )
    parse_where(args)
    input_events(args.events, "", "event file")  # a file, or a folder prnn prepare wrote
    if args.low_memory and Path(args.events).is_dir():
        raise ConfigError(
            f"{args.events}: --low-memory streams a click log file; a prepared folder is split "
            "without it"
        )
    if args.low_memory:
        from prnn.streaming_split import split_by_time_streaming

        report = split_by_time_streaming(
            args.events,
            out_dir,
            args.test_days,
            session_col=args.session_col,
            item_col=args.item_col,
            time_col=args.time_col,
            where=parse_where(args),
            split_by=args.split_by,
            min_item_support=args.min_item_support,
            min_session_length=args.min_session_length,
        )
    else:
        events = read_events_from_args(args.events, args)
        train, test, report = split_by_time(
            events,
            args.test_days,
            split_by=args.split_by,
            min_item_support=args.min_item_support,
            min_session_length=args.min_session_length,
        )
        write_events(train, out_dir / "train.csv")
        write_events(test, out_dir / "test.csv")
    summary = {key: value for key, value in vars(report).items()}
    atomic_write_bytes(out_dir / "split.json", json.dumps(summary, indent=2).encode())
    for line in report.lines():
        print(line)
    print(f"wrote {out_dir / 'train.csv'}, {out_dir / 'test.csv'} and {out_dir / 'split.json'}")
    return 0


def command_prepare(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not (out.is_dir() and is_event_arrays(out)) and not args.force:
        raise ConfigError(
            f"--out {out}: exists and is not earlier prepared event arrays; refusing to replace "
            "it (choose another name, or pass --force to replace it)"
        )
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; prnn prepare writes a folder")
    _check_writable_folder(out.parent, "--out", out)
    where = parse_where(args)
    input_file(args.events, "", "event file")
    from prnn.event_arrays import prepare_event_arrays

    summary = prepare_event_arrays(
        args.events,
        out,
        session_col=args.session_col,
        item_col=args.item_col,
        time_col=args.time_col,
        where=where,
    )
    print(
        f"prepared {summary.events} events, {summary.sessions} sessions, {summary.items} items "
        f"in {out}; train on it with prnn train {out} ..."
    )
    return 0
