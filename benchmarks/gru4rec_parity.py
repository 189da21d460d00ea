"""GRU4Rec accuracy parity with the reference implementation on rsc15_100k.

Trains each parity configuration (the shipped presets ``rsc15`` and ``rsc15_100k_bprmax``) for
10 epochs with several seeds on ``split==train``, evaluates on ``split==test`` (all items,
conservative ties) and prints a table against the reference's figures measured on the same
machine (issue 3). Takes about 1-2 minutes per run on 2 CPU cores:

    python benchmarks/gru4rec_parity.py ../shared/data/rsc15_100k/events.csv.gz --seeds 1,2,3

``--compile`` trains with ``compile=True``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from prnn.config import build_config, read_preset
from prnn.data import read_events
from prnn.evaluation import evaluate
from prnn.models import GRU4Rec, GRU4RecConfig

#: (preset, reference Recall@20, reference MRR@20), reference = hidasib/GRU4Rec_PyTorch_Official
REFERENCE = [("rsc15", 0.681, 0.358), ("rsc15_100k_bprmax", 0.706, 0.379)]
TOLERANCE = 0.015  # relative


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", help="rsc15_100k events.csv.gz (with its split column)")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    parser.add_argument("--presets", default=",".join(name for name, _, _ in REFERENCE))
    parser.add_argument(
        "--compile", action="store_true", help="train with compile=True (torch.compile)"
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    wanted = set(args.presets.split(","))
    train = read_events(args.events, where={"split": "train"})
    test = read_events(args.events, where={"split": "test"})
    rows = []
    for preset, ref_recall, ref_mrr in REFERENCE:
        if preset not in wanted:
            continue
        recalls, mrrs = [], []
        for seed in seeds:
            config = build_config(GRU4RecConfig, {**read_preset(preset), "seed": seed}, preset)
            started = time.perf_counter()
            model = GRU4Rec(config).fit(train, compile=args.compile)
            result = evaluate(model, test)
            recalls.append(result.metrics["recall@20"])
            mrrs.append(result.metrics["mrr@20"])
            print(
                f"{preset} seed {seed}: Recall@20 {recalls[-1]:.4f}, MRR@20 {mrrs[-1]:.4f} "
                f"({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        recall, mrr = statistics.mean(recalls), statistics.mean(mrrs)
        rows.append((preset, recall, mrr, ref_recall, ref_mrr))
    print(
        f"| preset | seeds | Recall@20 | reference | rel. diff | MRR@20 | reference | rel. diff |"
        f" within {TOLERANCE:.1%} |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for preset, recall, mrr, ref_recall, ref_mrr in rows:
        d_recall, d_mrr = recall / ref_recall - 1, mrr / ref_mrr - 1
        ok = abs(d_recall) <= TOLERANCE and abs(d_mrr) <= TOLERANCE
        print(
            f"| {preset} | {args.seeds} | {recall:.4f} | {ref_recall:.3f} | {d_recall:+.2%} | "
            f"{mrr:.4f} | {ref_mrr:.3f} | {d_mrr:+.2%} | {'yes' if ok else 'NO'} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
