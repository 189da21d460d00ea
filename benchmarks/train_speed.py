"""Training and evaluation throughput of GRU4Rec for one config and one data file.

Prints a per-epoch table (seconds, training events/s) and a summary: median events/s, median
epoch time, peak memory, evaluation events/s, Recall@20 and MRR@20. Example (the issue-3 speed
configuration, on rsc15_100k):

    python benchmarks/train_speed.py ../shared/data/rsc15_100k/events.csv.gz \
        --train-where split=train --test-where split=test --preset rsc15 --epochs 3

With ``--reference DIR`` (a checkout of hidasib/GRU4Rec_PyTorch_Official; it needs pandas) the
same config is also trained by the reference implementation, in the same process, alternating
prnn and reference ``--rounds`` times so that drifts of the machine's speed hit both alike; the
table then compares median events/s and gives the speed-up:

    python benchmarks/train_speed.py ../shared/data/rsc15_100k/events.csv.gz \
        --train-where split=train --preset rsc15 --epochs 3 --reference ../GRU4Rec_PyTorch_Official

``--reference-threads N`` lets the reference train with another thread count than prnn's
``--threads`` (each at its best, or the reference at PyTorch's default).

``--compile`` trains prnn with ``compile=True`` (torch.compile); its first epoch then includes
the compilation, so the comparison also gives medians over epochs 2 and later.

Run nothing else heavy at the same time: two PyTorch processes on two cores slow each other
down by far more than half.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import torch

from prnn.config import build_config, parse_overrides, read_config_file, read_preset
from prnn.data import read_events
from prnn.evaluation import evaluate
from prnn.models import GRU4Rec, GRU4RecConfig
from reference_gru4rec import train_reference


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", help="click log")
    parser.add_argument("--train-where", default=None, help="COLUMN=VALUE selecting training rows")
    parser.add_argument("--test-where", default=None, help="COLUMN=VALUE selecting test rows")
    parser.add_argument("--preset", help="a shipped preset, e.g. rsc15")
    parser.add_argument("--config", help="TOML/JSON settings file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--epochs", type=int, default=3, help="epochs to time (default: 3)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="train prnn with compile=True (torch.compile; its first epoch includes compiling)",
    )
    parser.add_argument(
        "--mixed-precision",
        action="store_true",
        help="train prnn with the output layer's products in bfloat16 (for GPUs)",
    )
    parser.add_argument(
        "--reference",
        metavar="DIR",
        help="checkout of hidasib/GRU4Rec_PyTorch_Official: also time the reference",
    )
    parser.add_argument(
        "--reference-threads",
        type=int,
        default=None,
        help="with --reference: torch.set_num_threads while the reference trains "
        "(default: the same as prnn's)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="with --reference: prnn/reference alternations (default: 2)",
    )
    args = parser.parse_args()
    if args.reference and args.epochs < 2:
        parser.error("--reference also compares epochs 2 and later: give --epochs 2 or more")

    if args.threads:
        torch.set_num_threads(args.threads)
    settings: dict = {}
    if args.preset:
        settings.update(read_preset(args.preset))
    if args.config:
        settings.update(read_config_file(args.config))
    settings.update(parse_overrides(args.set))
    settings["n_epochs"] = args.epochs
    config = build_config(GRU4RecConfig, settings, "benchmark")

    def where(text):
        return parse_overrides([text], "--where") if text else None

    train = read_events(args.events, where=where(args.train_where))
    test = read_events(args.events, where=where(args.test_where)) if args.test_where else None
    device = torch.device(args.device)

    if args.reference:
        return compare_with_reference(args, config, train, device)
    model = GRU4Rec(config)
    started = time.perf_counter()
    model.fit(train, device=device, compile=args.compile, mixed_precision=args.mixed_precision)
    total = time.perf_counter() - started
    print(
        f"# {args.events}: {train.n_events} training events, {model.n_items} items; "
        f"device {device}, {torch.get_num_threads()} threads"
        + (", compiled (epoch 1 includes compiling)" if args.compile else "")
        + (", mixed precision (bfloat16 output products)" if args.mixed_precision else "")
    )
    print(f"# config: {config}")
    print("| epoch | seconds | train events/s |")
    print("|---|---|---|")
    for report in model.history_:
        print(f"| {report.epoch} | {report.seconds:.2f} | {report.events_per_second:,.0f} |")
    rates = [r.events_per_second for r in model.history_]
    seconds = [r.seconds for r in model.history_]
    print()
    print("| metric | value |")
    print("|---|---|")
    print(f"| median train events/s | {statistics.median(rates):,.0f} |")
    print(f"| median epoch seconds | {statistics.median(seconds):.2f} |")
    print(f"| targets per epoch | {model.history_[0].n_events} |")
    print(f"| total fit seconds (incl. setup) | {total:.2f} |")
    if test is not None:
        started = time.perf_counter()
        result = evaluate(model, test)
        eval_seconds = time.perf_counter() - started
        print(f"| eval events/s | {result.n_events / eval_seconds:,.0f} |")
        print(f"| Recall@20 | {result.metrics['recall@20']:.4f} |")
        print(f"| MRR@20 | {result.metrics['mrr@20']:.4f} |")
    print(
        f"| peak memory MB ({'GPU' if device.type == 'cuda' else 'process RSS'}) | "
        f"{peak_memory_mb(device):,.0f} |"
    )
    return 0


def compare_with_reference(args, config: GRU4RecConfig, train, device) -> int:
    """prnn and the reference, alternated ``args.rounds`` times; one row per timed epoch."""
    rows = []
    for round_number in range(1, args.rounds + 1):
        model = GRU4Rec(config)
        model.fit(train, device=device, compile=args.compile)
        for report in model.history_:
            rows.append(
                (
                    "prnn",
                    round_number,
                    report.epoch,
                    report.seconds,
                    report.loss,
                    report.events_per_second,
                )
            )
        prnn_threads = torch.get_num_threads()
        torch.set_num_threads(args.reference_threads or prnn_threads)
        try:
            reference_run = train_reference(args.reference, config, train, device).epochs
        finally:
            torch.set_num_threads(prnn_threads)
        for epoch in reference_run:
            rows.append(
                (
                    "reference",
                    round_number,
                    epoch["epoch"],
                    epoch["seconds"],
                    epoch["loss"],
                    epoch["rate"],
                )
            )
    threads = f"{torch.get_num_threads()} threads"
    if args.reference_threads:
        threads = f"prnn {threads}, reference {args.reference_threads} threads"
    print(
        f"# {args.events}: {train.n_events} training events; device {device}, "
        f"{threads}; {args.rounds} rounds of {config.n_epochs} epochs each"
        + (
            "; prnn compiled (its first epoch of each round includes compiling)"
            if args.compile
            else ""
        )
    )
    print(f"# config: {config}")
    print("| implementation | round | epoch | seconds | loss | train events/s |")
    print("|---|---|---|---|---|---|")
    for name, round_number, epoch, seconds, loss, rate in rows:
        print(f"| {name} | {round_number} | {epoch} | {seconds:.2f} | {loss:.4f} | {rate:,.0f} |")
    print()
    print("| implementation | median train events/s, all epochs | median, epochs 2+ |")
    print("|---|---|---|")
    medians = {}
    for name in ("prnn", "reference"):
        every = statistics.median(r[5] for r in rows if r[0] == name)
        later = statistics.median(r[5] for r in rows if r[0] == name and r[2] > 1)
        medians[name] = (every, later)
        print(f"| {name} | {every:,.0f} | {later:,.0f} |")
    (ours, ours_later), (theirs, theirs_later) = medians["prnn"], medians["reference"]
    print(f"| speed-up | {ours / theirs:.2f}x | {ours_later / theirs_later:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
