"""The p-RNN paper's comparison on one dataset and one feature set, written as a report folder.

Rows (as in Hidasi et al., RecSys 2016, plus a content baseline): item-kNN, content-kNN, ID only
(h), ID only (2h), feature only (h), concat (h), p-RNN simultaneous / residual / alternating /
interleaving (h+h). Every method is trained on the same training part and evaluated with the
shared protocol on the same test part. With ``trials > 0`` each neural method gets the same
tuning budget: the same ``trials`` settings drawn from one search space, each trained on a
training subset and scored (MRR@20) on a validation part carved from the training sessions; the
best is retrained on the full training part.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prnn.atomic import atomic_write_bytes
from prnn.config import build_config
from prnn.data import EventLog, split_sessions_randomly
from prnn.errors import ConfigError
from prnn.evaluation import evaluate
from prnn.features import FeatureMatrix
from prnn.models import MODELS

log = logging.getLogger(__name__)

#: Search space of the tuning: drawn jointly, the same draws for every neural method.
SEARCH_SPACE = {
    "learning_rate": (0.02, 0.05, 0.1, 0.2),
    "dropout_p_hidden": (0.0, 0.1, 0.3, 0.5),
    "dropout_p_embed": (0.0, 0.25, 0.5),
    "sample_alpha": (0.0, 0.25, 0.5, 0.75),
    "loss": ("cross-entropy", "bpr-max"),
}


#: The base settings of every neural method of ``prnn experiment paper`` (``--set`` overrides
#: them): those at which the p-RNN defaults were chosen on the whole amazon_toys_mm dataset
#: (``benchmarks/prnn_defaults.py``, docs/prnn.md), not tuned on the bundled sample.
PAPER_BASE_SETTINGS = {
    "loss": "cross-entropy",
    "batch_size": 32,
    "learning_rate": 0.1,
    "momentum": 0.2,
    "dropout_p_hidden": 0.3,
    "logq": 1.0,
}


@dataclass(frozen=True)
class Method:
    label: str
    model: str
    hidden: str
    settings: dict = field(default_factory=dict)

    @property
    def neural(self) -> bool:
        return MODELS[self.model].trains_by_epochs


def paper_methods(
    hidden: int, main_feature: str | None = None, extra_features: tuple[str, ...] = ()
) -> list[Method]:
    """The paper's methods at ``hidden`` units, reading the ``main_feature`` set; with
    ``extra_features``, one more row: a residual p-RNN with an ID subnet and a subnet per
    feature set (several aspects of the items at once, the paper's future work)."""
    h = hidden
    only_main = {"features": (main_feature,)} if extra_features and main_feature else {}
    methods = [
        Method("item-kNN", "item-knn", "–"),
        Method("content-kNN", "content-knn", "–", dict(only_main)),
        Method("ID only", "gru4rec", str(h), {"layers": (h,)}),
        Method("ID only", "gru4rec", str(2 * h), {"layers": (2 * h,)}),
        Method("feature only", "feature-only", str(h), {"layers": (h,), **only_main}),
        Method("concat", "concat", str(h), {"layers": (h,), **only_main}),
    ]
    for training in ("simultaneous", "residual", "alternating", "interleaving"):
        methods.append(
            Method(
                f"p-RNN ({training})",
                "prnn",
                f"{h}+{h}",
                {"layers": (h,), "feature_layers": (h,), "training": training, **only_main},
            )
        )
    if extra_features:
        every = (main_feature, *extra_features)
        methods.append(
            Method(
                f"p-RNN (residual), ID + {' + '.join(every)}",
                "prnn",
                "+".join([str(h)] * (1 + len(every))),
                {"layers": (h,), "feature_layers": (h,), "training": "residual", "features": every},
            )
        )
    return methods


def select_methods(methods: list[Method], only: str | None) -> list[Method]:
    """The methods whose label (with its hidden units, e.g. "ID only 100") starts with one of
    the comma-separated names in ``only``; all with None."""
    if not only:
        return methods
    wanted = [name.strip().lower() for name in only.split(",") if name.strip()]
    chosen = [
        m
        for m in methods
        if any(f"{m.label} {m.hidden}".lower().startswith(name) for name in wanted)
    ]
    if not chosen:
        labels = "; ".join(f"{m.label} {m.hidden}" for m in methods)
        raise ConfigError(f"--only {only!r} names none of the methods: {labels}")
    return chosen


def draw_trials(trials: int, seed: int) -> list[dict]:
    """``trials`` settings drawn from SEARCH_SPACE (the first is the base settings: {})."""
    rng = np.random.default_rng(seed)
    draws: list[dict] = [{}]
    while len(draws) < trials:
        draws.append({k: v[rng.integers(len(v))] for k, v in SEARCH_SPACE.items()})
    return draws[:trials] if trials else [{}]


@dataclass
class Row:
    method: str
    hidden: str
    recall: float
    mrr: float
    train_seconds: float
    settings: dict
    tuning: list = field(default_factory=list)


def _build(method: Method, base: dict, trial: dict):
    model_class = MODELS[method.model]
    settings = {**base, **method.settings, **trial} if method.neural else dict(method.settings)
    fields = getattr(model_class.config_class, "__dataclass_fields__", {})
    settings = {k: v for k, v in settings.items() if k in fields}
    config = build_config(model_class.config_class, settings, method.label)
    defaults = model_class.config_class()
    changed = {k: getattr(config, k) for k in fields if getattr(config, k) != getattr(defaults, k)}
    return model_class(config), changed


def _fit(model, events: EventLog, features: dict[str, FeatureMatrix], progress: bool):
    options = {"features": features} if model.uses_features else {}
    return model.fit(events, progress=progress, **options)


def run_paper_experiment(
    train: EventLog,
    test: EventLog,
    features: dict[str, FeatureMatrix],
    *,
    hidden: int = 100,
    base_settings: dict | None = None,
    trials: int = 0,
    tune_epochs: int = 3,
    seed: int = 0,
    methods: list[Method] | None = None,
    progress: bool = False,
) -> list[Row]:
    """Train and evaluate every method; returns one row per method."""
    base = dict(base_settings or {})
    methods = methods or paper_methods(hidden)
    draws = draw_trials(trials, seed)
    if trials:
        tune_train, tune_valid, _ = split_sessions_randomly(train, 0.1, seed=seed + 1)
    rows = []
    for method in methods:
        tuning = []
        chosen: dict = {}
        if trials and method.neural:
            best = -1.0
            for trial in draws:
                model, _ = _build(method, {**base, "n_epochs": tune_epochs}, trial)
                _fit(model, tune_train, features, progress)
                mrr = evaluate(model, tune_valid, cutoffs=(20,)).metrics["mrr@20"]
                tuning.append({**trial, "valid_mrr@20": round(mrr, 5)})
                log.info(
                    "%s %s: trial %s -> valid MRR@20 %.4f", method.label, method.hidden, trial, mrr
                )
                if mrr > best:
                    best, chosen = mrr, trial
        model, settings = _build(method, base, chosen)
        started = time.perf_counter()
        _fit(model, train, features, progress)
        seconds = time.perf_counter() - started
        result = evaluate(model, test, cutoffs=(5, 10, 20))
        row = Row(
            method.label,
            method.hidden,
            result.metrics["recall@20"],
            result.metrics["mrr@20"],
            seconds,
            settings,
            tuning,
        )
        log.info(
            "%s (%s): Recall@20 %.4f, MRR@20 %.4f, %.0f s",
            row.method,
            row.hidden,
            row.recall,
            row.mrr,
            seconds,
        )
        rows.append(row)
    return rows


def _relative(value: float, reference: float | None) -> str:
    if reference is None or reference == 0:
        return "–"
    return f"{100 * (value / reference - 1):+.1f}%"


def report_table(rows: list[Row], hidden: int) -> str:
    id_only = next((r for r in rows if r.method == "ID only" and r.hidden == str(hidden)), None)
    item_knn = next((r for r in rows if r.method == "item-kNN"), None)
    lines = [
        "| method | hidden units | Recall@20 | MRR@20 | MRR vs ID only | MRR vs item-kNN "
        "| train seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.method} | {r.hidden} | {r.recall:.4f} | {r.mrr:.4f} | "
            f"{_relative(r.mrr, id_only.mrr if id_only else None)} | "
            f"{_relative(r.mrr, item_knn.mrr if item_knn else None)} | {r.train_seconds:.0f} |"
        )
    return "\n".join(lines)


def write_report(
    out_dir: str | Path, rows: list[Row], *, hidden: int, title: str, notes: list[str]
) -> None:
    """results.md (table + notes + chosen settings), results.csv, results.json, results.png."""
    out_dir = Path(out_dir)
    table = report_table(rows, hidden)
    settings_lines = [
        f"- {r.method} ({r.hidden}): "
        + (", ".join(f"{k}={_plain(v)}" for k, v in sorted(r.settings.items())) or "defaults")
        for r in rows
    ]
    markdown = "\n".join(
        [
            f"# {title}",
            "",
            table,
            "",
            "## Protocol",
            *[f"- {n}" for n in notes],
            "",
            "## Settings used",
            *settings_lines,
            "",
        ]
    )
    atomic_write_bytes(out_dir / "results.md", markdown.encode())
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", "hidden", "recall@20", "mrr@20", "train_seconds"])
    for r in rows:
        writer.writerow(
            [r.method, r.hidden, f"{r.recall:.6f}", f"{r.mrr:.6f}", f"{r.train_seconds:.1f}"]
        )
    atomic_write_bytes(out_dir / "results.csv", buffer.getvalue().encode())
    payload = [
        {
            "method": r.method,
            "hidden": r.hidden,
            "recall@20": r.recall,
            "mrr@20": r.mrr,
            "train_seconds": r.train_seconds,
            "settings": _jsonable(r.settings),
            "tuning": r.tuning,
        }
        for r in rows
    ]
    atomic_write_bytes(out_dir / "results.json", json.dumps(payload, indent=2).encode())
    atomic_write_bytes(out_dir / "results.png", _bar_chart(rows, title))


def _plain(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _jsonable(settings: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}


def _bar_chart(rows: list[Row], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.method}\n({r.hidden})" for r in rows]
    positions = np.arange(len(rows))
    figure, axis = plt.subplots(figsize=(max(8, 1.1 * len(rows)), 4.5))
    axis.bar(positions - 0.2, [r.recall for r in rows], width=0.4, label="Recall@20")
    axis.bar(positions + 0.2, [r.mrr for r in rows], width=0.4, label="MRR@20")
    axis.set_xticks(positions, labels, rotation=45, ha="right", fontsize=8)
    axis.set_title(title, fontsize=10)
    axis.legend()
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()
