"""Training with a 1,000,000-dimensional sparse text-like feature set stays sparse.

Builds synthetic sessions over ``--items`` items whose features are TF-IDF-like CSR rows of
``--dim`` columns with about ``--nnz`` non-zeros each, trains a feature-only model (the sparse
input is the only input) and a p-RNN (ID + sparse subnet) for one epoch each, and prints
training events/s and the process's peak memory next to the size a dense (items x dim) float32
feature matrix would need:

    python benchmarks/sparse_features.py --items 20000 --dim 1000000 --nnz 5

The sparse input is an embedding bag over the projection rows of the batch's non-zero columns,
so per step only (non-zeros x 3H) weights are touched; no dense row of ``dim`` values is built.
The projection table itself is (dim x 3H) weights plus optimiser state.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import scipy.sparse as sp
import torch

from prnn.data import EventLog
from prnn.features import FeatureMatrix
from prnn.models import PRNN, FeatureOnly


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic(items: int, dim: int, nnz: int, sessions: int, seed: int):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 8, size=sessions)
    popularity = rng.zipf(1.3, size=items).astype(np.float64)
    popularity /= popularity.sum()
    clicks = rng.choice(items, size=int(lengths.sum()), p=popularity)
    session_ids = np.repeat(np.arange(sessions), lengths)
    events = EventLog.from_arrays(session_ids, clicks, np.arange(len(clicks), dtype=np.float64))
    counts = rng.poisson(nnz - 1, size=items) + 1
    indptr = np.r_[0, np.cumsum(counts)]
    indices = rng.integers(0, dim, size=indptr[-1])
    values = rng.random(indptr[-1]).astype(np.float32)
    matrix = sp.csr_matrix((values, indices, indptr), shape=(items, dim))
    matrix.sum_duplicates()
    return events, FeatureMatrix(np.arange(items), matrix, "synthetic")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1_000_000)
    parser.add_argument("--nnz", type=int, default=5, help="mean non-zeros per item")
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    events, features = synthetic(args.items, args.dim, args.nnz, args.sessions, args.seed)
    nnz_per_item = features.values.getnnz(axis=1).mean()
    dense_gb = args.items * args.dim * 4 / 2**30
    print(
        f"# {events.n_events} events in {events.n_sessions} sessions over {args.items} items; "
        f"features {args.dim:,} columns, {nnz_per_item:.2f} non-zeros per item"
    )
    print(
        f"# a dense float32 feature matrix would take {dense_gb:,.1f} GB; "
        f"{torch.get_num_threads()} threads"
    )
    print("| model | train events/s | epoch seconds | peak RSS MB after |")
    print("|---|---|---|---|")
    settings = dict(
        layers=(args.hidden,),
        feature_layers=(args.hidden,),
        n_epochs=1,
        batch_size=32,
        n_sample=2048,
        sample_alpha=0.5,
        learning_rate=0.1,
    )
    for model_class in (FeatureOnly, PRNN):
        started = time.perf_counter()
        model = model_class(**settings).fit(events, features={"text": features})
        seconds = time.perf_counter() - started
        report = model.history_[-1]
        print(
            f"| {model_class.name} | {report.events_per_second:,.0f} | {report.seconds:.1f} | "
            f"{peak_rss_mb():,.0f} |"
        )
        del model
    print(f"# total {seconds:.1f} s for the last fit (setup included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
