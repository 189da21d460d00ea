"""How many distinct item rows a GRU4Rec training step touches, per event log.

A step scores its lanes' targets and ``n_sample`` shared negatives drawn with probability
proportional to popularity ** ``sample_alpha``; its output layer, loss and row updates cost in
proportion to the distinct items among them. Draws ``--steps`` steps from each log's own
popularity (targets by popularity, samples by popularity ** alpha) and prints the mean.

    python benchmarks/distinct_rows.py ../shared/data/rsc15_100k/events.csv.gz \\
        /tmp/synth_1m_10m/events.parquet
"""

from __future__ import annotations

import argparse

import numpy as np

from prnn.data import read_events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", help="event files")
    parser.add_argument("--alphas", default="0.5,0.75", help="sample_alpha values")
    parser.add_argument("--n-sample", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print("| log | items | sample_alpha | distinct rows per step |")
    print("|---|---|---|---|")
    for path in args.logs:
        _, counts = np.unique(read_events(path).item_ids, return_counts=True)
        popularity = counts / counts.sum()
        for alpha in (float(a) for a in args.alphas.split(",")):
            weights = counts.astype(np.float64) ** alpha
            rng = np.random.default_rng(0)
            distinct = [
                len(
                    np.unique(
                        np.concatenate(
                            [
                                rng.choice(len(counts), args.n_sample, p=weights / weights.sum()),
                                rng.choice(len(counts), args.batch_size, p=popularity),
                            ]
                        )
                    )
                )
                for _ in range(args.steps)
            ]
            print(f"| {path} | {len(counts):,} | {alpha:g} | {np.mean(distinct):,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
