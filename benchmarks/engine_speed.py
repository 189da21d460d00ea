"""Whole-process training speed of every recurrent model, compiled and eager, in one table.

Each row is one command run as its own process and timed from start to exit (imports, reading
the data, compiling where it happens, training, saving): what a user waits for. Rows are run
round-robin ``--rounds`` times so that drifts of a shared machine's speed hit every row alike;
the table gives medians. Columns: whole-process seconds, training events/s (median over the
epochs of the run, from its epoch log lines), and the ratio to a baseline row (the reference
GRU4Rec for the rsc15 rows, ID-only GRU4Rec for the Amazon rows).

    python benchmarks/engine_speed.py --reference /path/to/GRU4Rec_PyTorch_Official \\
        --rounds 2 --out reports/speed/engine.md

Rows: GRU4Rec with the reference's rsc15 XE configuration (preset ``rsc15``, 3 epochs, on
rsc15_100k's training split) and its BPR-max configuration (preset ``rsc15_100k_bprmax``), by
the reference (with ``--reference``) and by prnn at default flags (compiled where it pays),
``--compile`` and ``--no-compile``; then on amazon_toys_mm (90% of the sequences, the p-RNN
defaults comparison's settings, ``--toys-epochs`` epochs) ID-only GRU4Rec, feature-only and
concat with CLIP image vectors, and the p-RNN with image vectors and with TF-IDF text
(``--text``: a file written by ``prnn features text``), each compiled and eager (at default
flags these short runs train eagerly).
``--only`` picks rows by name.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from report import emit_table

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RSC15 = DATA / "rsc15_100k" / "events.csv.gz"
TOYS = DATA / "amazon_toys_mm"
EPOCH_RATE = re.compile(r"epoch \d+/\d+: .* ([\d,]+) events/s")
#: the shared settings of benchmarks/prnn_defaults.py, without the epoch count
TOYS_SETTINGS = (
    "loss=cross-entropy",
    "layers=100",
    "batch_size=32",
    "learning_rate=0.1",
    "momentum=0.2",
    "dropout_p_hidden=0.3",
    "logq=1.0",
)

REFERENCE_SCRIPT = """
import sys, time
sys.path.insert(0, {benchmarks!r})
import torch
from prnn.config import build_config, read_preset
from prnn.data import read_events
from prnn.models import GRU4RecConfig
from reference_gru4rec import train_reference
train = read_events({events!r}, where={{"split": "train"}})
config = build_config(GRU4RecConfig, {{**read_preset({preset!r}), "n_epochs": {epochs}}}, "x")
run = train_reference({reference!r}, config, train, torch.device("cpu"))
for epoch in run.epochs:
    print(f"epoch {{epoch['epoch']}}/{epochs}: x {{epoch['rate']:,.0f}} events/s", file=sys.stderr)
