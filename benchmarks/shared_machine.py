"""Training speed on a shared machine: alone and beside CPU-bound processes, by thread count.

Trains GRU4Rec (preset ``rsc15`` on rsc15_100k's training split) and a p-RNN with image
features (the bundled Amazon Toys sample and its CLIP vectors) in fresh subprocesses, each
alone, beside one and beside two CPU-bound processes (``python3 -c "while True: pass"``, started
after the data is read and stopped when training ends), once with PyTorch's default thread
count and once with prnn's thread policy (``prnn.threads``), and prints one markdown table:
training events/s (median over rounds of each run's median epoch), the ratio to the same model
and threads alone, and the ratio to PyTorch's default under the same load. Example (the
committed table, ``reports/threads/shared_machine.md``):

    python benchmarks/shared_machine.py --epochs 2 --rounds 3 \
        --out reports/threads/shared_machine.md

Targets (the issue): beside one CPU-bound process, at least 80% of the events/s alone; alone, no
slower than PyTorch's default (a ratio within one run: the machine's speed drifts).

``--threads N`` compares a fixed count instead of the policy's. ``--max-events N`` trains on the
first sessions only (N events at most), for a quick check of the script itself:

    python benchmarks/shared_machine.py --epochs 1 --rounds 1 --max-events 5000 --loads 0,1

``--calibrate`` instead times GRU4Rec training at 1 and 2 intra-op threads, alternating so that
drifts hit both, over a grid of batch sizes, hidden sizes and sample counts, and prints each
step's multiply-adds (``prnn.threads.recurrent_step_work``), the time per step at each count and
the speed-up; ``--calibrate steps`` (the default) times whole training epochs on synthetic
sessions, ``--calibrate products`` only the step's matrix products (scores over ``batch +
n_sample`` output rows, their two gradients, the GRU's gate products and their gradients). The
policy's ``WORK_PER_EXTRA_THREAD`` comes from them (docs/threads.md):

    python benchmarks/shared_machine.py --calibrate steps --wait-quiet 60 \
        --out reports/threads/calibration_steps.md
    python benchmarks/shared_machine.py --calibrate products \
        --out reports/threads/calibration_products.md

``--wait-quiet S`` waits up to S seconds before each measurement for the CPUs to be idle (but
for the benchmark's own busy processes) and counts the measurements that did not get it.
Run nothing else heavy at the same time (other than what the benchmark itself starts).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from report import emit_table

REPO = Path(__file__).resolve().parent.parent
RSC15 = REPO.parent / "shared" / "data" / "rsc15_100k" / "events.csv.gz"
TOYS = REPO / "src" / "prnn" / "example_data" / "toys_sample"
BUSY_CODE = "while True: pass"
#: Environment variables that set thread counts: cleared in the workers, which set their own.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "PRNN_THREADS")
MODELS = ("gru4rec", "prnn")


# --------------------------------------------------------------------------------------------
# Worker: one training run in a fresh process
# --------------------------------------------------------------------------------------------


def _first_events(events, max_events: int | None):
    """The first sessions of ``events``, with ``max_events`` events at most (all: None)."""
    import numpy as np

    if not max_events or max_events >= events.n_events:
        return events
    ends = events.session_offsets[1:]
    return events.select_sessions(np.asarray(ends <= max_events))


def _load(model_name: str, epochs: int, max_events: int | None, rsc15: Path):
    """(model, events, fit options, multiply-adds per training step) for ``model_name``."""
    from prnn.config import build_config, read_preset
    from prnn.data import read_events
    from prnn.models import MODELS as MODEL_CLASSES
    from prnn.threads import recurrent_step_work

    model_class = MODEL_CLASSES[model_name]
    if model_name == "gru4rec":
        events = read_events(rsc15, where={"split": "train"})
        settings = {**read_preset("rsc15"), "n_epochs": epochs}
        options = {}
    else:
        from prnn.features import read_features

        events = read_events(TOYS / "sequences.csv.gz", session_col="seq_id", time_col="none")
        settings = {"n_epochs": epochs, "training": "simultaneous"}
        options = {"features": {"image": read_features(TOYS / "clip_image.npz")}}
    events = _first_events(events, max_events)
    config = build_config(model_class.config_class, settings, "benchmark")
    n_items = events.n_items
    work = recurrent_step_work(config.batch_size, config.n_sample, config.layers, n_items=n_items)
    if model_name == "prnn":
        image_dim = options["features"]["image"].dim
        work += recurrent_step_work(
            config.batch_size,
            config.n_sample,
            config.feature_layers,
            input_size=image_dim,
            n_items=n_items,
        )
    return model_class(config), events, options, work


def worker(args: argparse.Namespace) -> int:
    """Read the data, say "ready", wait for a line on stdin, train, print a JSON line."""
    import torch

    from prnn.threads import resolve_threads, using_threads

    default_threads = torch.get_num_threads()
    model, events, options, work = _load(args.worker, args.epochs, args.max_events, args.rsc15)
    if args.worker_threads == "default":
        # PyTorch's own count, also once the training loop applies the policy itself
        os.environ["PRNN_THREADS"] = str(default_threads)
        choice = None
        reason = "PyTorch's default"
    else:
        requested = None if args.worker_threads == "policy" else int(args.worker_threads)
        choice = resolve_threads(requested, "train", work_per_step=work)
        reason = choice.reason
        if requested is not None:
            os.environ["PRNN_THREADS"] = str(requested)  # holds inside the loop too
    print("ready", flush=True)
    sys.stdin.readline()
    with using_threads(choice) as threads:
        model.fit(events, **options)
    rates = [report.events_per_second for report in model.history_]
    print(
        json.dumps(
            {
                "events_per_second": rates,
                "threads": threads,
                "reason": reason,
                "work_per_step": work,
                "n_events": events.n_events,
            }
        ),
        flush=True,
    )
    return 0


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _cpu_times() -> tuple[float, float] | None:
    """(idle, total) jiffies of all CPUs from /proc/stat; None where it cannot be read."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [float(x) for x in fields]
    return values[3] + (values[4] if len(values) > 4 else 0.0), sum(values)


