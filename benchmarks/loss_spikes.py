"""Per-step training losses of GRU4Rec's first epoch, prnn against the reference: spikes.

Trains one epoch of the ``rsc15`` preset on rsc15_100k's training split, per seed, with prnn
(eager) and, given ``--reference DIR``, with the reference GRU4Rec, recording every
mini-batch's loss (per event, as both report it). Prints per run the mean, the median, the
number of steps whose loss is above ``--spike``, the largest, and the largest magnitude a
carried hidden state reached.

    python benchmarks/loss_spikes.py --reference /tmp/gru4rec_ref --seeds 1,2,3 \\
        --out reports/speed/loss_spikes.md
    python benchmarks/loss_spikes.py --set dropout_p_hidden=0   # prnn only, another setting

What it shows (docs/gru4rec.md, "The cross-entropy's guard"): both implementations carry the
dropped-out output as the state, and a unit whose update gate stays near 0 while its dropout
mask keeps it grows by 1 / (1 - p) a step, so a few lanes' scores explode. The reference's
cross-entropy, -log(p + 1e-24), caps such a lane's loss and takes away its gradient; before
prnn had the same guard, its exact cross-entropy learned from those lanes, and 5-11 steps an
epoch had losses above 20 where the reference had none.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from prnn.config import build_config, parse_overrides, read_preset
from prnn.data import read_events
from prnn.models import GRU4Rec, GRU4RecConfig
from prnn.network import Network
from report import emit_table

RSC15 = Path(__file__).resolve().parents[2] / "shared" / "data" / "rsc15_100k" / "events.csv.gz"


def prnn_losses(train, settings: dict) -> tuple[np.ndarray, float]:
    """(per-step losses, the largest carried state's magnitude) of one prnn epoch."""
    losses: list[float] = []
    largest = [0.0]
    original = Network.train_step

    def recording(self, step, hidden, loss, optimizer, *args, **kwargs):
        value, new_hidden = original(self, step, hidden, loss, optimizer, *args, **kwargs)
        losses.append(float(value))
        largest[0] = max(largest[0], float(new_hidden[0].abs().max()))
        return value, new_hidden

    Network.train_step = recording
    try:
        GRU4Rec(**settings).fit(train, compile=False, threads=1)
    finally:
        Network.train_step = original
    return np.array(losses), largest[0]


def reference_losses(train, settings: dict, reference: str, seed: int) -> tuple[np.ndarray, float]:
    """(per-step losses, the largest carried state's magnitude) of one reference epoch."""
    import reference_gru4rec

    module = reference_gru4rec.import_reference(reference, "gru4rec_pytorch")
    losses: list[float] = []
    largest = [0.0]
    original = module.GRU4Rec.set_loss_function
    original_step = module.GRU4RecModel.hidden_step

    def stepping(self, X, H, training=False):
        out = original_step(self, X, H, training)
        largest[0] = max(largest[0], float(H[0].abs().max()))
        return out

    def recording(self, loss):
        original(self, loss)
        function = self.loss_function

        def recorded(*args):
            value = function(*args)
            losses.append(float(value) / self.batch_size)
            return value

        self.loss_function = recorded

    module.GRU4Rec.set_loss_function = recording
    module.GRU4RecModel.hidden_step = stepping
    try:
        config = GRU4RecConfig(**settings)
        reference_gru4rec.train_reference(reference, config, train, torch.device("cpu"), seed)
    finally:
        module.GRU4Rec.set_loss_function = original
        module.GRU4RecModel.hidden_step = original_step
    return np.array(losses), largest[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", help="checkout of hidasib/GRU4Rec_PyTorch_Official")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE over the preset")
    parser.add_argument("--spike", type=float, default=20.0)
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = read_events(RSC15, where={"split": "train"})
    overrides = parse_overrides(args.set)
    lines = [
        f"# `python benchmarks/loss_spikes.py {' '.join(sys.argv[1:])}`: rsc15_100k, preset "
        f"rsc15 {overrides or ''}, 1 epoch; per-step loss per event",
        "",
        f"| run | seed | mean | median | steps above {args.spike:g} | largest "
        "| largest carried state |",
        "|---|---|---|---|---|---|---|",
    ]
    for seed in (int(s) for s in args.seeds.split(",")):
        raw = {**read_preset("rsc15"), **overrides, "n_epochs": 1, "seed": seed}
        settings = dataclasses.asdict(build_config(GRU4RecConfig, raw, "the preset and --set"))
        runs = [("prnn", prnn_losses(train, settings))]
        if args.reference:
            runs.append(("reference", reference_losses(train, settings, args.reference, seed)))
        for name, (values, state) in runs:
            lines.append(
                f"| {name} | {seed} | {values.mean():.3f} | {np.median(values):.3f} | "
                f"{int((values > args.spike).sum())} | {values.max():.1f} | {state:,.0f} |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    emit_table("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
