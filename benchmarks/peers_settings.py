"""One prnn model on one amazon_toys_mm split of benchmarks/peers.py, with given settings.

The exploratory runs behind docs/peers.md's seed-1 tables: the shared settings of
benchmarks/peers.py with the JSON overrides, one thread, eager; prints one JSON line.

    python benchmarks/peers_settings.py SEED '{"bptt": 5}' [gru4rec|prnn]
"""

from __future__ import annotations

import json
import sys

from peers import DATA, PRNN_SHARED, fit_and_score
from prnn.data import read_events, split_sessions_randomly
from prnn.features import read_features
from prnn.models import PRNN, GRU4Rec


def main() -> int:
    seed, extra = int(sys.argv[1]), json.loads(sys.argv[2])
    model_name = sys.argv[3] if len(sys.argv) > 3 else "gru4rec"
    toys = DATA / "amazon_toys_mm"
    events = read_events(toys / "sequences.csv.gz", session_col="seq_id", time_col="none")
    train, test, _ = split_sessions_randomly(events, 0.1, seed=seed)
    settings = {**PRNN_SHARED, **extra}
    options = {}
    if model_name == "prnn":
        model = PRNN(**settings)
        options = {"features": {"image": read_features(toys / "clip_vitb32_image.npz")}}
    else:
        model = GRU4Rec(**settings)
    metrics, seconds, rate = fit_and_score(model, train, test, options)
    result = {
        "seed": seed,
        "model": model_name,
        "extra": extra,
        "recall@20": round(metrics["recall@20"], 4),
        "mrr@20": round(metrics["mrr@20"], 4),
        "s": round(seconds),
        "ev/s": round(rate),
        "losses": [round(report.loss, 3) for report in model.history_],
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
