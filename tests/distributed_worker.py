"""One process of the data-parallel tests, started by ``torchrun`` from tests/test_distributed.py.

``exchange OUT``: averages gradients made up from the rank's seed and writes what came back
(``OUT/exchange_<rank>.pt``) beside what went in, for the test to check by hand.
``models OUT``: trains every recurrent model and training method on a small log, data-parallel,
and writes each one's weights (``OUT/<model>_<rank>.pt``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist

from prnn.data import EventLog
from prnn.evaluation import validation
from prnn.features import FeatureMatrix
from prnn.models import PRNN, Concat, FeatureOnly, GRU4Rec
from prnn.training import DistributedTraining

N_ITEMS = 12
ITEMS = np.array([f"i{i}" for i in range(N_ITEMS)])


def made_up_gradients(rank: int):
    """A rank's gradients: two dense ones (the second frozen: None) and three row-indexed
    tables, the rows partly shared between the ranks; the last table untouched by rank 1."""
    generator = torch.Generator().manual_seed(100 + rank)
    # the first parameter frozen: the exchange must not take its device from it
    dense = [None, torch.randn(3, 4, generator=generator), torch.randn(5, generator=generator)]
    tables = [torch.zeros(N_ITEMS, 2), torch.zeros(N_ITEMS, 3), torch.zeros(N_ITEMS, 2)]
    updates = []
    for index, table in enumerate(tables):
        n_rows = 0 if (index == 2 and rank == 1) else 3 + rank + index
        rows = torch.randperm(N_ITEMS, generator=generator)[:n_rows]
        updates.append((table, rows, torch.randn(n_rows, table.shape[1], generator=generator)))
    return dense, updates


def exchange(out: Path) -> None:
    place, _ = DistributedTraining.from_environment()
    dense, updates = made_up_gradients(place.rank)
    averaged_dense, averaged_rows = place.average_gradients(dense, updates)
    torch.save(
        {
            "dense": averaged_dense,
            "rows": [(rows, grad) for _, rows, grad in averaged_rows],
            "same_tables": all(a[0] is b[0] for a, b in zip(updates, averaged_rows)),
        },
        out / f"exchange_{place.rank}.pt",
    )


def small_log() -> EventLog:
    """Sessions that walk a cycle of the items (several lengths), one second between clicks."""
    rng = np.random.default_rng(0)
    sessions, items, times = [], [], []
    for session in range(90):
        start = rng.integers(N_ITEMS)
        for step in range(2 + session % 5):
            sessions.append(session)
            items.append(ITEMS[(start + step) % N_ITEMS])
            times.append(1000.0 * session + step)
    return EventLog.from_arrays(np.array(sessions), np.array(items), np.array(times))


def small_features() -> dict[str, FeatureMatrix]:
    rng = np.random.default_rng(1)
    text = sp.random(N_ITEMS, 40, density=0.1, random_state=rng, format="csr", dtype=np.float32)
    text = (text + sp.eye(N_ITEMS, 40, dtype=np.float32)).tocsr()
    return {
        "image": FeatureMatrix(ITEMS, rng.normal(size=(N_ITEMS, 6)).astype(np.float32)),
        "text": FeatureMatrix(ITEMS, text),
    }


SMALL = dict(layers=(8,), batch_size=6, n_sample=5, learning_rate=0.1, n_epochs=2)
FEATURE_SMALL = dict(SMALL, feature_layers=(6,), n_epochs=3)  # residual: an epoch per subnet

#: (name, model) of every recurrent architecture and every p-RNN training method
MODELS = [
    ("gru4rec", lambda: GRU4Rec(**SMALL)),
    (
        "gru4rec_bpr_max",
        lambda: GRU4Rec(**SMALL, loss="bpr-max", constrained_embedding=False, embedding=4),
    ),
    # back-propagation through several steps: each process keeps its own lanes' window
    ("gru4rec_bptt", lambda: GRU4Rec(**SMALL, loss="bpr-max", bptt=3)),
    # early stopping: process 0 validates, every process stops with it
    ("gru4rec_patience", lambda: GRU4Rec(**dict(SMALL, n_epochs=8))),
    ("feature_only", lambda: FeatureOnly(**FEATURE_SMALL)),
    ("concat", lambda: Concat(**FEATURE_SMALL)),
    *[
        (f"prnn_{method}", lambda method=method: PRNN(**FEATURE_SMALL, training=method))
        for method in ("simultaneous", "alternating", "residual", "interleaving")
    ],
    ("prnn_bptt", lambda: PRNN(**FEATURE_SMALL, training="alternating", bptt=4)),
]


def models(out: Path) -> None:
    place, _ = DistributedTraining.from_environment()
    events, features = small_log(), small_features()
    for name, make in MODELS:
        model = make()
        options = {"features": features} if model.uses_features else {}
        if name == "gru4rec_patience":
            options = {"valid": validation(events), "patience": 1, "valid_metric": "mrr@20"}
        model.fit(events, distributed=place, **options)
        torch.save(
            {
                "tensors": model._tensors(),
                "n_events": [report.n_events for report in model.history_],
            },
            out / f"{name}_{place.rank}.pt",
        )


if __name__ == "__main__":
    try:
        {"exchange": exchange, "models": models}[sys.argv[1]](Path(sys.argv[2]))
    finally:
        # a process that exits with its gloo group alive aborts now and then at shutdown
        # ("terminate called without an active exception": about 1 run in 6 of `exchange`)
        if dist.is_initialized():
            dist.destroy_process_group()
