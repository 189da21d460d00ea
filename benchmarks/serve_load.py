"""Load on ``prnn serve``: real sessions replayed click by click by concurrent clients.

Starts ``prnn serve MODEL`` on a loopback port, takes the test sequences of amazon_toys_mm (10%
drawn with seed 1, as benchmarks/prnn_defaults.py) and replays them click by click with C
concurrent clients (asyncio, one keep-alive connection each; each client walks its own
sessions through ``POST /v1/sessions/{id}/events``, k = 20), for a bounded number of requests,
and prints throughput and p50/p95/p99 latency per C. Every answer must be a 200 and every click
must be in its session afterwards (``GET /v1/sessions/{id}``): lost clicks and errors are
counted. A last row times one client on a synthetic catalogue of ``--big-items`` items
(a GRU4Rec with random weights), where exact top-k over all items is the cost.

    python benchmarks/serve_load.py --out reports/serving/load.md

Without ``--model`` it first trains the issue's model: a p-RNN with CLIP image features on
amazon_toys_mm (1 epoch: latency does not depend on accuracy), into ``runs/``. Loopback only;
bounded in requests (``--requests`` per C) and time; the server stops with the script. Run
nothing else heavy at the same time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np

from report import emit_table

REPO = Path(__file__).resolve().parent.parent
TOYS = REPO.parent / "shared" / "data" / "amazon_toys_mm"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train_model(path: Path) -> None:
    from prnn.data import read_events, split_sessions_randomly
    from prnn.features import read_features
    from prnn.models import PRNN

    events = read_events(TOYS / "sequences.csv.gz", session_col="seq_id", time_col="none")
    train, _, _ = split_sessions_randomly(events, 0.1, seed=1)
    model = PRNN(n_epochs=1, batch_size=32)
    model.fit(train, features={"image": read_features(TOYS / "clip_vitb32_image.npz")})
    model.save(path)


def big_model(path: Path, n_items: int) -> None:
    """A GRU4Rec over ``n_items`` items with random weights (its file: n_items x 100 floats)."""
    import torch

    from prnn.data import Vocabulary
    from prnn.models import GRU4Rec
    from prnn.models.gru4rec import gru4rec_network

    model = GRU4Rec(layers=(100,))
    model.vocabulary = Vocabulary(
        item_ids=np.arange(n_items, dtype=np.int64), counts=np.ones(n_items, dtype=np.int64)
    )
    model.network = gru4rec_network(n_items, model.config)
    model.network.reset_parameters(torch.Generator().manual_seed(0))
    model.save(path)


def test_sessions(n: int) -> list[list[str]]:
    from prnn.data import read_events, split_sessions_randomly

    events = read_events(TOYS / "sequences.csv.gz", session_col="seq_id", time_col="none")
    _, test, _ = split_sessions_randomly(events, 0.1, seed=1)
    offsets = test.session_offsets
    items = test.item_ids
    return [items[offsets[s] : offsets[s + 1]].tolist() for s in range(min(n, test.n_sessions))]


class Server:
    def __init__(self, model: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "prnn.cli", "-q", "serve", str(model)]
        command += ["--port", str(self.port)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the server did not start: {self.process.stderr.read()!r}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def replay(url: str, sessions: list[list], clients: int, requests: int, tag: str):
    """C clients, each walking its share of the sessions click by click over one keep-alive
    connection; returns latencies (s), wall seconds, errors and lost clicks."""
    latencies: list[float] = []
    errors = 0
    budget = [requests]
    sent: dict[str, int] = {}

    async def client(worker: int) -> None:
        nonlocal errors
        # aiohttp: the client's own cost per request is a third of httpx's, and client and
        # server share the machine's cores
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(url, connector=connector) as http:
            for index in range(worker, len(sessions), clients):
                session_id = f"{tag}-{index}"
                for item in sessions[index]:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                    started = time.perf_counter()
                    async with http.post(
                        f"/v1/sessions/{session_id}/events", json={"item_id": item, "k": 20}
                    ) as response:
                        await response.read()
                        status = response.status
                    latencies.append(time.perf_counter() - started)
                    if status != 200:
                        errors += 1
                    else:
                        sent[session_id] = sent.get(session_id, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(client(w) for w in range(clients)))
    wall = time.perf_counter() - started
    lost = 0
    async with aiohttp.ClientSession(url) as http:
        for session_id, count in sent.items():
            async with http.get(f"/v1/sessions/{session_id}") as response:
                clicks = (await response.json())["clicks"]
            lost += count - len(clicks)
    return latencies, wall, errors, lost


def engine_counts(url: str) -> tuple[int, int]:
    """(clicks answered, batches the click engine answered them in) so far."""
    status = httpx.get(f"{url}/v1/status").json()
    return status["requests"], status["click_batches"]


def row(
    label: str,
    clients: int,
    latencies: list[float],
    wall: float,
    errors: int,
    lost: int,
    per_batch: float,
):
    ms = np.array(latencies) * 1000
    return [
        label,
        str(clients),
        f"{len(ms):,}",
        f"{len(ms) / wall:,.0f}",
        f"{np.percentile(ms, 50):.2f}",
        f"{np.percentile(ms, 95):.2f}",
        f"{np.percentile(ms, 99):.2f}",
        f"{per_batch:.1f}",
        str(errors),
        str(lost),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model to serve (default: train the p-RNN)")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients (1,8,32)")
    parser.add_argument("--requests", type=int, default=5000, help="clicks per client count")
    parser.add_argument("--big-items", type=int, default=1_000_000, help="0 skips that table")
    parser.add_argument("--big-requests", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        model = args.model
        if model is None:
            model = REPO / "runs" / "serve_load_prnn_image.prnn"
            if not model.is_file():
                model.parent.mkdir(exist_ok=True)
                print("# training the p-RNN (image, amazon_toys_mm, 1 epoch)", file=sys.stderr)
                train_model(model)
        sessions = test_sessions(5000)
        header = [
            "model",
            "clients",
            "requests",
            "requests/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "clicks per batch",
            "errors",
            "lost clicks",
        ]
        rows = []
        server = Server(model)
        try:
            info = httpx.get(f"{server.url}/v1/model").json()
            features = ", ".join(info["feature_sets"]) or "ID"
            label = f"{info['model']} ({features}), {info['n_items']:,} items"
            for clients in (int(c) for c in args.clients.split(",")):
                clicks_before, batches_before = engine_counts(server.url)
                result = asyncio.run(
                    replay(server.url, sessions, clients, args.requests, f"c{clients}")
                )
                clicks, batches = engine_counts(server.url)
                per_batch = (clicks - clicks_before) / max(1, batches - batches_before)
                rows.append(row(label, clients, *result, per_batch))
                print(f"# {rows[-1]}", file=sys.stderr)
        finally:
            server.stop()
        if args.big_items:
            path = Path(scratch) / "big.prnn"
            big_model(path, args.big_items)
            server = Server(path)
            try:
                rng = np.random.default_rng(0)
                synthetic = [rng.integers(0, args.big_items, size=5).tolist() for _ in range(200)]
                result = asyncio.run(replay(server.url, synthetic, 1, args.big_requests, "big"))
                label = f"gru4rec (random), {args.big_items:,} items, exact"
                rows.append(row(label, 1, *result, 1.0))
            finally:
                server.stop()

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benchmarks/serve_load.py " + " ".join(sys.argv[1:])
    lines = [
        f"# {stamp}: `{command.strip()}`",
        f"# {platform.processor() or platform.machine()}; {os.cpu_count()} CPUs; client and "
        "server on this machine, loopback; k = 20; amazon_toys_mm test sequences (seed 1) "
        "replayed click by click",
        "",
    ]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    emit_table("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
