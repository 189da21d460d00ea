"""The full softmax against the sampled one: its cost and what it buys.

GRU4Rec at the shared settings of benchmarks/prnn_defaults.py (cross-entropy, 100 units, batch
32, learning rate 0.1, momentum 0.2, hidden dropout 0.3; logQ 1 for the sampled softmax, none
for the full one), 3 epochs, on 90% of the sessions of rsc15_100k and of amazon_toys_mm's
sequences (split seed 1), eager step, one thread: training events/s (median epoch) and
Recall@20 / MRR@20 on the held-out 10%, every item ranked.

    python benchmarks/full_softmax.py --out reports/full_softmax/full_softmax.md
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch

from prnn.data import read_events, split_sessions_randomly
from prnn.evaluation import evaluate
from prnn.models import GRU4Rec
from report import emit_table

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED = dict(
    loss="cross-entropy",
    layers=(100,),
    batch_size=32,
    learning_rate=0.1,
    momentum=0.2,
    dropout_p_hidden=0.3,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logs = {
        "rsc15_100k": read_events(DATA / "rsc15_100k" / "events.csv.gz"),
        "amazon_toys_mm": read_events(
            DATA / "amazon_toys_mm" / "sequences.csv.gz", session_col="seq_id", time_col="none"
        ),
    }
    lines = [
        f"# {datetime.date.today().isoformat()}: `python benchmarks/full_softmax.py "
        f"{' '.join(sys.argv[1:])}`; {args.epochs} epochs, eager, one thread",
        "",
        "| log | items | output | training events/s | Recall@20 | MRR@20 |",
        "|---|---|---|---|---|---|",
    ]
    for name, events in logs.items():
        train, test, _ = split_sessions_randomly(events, 0.1, seed=1)
        for full in (False, True):
            model = GRU4Rec(
                **SHARED, logq=0.0 if full else 1.0, n_epochs=args.epochs, full_softmax=full
            )
            model.fit(train, compile=False)
            metrics = evaluate(model, test, cutoffs=(20,)).metrics
            rates = sorted(report.events_per_second for report in model.history_)
            output = "full softmax" if full else "2,048 samples + logQ"
            lines.append(
                f"| {name} | {model.n_items:,} | {output} | {rates[len(rates) // 2]:,.0f} | "
                f"{metrics['recall@20']:.4f} | {metrics['mrr@20']:.4f} |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    emit_table("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
