"""Which p-RNN defaults beat ID-only GRU4Rec: several split seeds, image and text features.

For each split seed, 10% of the sequences are drawn as test (``split_sessions_randomly``, as
``prnn experiment paper``); ID-only GRU4Rec and p-RNN variants (ID subnet + one feature subnet)
train at the same shared settings, and every next event of the test sequences is ranked against
all items. Prints one table per feature set: Recall@20 / MRR@20 per seed, the mean, and the
MRR@20 change against ID only in the same seed.

    python benchmarks/prnn_defaults.py \
        --features image=../shared/data/amazon_toys_mm/clip_vitb32_image.npz
    python benchmarks/prnn_defaults.py --features text=runs/toys_text_bigrams.npz

(the text file: ``prnn features text ../shared/data/amazon_toys_mm/items.csv.gz --out
runs/toys_text_bigrams.npz``, TF-IDF word bi-grams of title + description). The variants are
p-RNN settings on top of the shared ones (``--variants``, ``;``-separated ``key=value,...``
lists; ``defaults`` = the p-RNN's own defaults). One model after the other, one thread by
default: two runs side by side fit the 2-core machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from prnn.config import build_config, parse_overrides
from prnn.data import read_events, split_sessions_randomly
from prnn.evaluation import evaluate
from prnn.features import read_features
from prnn.models import PRNN, GRU4Rec
from report import emit_table

EVENTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon_toys_mm"
#: the issue's shared settings: what ID only and every p-RNN variant get alike
SHARED = (
    "loss=cross-entropy,layers=100,batch_size=32,learning_rate=0.1,momentum=0.2,"
    "dropout_p_hidden=0.3,logq=1.0,n_epochs=10"
)
VARIANTS = (
    "defaults;training=simultaneous;training=alternating;"
    "training=alternating,output_blocks=always;training=residual,residual_epochs=5/5"
)


def _settings(text: str) -> dict:
    pairs = [p for p in text.split(",") if p and p != "defaults"]
    # "5/5" stands for a tuple inside a comma-separated list
    return parse_overrides([p.replace("/", ",") for p in pairs])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default=str(EVENTS / "sequences.csv.gz"))
    parser.add_argument("--session-col", default="seq_id")
    parser.add_argument("--time-col", default="none")
    parser.add_argument("--features", required=True, metavar="NAME=PATH")
    parser.add_argument("--seeds", default="1,2,3", help="split seeds (default: 1,2,3)")
    parser.add_argument("--shared", default=SHARED, help=f"shared settings (default: {SHARED})")
    parser.add_argument("--variants", default=VARIANTS, help="';'-separated p-RNN settings")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    name, _, path = args.features.partition("=")
    features = {name: read_features(path)}
    events = read_events(args.events, session_col=args.session_col, time_col=args.time_col)
    shared = _settings(args.shared)
    variants = [v.strip() for v in args.variants.split(";") if v.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]

    results: dict[str, dict[int, tuple[float, float, float]]] = {}
    for seed in seeds:
        train, test, _ = split_sessions_randomly(events, 0.1, seed=seed)
        runs = [("ID only", GRU4Rec, {}, None)] + [
            (f"p-RNN {v}", PRNN, _settings(v), features) for v in variants
        ]
        for label, model_class, extra, model_features in runs:
            config = build_config(model_class.config_class, {**shared, **extra}, label)
            model = model_class(config)
            started = time.perf_counter()
            options = {"features": model_features} if model_features else {}
            model.fit(train, compile=False, **options)
            seconds = time.perf_counter() - started
            metrics = evaluate(model, test, cutoffs=(20,)).metrics
            results.setdefault(label, {})[seed] = (
                metrics["recall@20"],
                metrics["mrr@20"],
                seconds,
            )
            print(
                f"# seed {seed} {label}: R@20 {metrics['recall@20']:.4f} "
                f"MRR@20 {metrics['mrr@20']:.4f} ({seconds:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

    lines = [
        f"# {name} features ({path}); shared settings: {args.shared}; split seeds {args.seeds}",
        "",
        "| model | "
        + " | ".join(f"seed {s}: R@20 / MRR@20 (vs ID)" for s in seeds)
        + " | mean R@20 / MRR@20 (vs ID) | train s |",
        "|---" * (len(seeds) + 3) + "|",
    ]
    baseline = results["ID only"]
    for label, by_seed in results.items():
        cells = []
        for seed in seeds:
            recall, mrr, _ = by_seed[seed]
            change = (mrr / baseline[seed][1] - 1) * 100
            cells.append(f"{recall:.4f} / {mrr:.4f} ({change:+.1f}%)")
        mean_recall = np.mean([by_seed[s][0] for s in seeds])
        mean_mrr = np.mean([by_seed[s][1] for s in seeds])
        base_mrr = np.mean([baseline[s][1] for s in seeds])
        seconds = np.mean([by_seed[s][2] for s in seeds])
        cells.append(
            f"{mean_recall:.4f} / {mean_mrr:.4f} ({(mean_mrr / base_mrr - 1) * 100:+.1f}%)"
        )
        cells.append(f"{seconds:.0f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    emit_table("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
