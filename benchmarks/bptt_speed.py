"""Training speed of truncated back-propagation through time (``bptt``) and BPR-max's step loss.

Part 1: GRU4Rec with the ``long_history`` preset at bptt 1, 5 and 10 on 90% of amazon_toys_mm's
sequences (split seed 1), ``--epochs`` epochs each, eager, one thread, one after another in one
process. Part 2: one BPR-max step loss (64 lanes, 2,048 samples) by autograd and in closed
form, microseconds per call.

    python benchmarks/bptt_speed.py --out reports/speed/bptt.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from prnn.config import read_preset
from prnn.data import read_events, split_sessions_randomly
from prnn.models import GRU4Rec
from prnn.training.step_loss import AutogradStepLoss, BprMaxStepLoss
from report import emit_table

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon_toys_mm"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    events = read_events(DATA / "sequences.csv.gz", session_col="seq_id", time_col="none")
    train, _, _ = split_sessions_randomly(events, 0.1, seed=1)
    lines = [
        f"# `python benchmarks/bptt_speed.py {' '.join(sys.argv[1:])}`",
        "",
        "| GRU4Rec, long_history preset | training events/s (median over epochs) |",
        "|---|---|",
    ]
    for bptt in (1, 5, 10):
        settings = {**read_preset("long_history"), "n_epochs": args.epochs, "bptt": bptt}
        model = GRU4Rec(**settings).fit(train, compile=False)
        rates = sorted(report.events_per_second for report in model.history_)
        lines.append(f"| bptt={bptt} | {rates[len(rates) // 2]:,.0f} |")
    config = SimpleNamespace(loss="bpr-max", bpreg=1.0, elu_param=0.5)
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(64, 2000, generator=generator)
    columns = torch.cat([torch.arange(64), torch.randint(0, 2000, (2048,), generator=generator)])
    lines += ["", "| BPR-max step loss (64 lanes, 2,048 samples) | µs per call |", "|---|---|"]
    for label, loss in (
        ("autograd", AutogradStepLoss(config, 1 / 64)),
        ("closed form", BprMaxStepLoss(config, 1 / 64)),
    ):
        for _ in range(20):
            loss.value_and_gradient(scores, columns)
        started = time.perf_counter()
        for _ in range(300):
            loss.value_and_gradient(scores, columns)
        lines.append(f"| {label} | {(time.perf_counter() - started) / 300 * 1e6:,.0f} |")
    emit_table("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
