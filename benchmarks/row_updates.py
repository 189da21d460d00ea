"""The row-wise Adagrad-with-momentum update alone, against catalogue size.

Per step: draws 2,080 items by popularity ** 0.75 (2,048 samples and 32 targets), keeps the
distinct ones, and runs the optimiser's row update (``AdagradMomentum.step_rows``) on a
(items x 100) table plus a read of the updated rows, as a training step does. Prints the
distinct rows per step and milliseconds per step, one thread, 300 steps after a warm-up.

    python benchmarks/row_updates.py
    THP_MEM_ALLOC_ENABLE=1 python benchmarks/row_updates.py   # PyTorch's huge pages

A large catalogue makes every touched row a cache miss in ~1 GB of table and state; this
isolates that cost from the rest of the step.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from prnn.optim import AdagradMomentum


def run(optimizer, table, draws, grads) -> None:
    for rows, grad in zip(draws, grads):
        optimizer.step_rows(table, rows, grad)
        table.index_select(0, rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="3000,785000")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}")
    print("| items | distinct rows per step | ms per step |")
    print("|---|---|---|")
    for n_items in (int(n) for n in args.items.split(",")):
        table = torch.randn(n_items, 100)
        optimizer = AdagradMomentum([], [table], learning_rate=0.1, momentum=0.2)
        generator = torch.Generator().manual_seed(0)
        weights = torch.arange(1, n_items + 1, dtype=torch.float64) ** -0.75
        cdf = torch.cumsum(weights, 0) / weights.sum()
        draws = [
            torch.unique(
                torch.searchsorted(cdf, torch.rand(2080, generator=generator, dtype=torch.float64))
            ).clamp_(max=n_items - 1)
            for _ in range(args.steps)
        ]
        grads = [torch.randn(len(rows), 100, generator=generator) for rows in draws]

        run(optimizer, table, draws, grads)  # warm-up: first touches of the pages
        started = time.perf_counter()
        run(optimizer, table, draws, grads)
        seconds = (time.perf_counter() - started) / args.steps
        rows = sum(len(r) for r in draws) / len(draws)
        print(f"| {n_items:,} | {rows:,.0f} | {seconds * 1e3:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
