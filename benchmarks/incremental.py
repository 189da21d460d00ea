"""Incremental training on rsc15_100k: a model of days 1-5 updated with day 6, tested on day 7.

Three ways to have a model on day 7, each evaluated on day 7's sessions (Recall@20 / MRR@20,
all items ranked):

- stale: trained on days 1-5 (session-rec's ``train_tr``), not updated;
- update: the stale model (saved with its optimiser state) continued on day 6 (``valid``)
  alone, for 1 and for 2 epochs (``fit(..., init=stale)``; ``prnn train --init``);
- retrain: trained from scratch on days 1-6.

    python benchmarks/incremental.py --out reports/incremental/rsc15.md

Prints one table: mean over ``--seeds`` of each metric and of the training seconds (one
thread, the policy's count for training on this machine).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from report import emit_table

REPO = Path(__file__).resolve().parent.parent
EVENTS = REPO.parent / "shared" / "data" / "rsc15_100k" / "events.csv.gz"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="model seeds (default: 0,1,2)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of stale and retrain")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from prnn.data import read_events
    from prnn.evaluation import evaluate
    from prnn.models import GRU4Rec, SessionRecommender

    days_1_5 = read_events(EVENTS, where={"tune_split": "train_tr"})
    day_6 = read_events(EVENTS, where={"tune_split": "valid"})
    day_7 = read_events(EVENTS, where={"split": "test"})
    days_1_6 = read_events(EVENTS, where={"split": "train"})
    results: dict[str, list[tuple[float, float, float]]] = {}

    def record(label: str, model, seconds: float) -> None:
        metrics = evaluate(model, day_7, cutoffs=(20,)).metrics
        results.setdefault(label, []).append((metrics["recall@20"], metrics["mrr@20"], seconds))
        print(
            f"# {label}: {metrics['recall@20']:.4f} / {metrics['mrr@20']:.4f}, {seconds:.1f} s",
            file=sys.stderr,
        )

    for seed in (int(s) for s in args.seeds.split(",")):
        settings = {"n_epochs": args.epochs, "seed": seed}
        started = time.perf_counter()
        stale = GRU4Rec(**settings).fit(days_1_5, keep_optimizer_state=True, threads=1)
        record("stale (days 1-5)", stale, time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "stale.prnn"
            stale.save(path, optimizer_state=True)
            for epochs in (1, 2):
                started = time.perf_counter()
                loaded = SessionRecommender.load(path)
                updated = GRU4Rec(**{**settings, "n_epochs": epochs}).fit(
                    day_6, init=loaded, threads=1
                )
                record(
                    f"update: + day 6, {epochs} epoch{'s' if epochs > 1 else ''}",
                    updated,
                    time.perf_counter() - started,
                )
        started = time.perf_counter()
        retrained = GRU4Rec(**settings).fit(days_1_6, threads=1)
        record("retrain (days 1-6)", retrained, time.perf_counter() - started)

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benchmarks/incremental.py " + " ".join(sys.argv[1:])
    lines = [
        f"# {stamp}: `{command.strip()}`",
        f"# GRU4Rec defaults, {args.epochs} epochs for stale and retrain; day 7 = rsc15_100k "
        f"test ({day_7.n_events} events); mean of seeds {args.seeds}",
        "",
        "| model | trained on | Recall@20 | MRR@20 | train s | vs retrain time |",
        "|---|---|---|---|---|---|",
    ]
    events_of = {
        "stale (days 1-5)": days_1_5.n_events,
        "retrain (days 1-6)": days_1_6.n_events,
    }
    retrain_seconds = np.mean([r[2] for r in results["retrain (days 1-6)"]])
    for label, runs in results.items():
        recall, mrr, seconds = np.mean(runs, axis=0)
        trained_on = events_of.get(label, day_6.n_events)
        lines.append(
            f"| {label} | {trained_on:,} events | {recall:.4f} | {mrr:.4f} | {seconds:.1f} "
            f"| {seconds / retrain_seconds:.2f}x |"
        )
    emit_table("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
