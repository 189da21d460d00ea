"""How each p-RNN training method learns: per-epoch loss and validation accuracy, per subnet.

Splits the click log's sessions 90/10 at random (as ``prnn experiment paper``), carves a
validation part (10%) from the training sessions, trains a p-RNN (ID subnet + one feature
subnet) with each training method for ``--epochs`` epochs and prints, per method and epoch, the
mean training loss and the validation Recall@20 / MRR@20; then, for the trained models, the
validation MRR@20 with every subnet and with each subnet alone in the output (the others
removed), which shows how much each subnet learned on its own.

    python benchmarks/prnn_training_methods.py ../shared/data/amazon_toys_mm/sequences.csv.gz \\
        --session-col seq_id --time-col none \\
        --features image=../shared/data/amazon_toys_mm/clip_vitb32_image.npz --epochs 4

Settings are the model defaults plus ``--set`` overrides. Trains one model after the other
(one process): run nothing else heavy at the same time.
"""

from __future__ import annotations

import argparse
import sys
import time

from prnn.config import build_config, parse_overrides
from prnn.data import read_events, split_sessions_randomly
from prnn.evaluation import evaluate, validation
from prnn.features import read_features
from prnn.models import PRNN
from prnn.network import Phase
from prnn.training import TRAINING_METHODS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", help="click log")
    parser.add_argument("--session-col")
    parser.add_argument("--item-col")
    parser.add_argument("--time-col")
    parser.add_argument("--features", required=True, metavar="NAME=PATH", help="one feature set")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per subnet (default: 4)")
    parser.add_argument(
        "--methods",
        default=",".join(TRAINING_METHODS),
        help=f"comma-separated (default: {','.join(TRAINING_METHODS)})",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    args = parser.parse_args()

    name, _, path = args.features.partition("=")
    features = {name: read_features(path)}
    events = read_events(
        args.events, session_col=args.session_col, item_col=args.item_col, time_col=args.time_col
    )
    train, _, _ = split_sessions_randomly(events, 0.1, seed=args.seed)
    fit_part, valid, _ = split_sessions_randomly(train, 0.1, seed=args.seed + 1)
    overrides = parse_overrides(args.set)

    curves, ablations = [], []
    for method in args.methods.split(","):
        settings = {**overrides, "n_epochs": args.epochs, "training": method}
        model = PRNN(build_config(PRNN.config_class, settings, "prnn"))
        started = time.perf_counter()
        model.fit(fit_part, features=features, valid=validation(valid), valid_metric="mrr@20")
        seconds = time.perf_counter() - started
        for report in model.history_:
            curves.append(
                (
                    method,
                    report.epoch,
                    report.loss,
                    report.valid["recall@20"],
                    report.valid["mrr@20"],
                )
            )
        network = model.network
        row = [method, f"{seconds:.0f}"]
        for active in (tuple(network.names), *((n,) for n in network.names)):
            network.set_phase(Phase(frozenset(active), frozenset()))
            row.append(f"{evaluate(model, valid, cutoffs=(20,)).metrics['mrr@20']:.4f}")
        network.set_phase(None)
        ablations.append(row)
        print(f"# {method} done in {seconds:.0f} s", file=sys.stderr, flush=True)

    print(f"# {args.events}: {fit_part.n_events} training events, {valid.n_events} validation")
    print(f"# settings: {overrides or 'defaults'}, {args.epochs} epochs per subnet")
    print("| method | epoch | train loss | valid Recall@20 | valid MRR@20 |")
    print("|---|---|---|---|---|")
    for method, epoch, loss, recall, mrr in curves:
        print(f"| {method} | {epoch} | {loss:.4f} | {recall:.4f} | {mrr:.4f} |")
    names = model.network.names
    print()
    print(
        "| method | train s | valid MRR@20, all subnets | "
        + " | ".join(f"{n} subnet alone" for n in names)
        + " |"
    )
    print("|---" * (3 + len(names)) + "|")
    for row in ablations:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