def wait_for_quiet(max_wait: float, busy_below: float = 0.15) -> bool:
    """Wait until the machine's CPUs are less than ``busy_below`` busy over half a second (other
    people's work would distort the timing), at most ``max_wait`` seconds; True if quiet."""
    deadline = time.monotonic() + max_wait
    while True:
        first = _cpu_times()
        time.sleep(0.5)
        second = _cpu_times()
        if first is None or second is None:
            return True
        total = second[1] - first[1]
        busy = 1.0 - (second[0] - first[0]) / total if total > 0 else 0.0
        if busy < busy_below:
            return True
        if time.monotonic() >= deadline:
            return False


def quiet(args: argparse.Namespace, own_busy: int = 0) -> bool:
    """With --wait-quiet S: wait up to S seconds for the machine to be idle but for our own
    ``own_busy`` CPU-bound processes; True if it was (or if not asked to check)."""
    if args.wait_quiet <= 0:
        return True
    return wait_for_quiet(args.wait_quiet, 0.15 + own_busy / (os.cpu_count() or 1))


def _noise_note(args: argparse.Namespace, noisy: int) -> str:
    if args.wait_quiet <= 0:
        return "not checked for other load"
    return (
        f"each measurement waited up to {args.wait_quiet:g} s for an idle machine; "
        f"{noisy} started with other load"
    )


