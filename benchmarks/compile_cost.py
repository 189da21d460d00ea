"""What compiling GRU4Rec's training step costs a whole process, with PyTorch's on-disk cache warm.

Runs ``prnn train`` on rsc15_100k (preset ``rsc15``, ``--epochs`` epochs, ``--compile``) in a fresh
process ``--runs`` times (the first fills the cache where it is cold), and after each prints
where the process's time went: importing torch's compiler, dynamo's own compile-time metrics
(``torch._dynamo.utils.compile_times``: tracing, loading the cached kernels, which includes
inductor's probes of the CPU vector instructions its C++ compiler can use, a subprocess per
instruction set), and the epochs. Then an eager run (``--no-compile``) for comparison, and the
time ``import torch`` takes with and without ``torch._dynamo``.

    python benchmarks/compile_cost.py --out reports/speed/compile_cost.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from report import emit_table

RSC15 = Path(__file__).resolve().parents[2] / "shared" / "data" / "rsc15_100k" / "events.csv.gz"

#: dynamo's metric names -> the table's columns (seconds, summed over the run)
METRICS = {
    "_compile.compile_inner": "compiling in all",
    "bytecode_tracing": "dynamo tracing",
    "AOTAutogradCache.inductor_load": "loading cached kernels and probing the CPU's ISA",
}

CHILD = """
import json, sys, time
started = time.perf_counter()
from prnn.cli import main
main({argv!r})
figures = {{"process": time.perf_counter() - started}}
if "torch._dynamo" in sys.modules:
    from torch._dynamo.utils import compile_times
    names, values = compile_times(repr="csv", aggregate=True)
    figures.update(zip(names, (float(v) for v in values)))
print("FIGURES " + json.dumps(figures))
"""


def run(epochs: int, flag: str, out: Path) -> dict:
    argv = ["train", str(RSC15), "--where", "split=train", "--model", "gru4rec", "--preset"]
    argv += ["rsc15", "--set", f"n_epochs={epochs}", flag, "--out", str(out), "--force"]
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", CHILD.format(argv=argv)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    figures = json.loads(result.stdout.split("FIGURES ")[-1])
    figures["wall"] = time.perf_counter() - started
    figures["epochs"] = [
        float(line.split(", ")[1].rstrip(" s"))
        for line in result.stderr.splitlines()
        if line.startswith("epoch ")
    ]
    return figures


def import_seconds(modules: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {modules}"], check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2, help="compiled runs (default: 2)")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    model = Path("runs") / "compile_cost.prnn"
    model.parent.mkdir(exist_ok=True)
    rows = [
        (f"--compile, run {i + 1}", run(args.epochs, "--compile", model)) for i in range(args.runs)
    ]
    rows.append(("--no-compile", run(args.epochs, "--no-compile", model)))
    header = ["run", "whole process s", *METRICS.values(), "epoch s"]
    lines = [
        f"# `python benchmarks/compile_cost.py {' '.join(sys.argv[1:])}`: rsc15_100k, preset "
        f"rsc15, {args.epochs} epochs; seconds",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, figures in rows:
        metrics = [f"{figures[key]:.2f}" if key in figures else "–" for key in METRICS]
        epochs = " / ".join(f"{s:.2f}" for s in figures["epochs"])
        lines.append(f"| {name} | {figures['wall']:.1f} | {' | '.join(metrics)} | {epochs} |")
    plain, with_compiler = import_seconds("torch"), import_seconds("torch, torch._dynamo")
    lines += [
        "",
        f"`python -c 'import torch'`: {plain:.2f} s; "
        f"`python -c 'import torch, torch._dynamo'`: {with_compiler:.2f} s",
    ]
    emit_table("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
