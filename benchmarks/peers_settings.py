"""One prnn model on one amazon_toys_mm split of benchmarks/peers.py, with given settings.

The exploratory runs behind docs/peers.md's seed-1 tables: the shared settings of
benchmarks/peers.py with the JSON overrides, one thread, eager; prints one JSON line.

    python benchmarks/peers_settings.py SEED '{"bptt": 5}' [gru4rec|prnn]
"""
import sys, time, json
import torch
from peers import PRNN_SHARED, DATA
from prnn.data import read_events, split_sessions_randomly
from prnn.evaluation import evaluate
from prnn.models import GRU4Rec, PRNN
from prnn.features import read_features

torch.set_num_threads(1)
seed = int(sys.argv[1])
extra = json.loads(sys.argv[2])
model_name = sys.argv[3] if len(sys.argv) > 3 else "gru4rec"
events = read_events(DATA / "amazon_toys_mm" / "sequences.csv.gz", session_col="seq_id", time_col="none")
train, test, _ = split_sessions_randomly(events, 0.1, seed=seed)
settings = {**PRNN_SHARED, **extra}
options = {}
if model_name == "prnn":
    model = PRNN(**settings)
    options = {"features": {"image": read_features(DATA / "amazon_toys_mm" / "clip_vitb32_image.npz")}}
else:
    model = GRU4Rec(**settings)
started = time.perf_counter()
model.fit(train, compile=False, **options)
seconds = time.perf_counter() - started
m = evaluate(model, test, cutoffs=(20,)).metrics
n = sum(r.n_events for r in model.history_)
print(json.dumps({"seed": seed, "model": model_name, "extra": extra, "recall@20": round(m["recall@20"], 4), "mrr@20": round(m["mrr@20"], 4), "s": round(seconds), "ev/s": round(n / seconds), "losses": [round(r.loss, 3) for r in model.history_]}), flush=True)
