"""The cold-start experiment: items never clicked in training, scored from their features.

A share of the items is held out of training entirely (their events are removed from the
training sequences). ID-only GRU4Rec cannot score them; p-RNNs whose output vectors come from
the items' features (``output=features``, or ``hybrid``: added to the ID rows) can, once the
held-out items are added to the trained model from their feature vectors
(``FeatureModel.add_items``, no retraining). Recall@20 and MRR@20 are reported separately on
the test events whose next item is held out ("cold") and on the others ("warm").
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from prnn.atomic import atomic_write_bytes
from prnn.config import build_config
from prnn.data import EventLog
from prnn.evaluation import evaluate
from prnn.features import FeatureMatrix
from prnn.models import PRNN, GRU4Rec

log = logging.getLogger(__name__)


@dataclass
class ColdStartRow:
    model: str
    output: str
    warm_recall: float
    warm_mrr: float
    cold_recall: float | None
    """None: the model cannot score items it was not trained on."""
    cold_mrr: float | None
    n_items: int
    train_seconds: float


def hold_out_items(train: EventLog, fraction: float, seed: int) -> tuple[EventLog, np.ndarray]:
    """(``train`` without the events of a random ``fraction`` of its items, those items' ids)."""
    items = np.unique(train.item_ids)
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(items, size=max(1, round(fraction * len(items))), replace=False))
    return train.select_events(~np.isin(train.item_ids, held)), held


def cold_start_models(base: dict) -> list[tuple[str, str, object]]:
    """(label, output, model) for ID only, p-RNN output=features and p-RNN output=hybrid."""
    width = base.get("layers", (100,))[-1]
    features_only = {"constrained_embedding": False, "embedding": width}
    id_fields = GRU4Rec.config_class.__dataclass_fields__
    id_base = {k: v for k, v in base.items() if k in id_fields}  # e.g. without output_id_dropout
    return [
        ("ID only (GRU4Rec)", "id", GRU4Rec(build_config(GRU4Rec.config_class, id_base, "base"))),
        (
            "p-RNN, output=features",
            "features",
            PRNN(
                build_config(
                    PRNN.config_class, {**base, "output": "features", **features_only}, "base"
                )
            ),
        ),
        (
            "p-RNN, output=hybrid",
            "hybrid",
            PRNN(build_config(PRNN.config_class, {**base, "output": "hybrid"}, "base")),
        ),
    ]


def run_cold_start_experiment(
    train: EventLog,
    test: EventLog,
    features: dict[str, FeatureMatrix],
    *,
    base_settings: dict,
    item_fraction: float = 0.1,
    seed: int = 0,
    progress: bool = False,
) -> tuple[list[ColdStartRow], np.ndarray]:
    """Train each model without the held-out items and evaluate it on warm and cold targets;
    returns (rows, the held-out item ids)."""
    warm_train, held = hold_out_items(train, item_fraction, seed)
    log.info(
        "held out %d of %d training items (%d of %d training events removed)",
        len(held),
        len(np.unique(train.item_ids)),
        train.n_events - warm_train.n_events,
        train.n_events,
    )
    # warm: items seen in training, the same set for every model (the feature models could
    # also rank test items that were never in the training log, which ID only skips)
    warm = np.unique(warm_train.item_ids)
    rows = []
    for label, output, model in cold_start_models(base_settings):
        started = time.perf_counter()
        options = {"features": features} if model.uses_features else {}
        model.fit(warm_train, progress=progress, **options)
        seconds = time.perf_counter() - started
        if output != "id":
            added = model.add_items(features)
            log.info("%s: added %d items from their features", label, len(added))
        warm_metrics = evaluate(model, test, cutoffs=(20,), targets=warm).metrics
        if output == "id":  # none of the held-out items is known to it
            cold_metrics = None
        else:
            cold_metrics = evaluate(model, test, cutoffs=(20,), targets=held).metrics
        row = ColdStartRow(
            label,
            output,
            warm_metrics["recall@20"],
            warm_metrics["mrr@20"],
            None if cold_metrics is None else cold_metrics["recall@20"],
            None if cold_metrics is None else cold_metrics["mrr@20"],
            model.n_items,
            seconds,
        )
        log.info("%s", row)
        rows.append(row)
    return rows, held


def cold_start_table(rows: list[ColdStartRow], n_catalogue: int) -> str:
    reference = rows[0]
    lines = [
        "| model | items it can rank | warm Recall@20 | warm MRR@20 | warm MRR vs ID only "
        "| cold Recall@20 | cold MRR@20 | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        relative = f"{100 * (r.warm_mrr / reference.warm_mrr - 1):+.1f}%"
        cold = (
            "cannot score | cannot score"
            if r.cold_recall is None
            else f"{r.cold_recall:.4f} | {r.cold_mrr:.4f}"
        )
        lines.append(
            f"| {r.model} | {r.n_items:,} | {r.warm_recall:.4f} | {r.warm_mrr:.4f} | {relative} "
            f"| {cold} | {r.train_seconds:.0f} |"
        )
    lines.append(
        f"| random | {n_catalogue:,} | {20 / n_catalogue:.4f} | | | {20 / n_catalogue:.4f} | | |"
    )
    return "\n".join(lines)


def write_cold_start_report(
    out_dir: str | Path,
    rows: list[ColdStartRow],
    *,
    n_catalogue: int,
    title: str,
    notes: list[str],
) -> str:
    """results.md and results.json in ``out_dir``; returns the markdown."""
    out_dir = Path(out_dir)
    markdown = "\n".join(
        [
            f"# {title}",
            "",
            cold_start_table(rows, n_catalogue),
            "",
            "## Protocol",
            *[f"- {note}" for note in notes],
            "",
        ]
    )
    atomic_write_bytes(out_dir / "results.md", markdown.encode())
    payload = [{"method": row.model, **asdict(row)} for row in rows]
    atomic_write_bytes(out_dir / "results.json", json.dumps(payload, indent=2).encode())
    return markdown
