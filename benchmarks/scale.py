"""How training and evaluation scale with the catalogue and with the text width.

Two curves on logs written by ``prnn synth`` (``--events`` clicks each, 5% of the sessions held
out for evaluation), each point a fresh process so that its peak memory is its own:

- catalogue size (``--items``, default 10k, 100k, 1M): GRU4Rec (100 units, batch 32, 2,048
  samples, cross-entropy), one epoch: training events/s, evaluation events/s (every item
  ranked), peak memory;
- text width (``--text-widths``, default 10k, 100k, 1M; 10k items, ~50 non-zeros per item,
  ``--text-events`` clicks):
  a p-RNN with an ID and a sparse text subnet (100 + 100 units, residual, 2 epochs so that both
  subnets train), against ID only on the same log: events/s and peak memory.

    python benchmarks/scale.py --out reports/scale/scale.md

Prints the tables (and writes them with ``--out``, a PNG plot beside it). One thread per run;
run nothing else heavy at the same time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prnn.cli import HUGE_PAGES_VAR
from report import emit_table

#: large tensors on huge pages in every point, as a `prnn` command puts them (prnn.cli)
HUGE_PAGES = os.environ.get(HUGE_PAGES_VAR, "1")

SETTINGS = {"layers": (100,), "batch_size": 32, "n_sample": 2048, "loss": "cross-entropy"}


def child(args: argparse.Namespace) -> None:
    """One point: prints a JSON line of its figures."""
    import numpy as np  # noqa: F401 - imported before the timers

    from prnn.data import read_events, split_sessions_randomly
    from prnn.evaluation import evaluate
    from prnn.features import read_features
    from prnn.models import PRNN, GRU4Rec

    data = Path(args.data)
    events = read_events(data / "events.parquet" if data.is_dir() else data)
    train, test, _ = split_sessions_randomly(events, 0.05, seed=0)
    if args.model == "gru4rec":
        model = GRU4Rec(**SETTINGS, n_epochs=args.epochs)
        options = {}
    else:
        model = PRNN(**SETTINGS, feature_layers=(100,), n_epochs=args.epochs)
        options = {"features": {"text": read_features(Path(args.data) / "text.npz")}}
    started = time.perf_counter()
    model.fit(train, threads=1, compile=False, **options)
    train_seconds = time.perf_counter() - started
    figures = {
        "items": model.n_items,
        "train_events_per_s": args.epochs * train.n_events / train_seconds,
        "train_seconds": train_seconds,
        "epoch_events_per_s": model.history_[-1].events_per_second,
        "events": events.n_events,
    }
    if args.evaluate:
        started = time.perf_counter()
        result = evaluate(model, test, cutoffs=(20,), threads=1)
        figures["eval_events_per_s"] = result.n_events / (time.perf_counter() - started)
        figures["recall@20"] = result.metrics["recall@20"]
    figures["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))


def run_point(data: Path, model: str, epochs: int, evaluate: bool) -> dict:
    command = [sys.executable, __file__, "--child", "--data", str(data), "--model", model]
    command += ["--epochs", str(epochs)] + (["--evaluate"] if evaluate else [])
    env = {**os.environ, HUGE_PAGES_VAR: HUGE_PAGES}
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    figures = json.loads(output.strip().splitlines()[-1])
    print(f"# {data.name} {model}: {figures}", file=sys.stderr)
    return figures


def synth(out: Path, items: int, events: int, text_width: int = 0) -> Path:
    from prnn.synth import SynthSpec, generate

    generate(
        SynthSpec(n_items=items, n_events=events, seed=1, text_width=text_width, text_nnz=50), out
    )
    return out


RSC15 = Path(__file__).resolve().parents[2] / "shared" / "data" / "rsc15_100k" / "events.csv.gz"


def large_run(args: argparse.Namespace) -> int:
    """One epoch of GRU4Rec on the large log against one on rsc15_100k, each a fresh process."""
    points = [("rsc15_100k", run_point(RSC15, "gru4rec", 1, False))]
    points.append((args.large.name, run_point(args.large, "gru4rec", 1, False)))
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benchmarks/scale.py " + " ".join(sys.argv[1:])
    lines = [
        f"# {stamp}: `{command.strip()}`",
        "# GRU4Rec (100 units, batch 32, 2048 samples, cross-entropy), one epoch on 95% of the "
        f"sessions; one thread, eager step, {HUGE_PAGES_VAR}={HUGE_PAGES}; "
        "peak memory = the process's maximum resident set",
        "",
        "| log | events | items in training | epoch events/s | relative | fit s | peak memory MB |",
        "|---|---|---|---|---|---|---|",
    ]
    base = points[0][1]["epoch_events_per_s"]
    for name, p in points:
        lines.append(
            f"| {name} | {p['events']:,} | {p['items']:,} | {p['epoch_events_per_s']:,.0f} | "
            f"{p['epoch_events_per_s'] / base:.2f} | {p['train_seconds']:.0f} | "
            f"{p['peak_mb']:,.0f} |"
        )
    emit_table("\n".join(lines), args.out)
    return 0


def plot(path: Path, catalogue: list[dict], text: list[tuple[int, dict, dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    sizes = [p["catalogue"] for p in catalogue]
    left.plot(sizes, [p["train_events_per_s"] for p in catalogue], "o-", label="training")
    left.plot(sizes, [p["eval_events_per_s"] for p in catalogue], "s-", label="evaluation")
    left.set(xscale="log", xlabel="items in the catalogue", ylabel="events/s",
             title="GRU4Rec: speed against catalogue size")  # fmt: skip
    left.legend()
    widths = [w for w, _, _ in text]
    right.plot(
        widths, [p["train_events_per_s"] for _, p, _ in text], "o-", label="p-RNN (ID + text)"
    )
    right.plot(widths, [i["train_events_per_s"] for _, _, i in text], "s--", label="ID only")
    right.set(xscale="log", xlabel="text columns", ylabel="training events/s",
              title="p-RNN with sparse text: speed against width")  # fmt: skip
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="10000,100000,1000000")
    parser.add_argument("--text-widths", default="10000,100000,1000000")
    parser.add_argument("--events", type=int, default=300_000, help="clicks per catalogue log")
    parser.add_argument("--text-events", type=int, default=100_000, help="clicks per text log")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--large",
        type=Path,
        metavar="DIR",
        help="instead: the issue's large run, one GRU4Rec epoch on DIR (a prnn synth output, e.g. "
        "1M items and 10M events) against one on rsc15_100k, events/s and peak memory",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="gru4rec", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--evaluate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0

    if args.large:
        return large_run(args)
    catalogue, text = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for items in (int(n) for n in args.items.split(",") if n):
            data = synth(Path(scratch) / f"items_{items}", items, args.events)
            catalogue.append({"catalogue": items, **run_point(data, "gru4rec", 1, True)})
        for width in (int(n) for n in args.text_widths.split(",") if n):
            data = synth(Path(scratch) / f"text_{width}", 10_000, args.text_events, width)
            text.append(
                (width, run_point(data, "prnn", 2, False), run_point(data, "gru4rec", 2, False))
            )

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benchmarks/scale.py " + " ".join(sys.argv[1:])
    lines = [
        f"# {stamp}: `{command.strip()}`",
        f"# logs by prnn synth, {args.events:,} events each ({args.text_events:,} for the text "
        "curve; 5% of the sessions for evaluation); "
        f"one thread, eager step, {HUGE_PAGES_VAR}={HUGE_PAGES}; "
        "peak memory = the process's maximum resident set",
        "",
        "| catalogue | items seen in training | training events/s | evaluation events/s "
        "| Recall@20 | peak memory MB |",
        "|---|---|---|---|---|---|",
    ]
    for p in catalogue:
        lines.append(
            f"| {p['catalogue']:,} | {p['items']:,} | {p['train_events_per_s']:,.0f} | "
            f"{p['eval_events_per_s']:,.0f} | {p['recall@20']:.4f} | {p['peak_mb']:,.0f} |"
        )
    lines += [
        "",
        "| text columns | p-RNN (ID + text) events/s | ID only events/s | ratio "
        "| p-RNN peak MB | ID only peak MB |",
        "|---|---|---|---|---|---|",
    ]
    for width, prnn, id_only in text:
        lines.append(
            f"| {width:,} | {prnn['train_events_per_s']:,.0f} | "
            f"{id_only['train_events_per_s']:,.0f} | "
            f"{prnn['train_events_per_s'] / id_only['train_events_per_s']:.2f} | "
            f"{prnn['peak_mb']:,.0f} | {id_only['peak_mb']:,.0f} |"
        )
    emit_table("\n".join(lines), args.out)
    if args.out:
        plot(args.out.with_suffix(".png"), catalogue, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
