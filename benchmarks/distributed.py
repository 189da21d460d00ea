"""Data-parallel training speed: one process against torchrun with 1 and 2 processes (gloo).

GRU4Rec with the rsc15 preset on the training part of a time split of rsc15_100k (last day
held out), ``--epochs`` epochs, one thread per process, eager step in every run (the
data-parallel step is eager). For each run: the events/s of its epochs (over every process's
shard), the whole command's wall time and the held-out Recall@20 / MRR@20.

    python benchmarks/distributed.py --out reports/distributed/rsc15.md

Prints the table (and writes it with ``--out``, a PNG bar chart beside it). Run nothing else
heavy at the same time: two processes need both cores.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import emit_table

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rsc15_100k" / "events.csv.gz"
EPOCH_LINE = re.compile(r"epoch \d+/\d+: .*?([\d,]+) events/s")


def run(command: list[str], cwd: Path) -> tuple[float, str]:
    """(wall seconds, stderr) of a command that must succeed."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PRNN_THREADS="1")
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stderr[-3000:]}")
    return seconds, result.stderr


def metrics(model: Path, test: Path) -> dict[str, float]:
    from prnn.data import read_events
    from prnn.evaluation import evaluate
    from prnn.models import SessionRecommender

    result = evaluate(SessionRecommender.load(model), read_events(test), cutoffs=(20,))
    return result.metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="click log (rsc15_100k)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="prnn_ddp_"))
    prnn = [sys.executable, "-m", "prnn"]
    run([*prnn, "-q", "split", str(args.data), "--test-days", "1", "--out-dir", "split"], work)
    train = ["train", "split/train.csv", "--model", "gru4rec", "--preset", "rsc15"]
    train += ["--set", f"n_epochs={args.epochs}"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    runs = [
        ("1 process (no torch.distributed)", [*prnn, *train, "--no-compile"]),
        ("torchrun, 1 process", [*torchrun, "--nproc_per_node=1", "-m", "prnn", *train]),
        ("torchrun, 2 processes", [*torchrun, "--nproc_per_node=2", "-m", "prnn", *train]),
    ]
    rows = []
    for label, command in runs:
        model = f"{len(rows)}.prnn"
        distributed = ["--distributed"] if "torch.distributed.run" in command else []
        seconds, log = run([*command, *distributed, "--out", model], work)
        rates = [float(m.replace(",", "")) for m in EPOCH_LINE.findall(log)]
        figures = metrics(work / model, work / "split" / "test.csv")
        rows.append((label, sum(rates) / len(rates), seconds, figures))
        print(f"{label}: {rows[-1][1]:,.0f} events/s, {seconds:.1f} s", file=sys.stderr)
    lines = [
        f"GRU4Rec (rsc15 preset), {args.epochs} epochs on the rsc15_100k training split, one "
        f"thread per process, eager step; {os.cpu_count()} cores; "
        f"{datetime.date.today().isoformat()}",
        "",
        "| run | training events/s | whole command s | Recall@20 | MRR@20 |",
        "|---|---|---|---|---|",
    ]
    for label, rate, seconds, figures in rows:
        lines.append(
            f"| {label} | {rate:,.0f} | {seconds:.1f} | {figures['recall@20']:.4f} "
            f"| {figures['mrr@20']:.4f} |"
        )
    emit_table("\n".join(lines), args.out)
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(6, 3))
        axis.barh([label for label, *_ in rows], [rate for _, rate, *_ in rows])
        axis.set_xlabel("training events/s")
        axis.invert_yaxis()
        figure.tight_layout()
        figure.savefig(Path(args.out).with_suffix(".png"), dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
