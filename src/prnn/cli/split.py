"""``prnn split``: a time-based train/test split of a click log."""

from __future__ import annotations

import argparse
import json

from prnn.atomic import atomic_write_bytes
from prnn.cli.common import parse_where, read_events_from_args
from prnn.cli.paths import input_file, output_folder
from prnn.data import split_by_time, write_events
from prnn.file_kinds import is_split_report

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
    input_file(args.events, "", "event file")
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