"""


@dataclass
class Row:
    name: str
    command: list[str]
    baseline: str | None
    """The row this one is compared with."""


def _prnn_train(arguments: list[str]) -> list[str]:
    return [sys.executable, "-m", "prnn.cli", "train", *arguments, "--out", "runs/speed.prnn"]


def rows(args) -> list[Row]:
    found: list[Row] = []
    epochs = ["--set", f"n_epochs={args.epochs}"]
    for preset, label in (("rsc15", "XE"), ("rsc15_100k_bprmax", "BPR-max")):
        reference = f"reference GRU4Rec {label}"
        if args.reference:
            script = REFERENCE_SCRIPT.format(
                benchmarks=str(ROOT / "benchmarks"),
                events=str(RSC15),
                preset=preset,
                epochs=args.epochs,
                reference=args.reference,
            )
            found.append(Row(reference, [sys.executable, "-c", script], None))
        base = [str(RSC15), "--where", "split=train", "--model", "gru4rec", "--preset", preset]
        for flag, how in (
            (None, "default flags"),
            ("--compile", "--compile"),
            ("--no-compile", "--no-compile"),
        ):
            command = _prnn_train(base + epochs + ([flag] if flag else []))
            found.append(
                Row(f"prnn GRU4Rec {label}, {how}", command, reference if args.reference else None)
            )
    settings = [f"--set={s}" for s in (*TOYS_SETTINGS, f"n_epochs={args.toys_epochs}")]
    image = ["--features", f"image={TOYS / 'clip_vitb32_image.npz'}"]
    models = [
        ("ID only", ["--model", "gru4rec"]),
        ("feature only, image", ["--model", "feature-only", *image]),
        ("concat, image", ["--model", "concat", *image]),
        ("p-RNN, image", ["--model", "prnn", *image]),
    ]
    if args.text:
        models.append(("p-RNN, text", ["--model", "prnn", "--features", f"text={args.text}"]))
    for label, model in models:
        for flag, how in (
            (None, "default flags"),
            ("--compile", "--compile"),
            ("--no-compile", "--no-compile"),
        ):
            toys = [args.toys_train, "--time-col", "none"]
            command = _prnn_train([*toys, *model, *settings, *([flag] if flag else [])])
            found.append(Row(f"Toys {label}, {how}", command, f"Toys ID only, {how}"))
    if args.only:
        wanted = [w.strip() for w in args.only.split(";")]
        found = [r for r in found if any(w in r.name for w in wanted)]
    return found


def run(row: Row) -> tuple[float, float]:
    """(whole-process seconds, median training events/s) of one run of the row's command."""
    started = time.perf_counter()
    result = subprocess.run(row.command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{row.name} failed:\n{result.stderr[-3000:]}")
    rates = [float(m.replace(",", "")) for m in EPOCH_RATE.findall(result.stderr)]
    if not rates:
        raise SystemExit(f"{row.name}: no epoch lines in its output:\n{result.stderr[-3000:]}")
    return seconds, statistics.median(rates)


def prepare_toys_split(path: Path) -> None:
    """90% of amazon_toys_mm's sequences (seed 1), as the defaults comparison's first split."""
    from prnn.data import read_events, split_sessions_randomly, write_events

    events = read_events(TOYS / "sequences.csv.gz", session_col="seq_id", time_col="none")
    train, _, _ = split_sessions_randomly(events, 0.1, seed=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_events(train, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", help="checkout of hidasib/GRU4Rec_PyTorch_Official")
    parser.add_argument("--epochs", type=int, default=3, help="rsc15 epochs (default: 3)")
    parser.add_argument("--toys-epochs", type=int, default=2, help="Toys epochs (default: 2)")
    parser.add_argument("--text", help="TF-IDF feature file of amazon_toys_mm's items")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", help="';'-separated parts of row names to run")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    args.toys_train = str(ROOT / "runs" / "toys_train_seed1.csv")
    if not Path(args.toys_train).exists():
        prepare_toys_split(Path(args.toys_train))

    table_rows = rows(args)
    results: dict[str, list[tuple[float, float]]] = {r.name: [] for r in table_rows}
    for round_index in range(args.rounds):
        for row in table_rows:
            results[row.name].append(run(row))
            seconds, rate = results[row.name][-1]
            print(
                f"# round {round_index + 1}: {row.name}: {seconds:.1f} s, {rate:,.0f} events/s",
                file=sys.stderr,
                flush=True,
            )
    median = {
        name: (statistics.median(s for s, _ in runs), statistics.median(r for _, r in runs))
        for name, runs in results.items()
    }
    lines = [
        f"# whole-process training runs, median of {args.rounds} round(s); "
        f"rsc15: {args.epochs} epochs, Toys: {args.toys_epochs} epochs",
        "",
        "| run | whole process s | training events/s | time vs baseline | events/s vs baseline |",
        "|---|---|---|---|---|",
    ]
    for row in table_rows:
        seconds, rate = median[row.name]
        ratio_time = ratio_rate = "–"
        if row.baseline in median:
            base_seconds, base_rate = median[row.baseline]
            ratio_time = f"{seconds / base_seconds:.2f}x"
            ratio_rate = f"{rate / base_rate:.2f}x"
        lines.append(f"| {row.name} | {seconds:.1f} | {rate:,.0f} | {ratio_time} | {ratio_rate} |")
    emit_table("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
