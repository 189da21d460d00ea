"""``prnn synth``: a synthetic click log and item features at a given scale (``prnn.synth``)."""

from __future__ import annotations

import argparse
import time

from prnn.cli.common import check_at_least
from prnn.cli.paths import output_folder
from prnn.file_kinds import is_synth_report

OUTPUTS = ("events.parquet", "text.npz", "image.npz", "synth.json")


def command_synth(args: argparse.Namespace) -> int:
    check_at_least(args.items, "--items", 2)
    check_at_least(args.events, "--events", 2)
    check_at_least(args.text_width, "--text-width", 0)
    check_at_least(args.image_dim, "--image-dim", 0)
    out_dir = output_folder(
        args.out,
        "--out",
        outputs=OUTPUTS,
        marker=("synth.json", is_synth_report),
        what="part of an earlier prnn synth output",
        force=args.force,
    )
    from prnn.synth import SynthSpec, generate

    spec = SynthSpec(
        n_items=args.items,
        n_events=args.events,
        seed=args.seed,
        text_width=args.text_width,
        text_nnz=args.text_nnz,
        image_dim=args.image_dim,
    )
    started = time.perf_counter()
    counts = generate(spec, out_dir, progress=not args.quiet)
    files = ["events.parquet"] + ["text.npz"] * bool(args.text_width)
    files += ["image.npz"] * bool(args.image_dim)
    print(
        f"{counts['events']:,} events in {counts['sessions']:,} sessions over "
        f"{counts['items']:,} items in {time.perf_counter() - started:.1f} s; wrote "
        f"{', '.join(str(out_dir / f) for f in files)} and {out_dir / 'synth.json'}"
    )
    return 0