def start_busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", BUSY_CODE], env=_clean_env()) for _ in range(n)]


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_once(args: argparse.Namespace, model: str, threads: str, load: int) -> dict:
    """One training run of ``model`` with ``threads`` ("default", "policy" or a count) beside
    ``load`` CPU-bound processes; the worker's JSON result."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        model,
        "--worker-threads",
        threads,
        "--epochs",
        str(args.epochs),
        "--rsc15",
        str(args.rsc15),
    ]
    if args.max_events:
        command += ["--max-events", str(args.max_events)]
    worker_process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_clean_env()
    )
    busy: list[subprocess.Popen] = []
    try:
        line = worker_process.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"worker {model}/{threads} failed before training: {line!r}")
        busy = start_busy(load)
        time.sleep(0.5 if load else 0.0)  # let them reach full speed
        worker_process.stdin.write("go\n")
        worker_process.stdin.flush()
        result_line = worker_process.stdout.readline()
    finally:
        stop(busy)
    worker_process.wait()
    if worker_process.returncode != 0 or not result_line.strip():
        raise SystemExit(f"worker {model}/{threads} failed (exit {worker_process.returncode})")
    return json.loads(result_line)


def machine_line() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from prnn.threads import usable_cores, usable_cpus

    return (
        f"{cpu}; {os.cpu_count()} logical CPUs, {usable_cpus()} usable, "
        f"{usable_cores()} usable cores; PyTorch {torch.__version__}, "
        f"default {torch.get_num_threads()} intra-op threads"
    )


def compare(args: argparse.Namespace) -> str:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for model in models:
        if model not in MODELS:
            raise SystemExit(f"--models: unknown model {model!r}; choose from {MODELS}")
    loads = [int(x) for x in args.loads.split(",")]
    settings = ["default", str(args.threads) if args.threads else "policy"]
    results: dict[tuple, list[float]] = {}
    noisy = 0
    info: dict[tuple, dict] = {}
    for round_number in range(1, args.rounds + 1):
        for load in loads:
            for model in models:
                for threads in settings:
                    noisy += not quiet(args)
                    result = run_once(args, model, threads, load)
                    rate = statistics.median(result["events_per_second"])
                    results.setdefault((model, threads, load), []).append(rate)
                    info[(model, threads)] = result
                    print(
                        f"round {round_number}: {model}, threads {threads} "
                        f"({result['threads']}), {load} busy: {rate:,.0f} events/s",
                        file=sys.stderr,
                        flush=True,
                    )
    command = " ".join(["python", "benchmarks/shared_machine.py", *sys.argv[1:]])
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# {stamp}: `{command}`",
        f"# {machine_line()}",
        f"# {args.rounds} round(s) x {args.epochs} epoch(s); events/s: median over rounds of "
        'each run\'s median epoch; busy = `python3 -c "while True: pass"` processes; '
        + _noise_note(args, noisy),
    ]
    for model in models:
        result = info[(model, settings[1])]
        lines.append(
            f"# {model}: {result['n_events']} events, {result['work_per_step']:.3g} "
            f"multiply-adds per step; {settings[1]}: {result['threads']} thread(s) "
            f"({result['reason']})"
        )
    lines += [
        "",
        "| model | threads | busy processes | events/s | vs. alone | vs. PyTorch's default |",
        "|---|---|---|---|---|---|",
    ]
    for model in models:
        for threads in settings:
            alone = statistics.median(results[(model, threads, loads[0])])
            count = info[(model, threads)]["threads"]
            label = "PyTorch's default" if threads == "default" else threads
            for load in loads:
                rate = statistics.median(results[(model, threads, load)])
                default = statistics.median(results[(model, "default", load)])
                lines.append(
                    f"| {model} | {label} ({count}) | {load} | {rate:,.0f} | "
                    f"{rate / alone:.2f} | {rate / default:.2f} |"
                )
    if loads[0] != 0:
        lines.append("")
        lines.append(f'("vs. alone" is relative to {loads[0]} busy processes: no 0 in --loads)')
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Calibration: when do 2 threads pay for a step's matrix products?
# --------------------------------------------------------------------------------------------


def _step_products(batch: int, hidden: int, columns: int):
    """A function doing one step's matrix products (forward and backward, 1 GRU layer) and
    its multiply-adds."""
    import torch

    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(*shape, generator=generator) - 0.5

    h, x = rand(batch, hidden), rand(batch, hidden)
    output = rand(columns, hidden)
    w_x, w_h = rand(hidden, 3 * hidden), rand(hidden, 3 * hidden)
    grad_scores, grad_gates = rand(batch, columns), rand(batch, 3 * hidden)

    def step():
        h @ output.T  # scores
        grad_scores @ output  # gradient of the hidden state
        grad_scores.T @ h  # gradient of the output rows
        x @ w_x  # gates from the input
        h @ w_h  # gates from the previous state
        x.T @ grad_gates  # input weights' gradient
        grad_gates @ w_x.T  # input's gradient
        h.T @ grad_gates  # recurrent weights' gradient
        grad_gates @ w_h.T  # previous state's gradient

    work = 3 * batch * columns * hidden + 18 * batch * hidden * hidden
    return step, work


def _time_step(step, min_seconds: float) -> float:
    """Seconds per call: the fastest of batches of calls lasting ``min_seconds`` in all."""
    step()  # warm-up
    best, spent, calls = float("inf"), 0.0, 0
    while spent < min_seconds or calls < 3:
        started = time.perf_counter()
        step()
        elapsed = time.perf_counter() - started
        best = min(best, elapsed)
        spent += elapsed
        calls += 1
    return best


def _synthetic_events(batch: int, n_steps: int, n_items: int, seed: int = 0):
    """Sessions of 6 clicks on Zipf-popular items: ``n_steps`` full steps of ``batch`` lanes."""
    import numpy as np

    from prnn.data import EventLog

    rng = np.random.default_rng(seed)
    length = 6
    n_sessions = batch * (n_steps // (length - 1) + 1)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    items = rng.choice(n_items, size=n_sessions * length, p=popularity / popularity.sum())
    sessions = np.repeat(np.arange(n_sessions), length)
    return EventLog.from_arrays(sessions, items, np.arange(len(items), dtype=np.float64))


def _step_fit(batch: int, hidden: int, n_sample: int, n_items: int, n_steps: int):
    """A function training GRU4Rec for one epoch of about ``n_steps`` steps (cross-entropy,
    the ``rsc15`` preset's other settings) and returning its events/s, and the step's
    multiply-adds (``recurrent_step_work``)."""
    from prnn.config import read_preset
    from prnn.models import GRU4Rec
    from prnn.threads import recurrent_step_work

    events = _synthetic_events(batch, n_steps, n_items)
    settings = {
        **read_preset("rsc15"),
        "n_epochs": 1,
        "batch_size": batch,
        "layers": (hidden,),
        "n_sample": n_sample,
        "sample_store_size": max(100_000, (n_steps + 10) * max(n_sample, 1)),
    }
    known = events.n_items

    def step():
        model = GRU4Rec(**settings).fit(events)
        return model.history_[0].events_per_second

    work = recurrent_step_work(batch, n_sample, (hidden,), n_items=known)
    return step, work


def calibrate_steps(args: argparse.Namespace) -> str:
    """Real GRU4Rec training epochs at 1 and 2 threads over the grid; events/s and speed-up."""
    from prnn.threads import using_threads

    batches = [int(x) for x in args.batches.split(",")]
    hiddens = [int(x) for x in args.hiddens.split(",")]
    samples = [int(x) for x in args.samples.split(",")]
    rows, noisy = [], 0
    busy = start_busy(args.busy)
    saved = os.environ.get("PRNN_THREADS")
    try:
        for hidden in hiddens:
            for batch in batches:
                for n_sample in samples:
                    fit, work = _step_fit(batch, hidden, n_sample, args.n_items, args.steps)
                    rates = {1: [], 2: []}
                    for _ in range(args.calibration_rounds):  # alternate: drifts hit both
                        noisy += not quiet(args, args.busy)
                        for threads in (1, 2):
                            # PRNN_THREADS too: holds once the training loop applies the policy
                            os.environ["PRNN_THREADS"] = str(threads)
                            with using_threads(threads):
                                rates[threads].append(fit())
                    one, two = max(rates[1]), max(rates[2])
                    rows.append((batch, hidden, n_sample, work, batch / one, batch / two))
                    print(
                        f"B={batch} H={hidden} S={n_sample}: {work:.3g} MACs, "
                        f"{one:,.0f} / {two:,.0f} events/s, {two / one:.2f}x",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        stop(busy)
        if saved is None:
            os.environ.pop("PRNN_THREADS", None)
        else:
            os.environ["PRNN_THREADS"] = saved
    note = (
        f"GRU4Rec training epochs of ~{args.steps} steps on synthetic sessions "
        f"({args.n_items} Zipf-popular items), preset rsc15 otherwise; ms per step from the "
        f"fastest of {args.calibration_rounds} alternating epochs; {args.busy} busy process(es); "
        f"{_noise_note(args, noisy)}"
    )
    return _calibration_table(args, rows, note)


def calibrate_products(args: argparse.Namespace) -> str:
    import torch

    batches = [int(x) for x in args.batches.split(",")]
    hiddens = [int(x) for x in args.hiddens.split(",")]
    samples = [int(x) for x in args.samples.split(",")]
    previous = torch.get_num_threads()
    rows, noisy = [], 0
    busy = start_busy(args.busy)
    try:
        for hidden in hiddens:
            for batch in batches:
                for n_sample in samples:
                    step, work = _step_products(batch, hidden, batch + n_sample)
                    times = {1: [], 2: []}
                    for _ in range(args.calibration_rounds):  # alternate: drifts hit both
                        noisy += not quiet(args, args.busy)
                        for threads in (1, 2):
                            torch.set_num_threads(threads)
                            times[threads].append(_time_step(step, args.min_seconds))
                    one, two = min(times[1]), min(times[2])
                    rows.append((batch, hidden, n_sample, work, one, two))
                    print(
                        f"B={batch} H={hidden} S={n_sample}: {work:.3g} MACs, "
                        f"{one * 1e3:.3f} / {two * 1e3:.3f} ms, {one / two:.2f}x",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        stop(busy)
        torch.set_num_threads(previous)
    note = (
        f"one step's matrix products (1 GRU layer, forward + backward); fastest call of "
        f"{args.calibration_rounds} alternating rounds; {args.busy} busy process(es); "
        f"{_noise_note(args, noisy)}"
    )
    return _calibration_table(args, rows, note)


def _calibration_table(args: argparse.Namespace, rows: list[tuple], note: str) -> str:
    """Markdown: one row per (batch, hidden, n_sample, work, seconds 1 thread, 2 threads)."""
    rows = sorted(rows, key=lambda r: r[3])
    command = " ".join(["python", "benchmarks/shared_machine.py", *sys.argv[1:]])
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# {stamp}: `{command}`",
        f"# {machine_line()}",
        f"# {note}",
        "",
        "| batch | hidden | n_sample | multiply-adds | ms, 1 thread | ms, 2 threads | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for batch, hidden, n_sample, work, one, two in rows:
        lines.append(
            f"| {batch} | {hidden} | {n_sample} | {work:.3g} | {one * 1e3:.3f} | "
            f"{two * 1e3:.3f} | {one / two:.2f} |"
        )
    # the smallest work from which every measured step gains at least --min-speedup
    threshold = None
    for index in range(len(rows)):
        if all(r[4] / r[5] >= args.min_speedup for r in rows[index:]):
            threshold = rows[index][3]
            break
    lines.append("")
    if threshold is None:
        lines.append(f"No size gains {args.min_speedup:.2f}x from 2 threads throughout.")
    else:
        lines.append(
            f"From {threshold:.3g} multiply-adds per step on, every measured step runs at least "
            f"{args.min_speedup:.2f}x faster on 2 threads than on 1."
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default: 2)")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions (default: 3)")
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated: gru4rec,prnn (default)"
    )
    parser.add_argument(
        "--loads",
        default="0,1,2",
        help="numbers of CPU-bound processes beside training (default: 0,1,2)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="compare this count instead of the policy's"
    )
    parser.add_argument(
        "--max-events", type=int, default=None, help="train on the first N events only"
    )
    parser.add_argument("--rsc15", type=Path, default=RSC15, help=f"default: {RSC15}")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each measurement, wait up to this long for the CPUs to be idle (other "
        "people's work distorts 2-thread timings most); default 0: do not check",
    )
    calibration = parser.add_argument_group("--calibrate")
    calibration.add_argument(
        "--calibrate",
        nargs="?",
        const="steps",
        choices=("steps", "products"),
        help="time 1 against 2 threads: GRU4Rec training steps (default) or their matrix "
        "products alone",
    )
    calibration.add_argument(
        "--steps", type=int, default=200, help="steps: training steps per epoch (default 200)"
    )
    calibration.add_argument(
        "--n-items", type=int, default=50_000, help="steps: catalogue size (default 50,000)"
    )
    calibration.add_argument(
        "--batches", help="batch sizes (default: steps 32,128,512; products 32,64,128,256,512)"
    )
    calibration.add_argument(
        "--hiddens", help="hidden sizes (default: steps 100,250,500; products 100,250,500,1000)"
    )
    calibration.add_argument(
        "--samples", help="n_sample values (default: steps 0,2048,8192; products 0,512,2048,8192)"
    )
    calibration.add_argument(
        "--min-seconds", type=float, default=0.05, help="timing per measurement (default 0.05)"
    )
    calibration.add_argument("--calibration-rounds", type=int, default=3)
    calibration.add_argument(
        "--min-speedup", type=float, default=1.3, help="what 'pays clearly' means (1.3x)"
    )
    calibration.add_argument(
        "--busy", type=int, default=0, help="CPU-bound processes beside the calibration"
    )
    parser.add_argument("--worker", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--worker-threads", default="policy", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        return worker(args)
    grids = {
        "steps": ("32,128,512", "100,250,500", "0,2048,8192"),
        "products": ("32,64,128,256,512", "100,250,500,1000", "0,512,2048,8192"),
    }
    if args.calibrate:
        batches, hiddens, samples = grids[args.calibrate]
        args.batches = args.batches or batches
        args.hiddens = args.hiddens or hiddens
        args.samples = args.samples or samples
    if args.calibrate == "steps":
        table = calibrate_steps(args)
    elif args.calibrate == "products":
        table = calibrate_products(args)
    else:
        table = compare(args)
    emit_table(table, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
