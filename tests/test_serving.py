"""The HTTP service: live sessions, stateless and batch recommendations, bad input as 4xx,
same-session concurrency, hot reload, every model kind."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prnn.bundled import example_toys_folder
from prnn.data import read_events
from prnn.features import read_features
from prnn.models import MODELS
from prnn.serving import ServeOptions, create_app
from prnn.serving.engine import ServedModel
from prnn.serving.sessions import SessionStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SMALL = {"layers": (16,), "n_epochs": 1, "n_sample": 64, "batch_size": 32}


@pytest.fixture(scope="module")
def toys():
    folder = example_toys_folder()
    events = read_events(folder / "sequences.csv.gz", session_col="seq_id", time_col="none")
    return events, {"image": read_features(folder / "clip_image.npz")}


@pytest.fixture(scope="module")
def model_files(toys, tmp_path_factory):
    """A small saved model of every kind, trained on the bundled Toys sample."""
    events, features = toys
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for name, cls in MODELS.items():
        settings_ = {k: v for k, v in SMALL.items() if k in cls.config_class.__dataclass_fields__}
        if "feature_layers" in cls.config_class.__dataclass_fields__:
            settings_["feature_layers"] = (16,)
        model = cls(**settings_)
        model.fit(events, **({"features": features} if model.uses_features else {}))
        paths[name] = folder / f"{name}.prnn"
        model.save(paths[name])
    return paths


@pytest.fixture()
def client(model_files):
    app = create_app(model_files["prnn"], ServeOptions(max_session_length=5))
    return TestClient(app)


def item_ids(client, n=4):
    return [item["item_id"] for item in client.get(f"/v1/catalogue?limit={n}").json()["items"]]


# ---- endpoints ---------------------------------------------------------------------------------


def test_health_model_and_openapi(client, model_files):
    assert client.get("/health").json() == {"status": "ok", "model": "prnn"}
    info = client.get("/v1/model").json()
    assert info["model"] == "prnn" and info["n_items"] == 1997
    assert info["feature_sets"] == ["image"] and info["settings"]["layers"] == [16]
    assert info["sha256"] == hashlib.sha256(model_files["prnn"].read_bytes()).hexdigest()
    assert "/v1/sessions/{session_id}/events" in client.get("/openapi.json").json()["paths"]


def test_a_live_session_equals_the_stateless_answer_for_its_clicks(client):
    clicks = item_ids(client, 3)
    for n, item in enumerate(clicks, start=1):
        answer = client.post("/v1/sessions/s1/events", json={"item_id": item, "k": 5}).json()
        assert answer["n_clicks"] == n and len(answer["items"]) == 5
    stateless = client.post("/v1/recommend", json={"items": clicks, "k": 5}).json()
    assert [r["item_id"] for r in answer["items"]] == [r["item_id"] for r in stateless["items"]]
    np.testing.assert_allclose(
        [r["score"] for r in answer["items"]], [r["score"] for r in stateless["items"]], rtol=1e-5
    )
    assert client.get("/v1/sessions/s1").json() == {"session_id": "s1", "clicks": clicks}
    assert client.delete("/v1/sessions/s1").json()["ended"]
    assert client.get("/v1/sessions/s1").status_code == 404


def test_each_click_is_one_model_step_never_a_replay(client, monkeypatch):
    steps = []
    original = ServedModel.advance

    def counting(self, state, lanes, items):
        steps.append(len(items))
        return original(self, state, lanes, items)

    monkeypatch.setattr(ServedModel, "advance", counting)
    for item in item_ids(client, 4):
        client.post("/v1/sessions/s2/events", json={"item_id": item})
    assert steps == [1, 1, 1, 1]


def test_filters_exclusions_and_unknown_items(client):
    clicks = item_ids(client, 6)
    answer = client.post(
        "/v1/recommend",
        json={
            "items": [*clicks[:2], "no-such-item"],
            "k": 3,
            "filter": clicks,
            "exclude": [clicks[5]],
        },
    ).json()
    listed = [r["item_id"] for r in answer["items"]]
    assert set(listed) <= set(clicks[:5]) and clicks[5] not in listed and len(listed) == 3
    assert answer["unknown_items"] == ["no-such-item"]
    seen = client.post("/v1/recommend", json={"items": clicks[:2], "k": 50, "exclude_seen": True})
    assert not set(clicks[:2]) & {r["item_id"] for r in seen.json()["items"]}
    batch = client.post(
        "/v1/recommend/batch",
        json={"sessions": [{"items": clicks[:1], "k": 2}, {"items": clicks[:3], "k": 4}]},
    ).json()["results"]
    assert [len(r["items"]) for r in batch] == [2, 4]
    alone = client.post("/v1/recommend", json={"items": clicks[:3], "k": 4}).json()["items"]
    assert [r["item_id"] for r in batch[1]["items"]] == [r["item_id"] for r in alone]


# ---- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "words"),
    [
        ("post", "/v1/sessions/s/events", {"item_id": "x", "k": 0}, 422, "k: Input should be"),
        ("post", "/v1/sessions/s/events", {"item_id": "x", "k": 10_001}, 422, "k:"),
        ("post", "/v1/sessions/s/events", {"item_id": 1.5}, 422, "item_id"),
        ("post", "/v1/sessions/s/events", {"item_id": "x" * 300}, 422, "item_id"),
        ("post", "/v1/sessions/s/events", {"item_id": 2**70}, 422, "item_id"),
        ("post", "/v1/sessions/s/events", {"item_id": "x", "k": "20"}, 422, "k:"),
        ("post", "/v1/sessions/s/events", {"item": "x"}, 422, "item_id: Field required"),
        ("post", "/v1/sessions/" + "s" * 200 + "/events", {"item_id": "x"}, 422, "session_id"),
        ("post", "/v1/recommend", {"items": "abc"}, 422, "items"),
        ("post", "/v1/recommend/batch", {"sessions": []}, 422, "sessions"),
        ("get", "/v1/sessions/never", None, 404, "no live session 'never'"),
        ("delete", "/v1/sessions/never", None, 404, "no live session"),
    ],
)
def test_bad_requests_get_a_4xx_that_says_what_is_wrong(client, method, url, body, status, words):
    response = getattr(client, method)(url, **({"json": body} if body is not None else {}))
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_invalid_json_oversized_bodies_and_long_sessions(client):
    response = client.post(
        "/v1/recommend", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and "JSON" in response.json()["error"]
    response = client.post(
        "/v1/recommend", content=b" " * 2_000_000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and "exceeds the limit" in response.json()["error"]
    clicks = item_ids(client, 6)
    for item in clicks[:5]:
        assert client.post("/v1/sessions/long/events", json={"item_id": item}).status_code == 200
    response = client.post("/v1/sessions/long/events", json={"item_id": clicks[5]})
    assert response.status_code == 409 and "limit of 5 clicks" in response.json()["error"]


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
BODIES = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"item_id": JSON},
        optional={"k": JSON, "exclude_seen": JSON, "filter": JSON, "exclude": JSON},
    ),
    st.fixed_dictionaries({"items": JSON}, optional={"k": JSON, "filter": JSON}),
    st.fixed_dictionaries(
        {"sessions": st.lists(st.fixed_dictionaries({"items": JSON}), max_size=3)}
    ),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    url=st.sampled_from(
        ["/v1/sessions/h/events", "/v1/recommend", "/v1/recommend/batch", "/v1/items"]
    ),
    body=BODIES,
)
def test_no_request_body_makes_a_5xx(client, url, body):
    response = client.post(url, json=body)
    assert response.status_code < 500, (url, body, response.text)
    if response.status_code >= 400:
        assert response.json()["error"]


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    url=st.sampled_from(["/v1/sessions/h/events", "/v1/recommend", "/v1/recommend/batch"]),
    raw=st.binary(max_size=200),
)
def test_no_raw_body_makes_a_5xx(client, url, raw):
    response = client.post(url, content=raw, headers={"content-type": "application/json"})
    assert response.status_code < 500, (url, raw, response.text)


# ---- the store and concurrency -------------------------------------------------------------------


def test_store_evicts_least_recently_used_and_expires_idle_sessions():
    now = [0.0]
    store = SessionStore(max_sessions=2, ttl_seconds=10, clock=lambda: now[0])
    a = store.get_or_create("a")
    b = store.get_or_create("b")
    assert store.get_or_create("a") is a  # a is now the most recent
    c = store.get_or_create("c")  # evicts b, and takes its lane
    assert store.get("b") is None and store.get("a") is a
    assert not b.alive and c.lane == b.lane and store.n_lanes == 2
    now[0] = 30.0
    assert store.get("a") is None and not a.alive and not c.alive
    status = store.status()
    assert status["evicted_least_recently_used"] == 1 and status["expired_idle"] == 2
    assert status["live_sessions"] == 0


def test_a_reused_lane_starts_empty(model_files):
    """A session evicted from the full store leaves its lane to the next session, which must
    not inherit its state."""
    client = TestClient(create_app(model_files["prnn"], ServeOptions(max_sessions=1)))
    first, second = item_ids(client, 2)
    client.post("/v1/sessions/old/events", json={"item_id": first, "k": 5})
    answer = client.post("/v1/sessions/new/events", json={"item_id": second, "k": 5}).json()
    assert client.get("/v1/sessions/old").status_code == 404
    fresh = client.post("/v1/recommend", json={"items": [second], "k": 5}).json()
    assert [r["item_id"] for r in answer["items"]] == [r["item_id"] for r in fresh["items"]]


def _held(engine):
    """Hold the click engine's thread until the returned event is set (clicks queue up)."""
    release, holding = threading.Event(), threading.Event()

    def hold(_engine):
        holding.set()
        release.wait(10)

    engine.call(hold)
    holding.wait(10)
    return release


def test_clicks_that_arrive_together_are_answered_in_one_batch(model_files):
    """Clicks queued while the engine is busy go through one batched step and one scoring
    pass (with a second click of one session in a later round), and each answer is what the
    session alone would get."""
    app = create_app(model_files["prnn"], ServeOptions())
    client, engine = TestClient(app), app.state.engine
    items = item_ids(client, 6)
    clicks = [(f"s{n}", items[n]) for n in range(5)] + [("s0", items[5])]
    steps = []
    original = ServedModel.advance

    def counting(self, state, lanes, items_):
        steps.append(len(items_))
        return original(self, state, lanes, items_)

    batches = engine.batches
    release = _held(engine)
    answers = [None] * len(clicks)

    def click(n, session, item):
        answers[n] = client.post(f"/v1/sessions/{session}/events", json={"item_id": item, "k": 5})

    threads = [threading.Thread(target=click, args=(n, *c)) for n, c in enumerate(clicks)]

    def wait_for_queue(size: int) -> None:
        deadline = time.monotonic() + 10
        while engine._queue.qsize() < size and time.monotonic() < deadline:
            time.sleep(0.01)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ServedModel, "advance", counting)
        for thread in threads[:-1]:
            thread.start()
        # s0's second click queued after its first: threads start in order, not queue in it
        wait_for_queue(len(clicks) - 1)
        threads[-1].start()
        wait_for_queue(len(clicks))
        release.set()
        for thread in threads:
            thread.join()
    assert engine.batches == batches + 1  # all six clicks together
    assert steps == [5, 1]  # five sessions in one step, then s0's second click
    assert client.get("/v1/sessions/s0").json()["clicks"] == [items[0], items[5]]
    for (session, _), answer in zip(clicks, answers):
        assert answer.status_code == 200, answer.text
        answer = answer.json()
        so_far = client.get(f"/v1/sessions/{session}").json()["clicks"][: answer["n_clicks"]]
        alone = client.post("/v1/recommend", json={"items": so_far, "k": 5}).json()
        assert [r["item_id"] for r in answer["items"]] == [r["item_id"] for r in alone["items"]]
        np.testing.assert_allclose(
            [r["score"] for r in answer["items"]], [r["score"] for r in alone["items"]], rtol=1e-5
        )


def test_concurrent_clicks_on_one_session_lose_none(model_files):
    client = TestClient(create_app(model_files["gru4rec"], ServeOptions()))
    items = item_ids(client, 8)
    errors = []

    def clicker(worker: int) -> None:
        for round_ in range(5):
            item = items[(worker + round_) % len(items)]
            response = client.post("/v1/sessions/shared/events", json={"item_id": item, "k": 3})
            if response.status_code != 200:
                errors.append(response.text)

    threads = [threading.Thread(target=clicker, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    clicks = client.get("/v1/sessions/shared").json()["clicks"]
    assert len(clicks) == 40
    # the state is what the clicks, in the order they were applied, give
    last = client.post("/v1/sessions/shared/events", json={"item_id": items[0], "k": 5}).json()
    replay = client.post("/v1/recommend", json={"items": [*clicks, items[0]], "k": 5}).json()
    assert [r["item_id"] for r in last["items"]] == [r["item_id"] for r in replay["items"]]


# ---- hot reload ----------------------------------------------------------------------------------


def test_reload_swaps_the_model_and_replays_or_drops_live_sessions(model_files):
    client = TestClient(create_app(model_files["prnn"], ServeOptions()))
    clicks = item_ids(client, 3)
    for item in clicks:
        client.post("/v1/sessions/live/events", json={"item_id": item})
    answer = client.post("/v1/admin/reload", json={"path": str(model_files["gru4rec"])}).json()
    assert answer["model"] == "gru4rec" and answer["previous_model"] == "prnn"
    assert answer["sessions_carried_over"] == 1 and answer["sessions_dropped"] == 0
    assert client.get("/v1/model").json()["model"] == "gru4rec"
    after = client.post("/v1/sessions/live/events", json={"item_id": clicks[0], "k": 4}).json()
    replay = client.post("/v1/recommend", json={"items": [*clicks, clicks[0]], "k": 4}).json()
    assert after["model"] == "gru4rec" and after["items"] == replay["items"]
    answer = client.post(
        "/v1/admin/reload", json={"path": str(model_files["pop"]), "keep_sessions": False}
    ).json()
    assert answer["sessions_dropped"] == 1 and client.get("/v1/sessions/live").status_code == 404
    broken = client.post("/v1/admin/reload", json={"path": "/no/such.prnn"})
    assert (
        broken.status_code == 400 and "still serving the previous model" in broken.json()["error"]
    )
    assert client.get("/v1/model").json()["model"] == "pop"


def test_a_reload_whose_replay_fails_leaves_the_old_model_and_sessions(model_files, monkeypatch):
    client = TestClient(create_app(model_files["prnn"], ServeOptions()))
    clicks = item_ids(client, 3)
    for item in clicks:
        client.post("/v1/sessions/live/events", json={"item_id": item})

    def broken(self, state, lanes, sequences):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(ServedModel, "advance_sequences", broken)
    answer = client.post("/v1/admin/reload", json={"path": str(model_files["gru4rec"])})
    assert answer.status_code == 400 and "still serving the previous model" in answer.text
    monkeypatch.undo()
    assert client.get("/v1/model").json()["model"] == "prnn"
    assert client.get("/v1/sessions/live").json()["clicks"] == clicks
    after = client.post("/v1/sessions/live/events", json={"item_id": clicks[0], "k": 4}).json()
    replay = client.post("/v1/recommend", json={"items": [*clicks, clicks[0]], "k": 4}).json()
    assert after["model"] == "prnn" and after["items"] == replay["items"]


def test_reload_does_not_fail_requests_in_flight(model_files):
    client = TestClient(create_app(model_files["prnn"], ServeOptions()))
    items = item_ids(client, 5)
    failures, stop = [], threading.Event()

    def clicking() -> None:
        n = 0
        while not stop.is_set():
            response = client.post("/v1/sessions/busy/events", json={"item_id": items[n % 5]})
            if response.status_code != 200:
                failures.append(response.text)
            n += 1

    thread = threading.Thread(target=clicking)
    thread.start()
    for path in ("gru4rec", "prnn", "gru4rec"):
        assert (
            client.post("/v1/admin/reload", json={"path": str(model_files[path])}).status_code
            == 200
        )
    stop.set()
    thread.join()
    assert not failures


def test_reload_needs_the_token_when_one_is_set(model_files):
    client = TestClient(create_app(model_files["pop"], ServeOptions(admin_token="s3cret")))
    assert client.post("/v1/admin/reload").status_code == 401
    ok = client.post("/v1/admin/reload", headers={"authorization": "Bearer s3cret"})
    assert ok.status_code == 200


# ---- every model kind ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_kind_is_served(model_files, name):
    client = TestClient(create_app(model_files[name], ServeOptions()))
    items = item_ids(client, 3)
    for item in items:
        answer = client.post(f"/v1/sessions/{name}/events", json={"item_id": item, "k": 5})
        assert answer.status_code == 200 and len(answer.json()["items"]) == 5
    assert client.get("/v1/model").json()["model"] == name


# ---- the command and the demo page in a browser --------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(model_files):
    """``prnn serve`` as a user starts it: a process on a loopback port, with the bundled
    sample's titles and photos for the demo page."""
    folder = example_toys_folder()
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prnn.cli",
            "-q",
            "serve",
            str(model_files["prnn"]),
            "--port",
            str(port),
            "--items",
            str(folder / "items.csv.gz"),
            "--images",
            str(folder / "photos.zip"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(process.stdout.read().decode())
        time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=20)


def test_prnn_serve_answers_over_http(served):
    with httpx.Client(base_url=served) as http:
        assert http.get("/health").json()["model"] == "prnn"
        item = http.get("/v1/catalogue?limit=1").json()["items"][0]
        assert item["title"] and item["image"]
        assert http.get(item["image"]).headers["content-type"] == "image/jpeg"
        answer = http.post("/v1/sessions/cli/events", json={"item_id": item["item_id"]}).json()
        assert len(answer["items"]) == 20 and http.get("/v1/status").json()["intra_op_threads"] == 1


def test_serve_flags_are_checked_before_starting(capsys):
    from prnn.cli import main

    assert main(["serve", "--port", "70000"]) == 2
    assert "--port must be between 0 and 65535; got 70000" in capsys.readouterr().err
    assert main(["serve", "nope.prnn"]) == 2
    assert "nope.prnn: no such model file" in capsys.readouterr().err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "demo.png"


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_demo_page_in_headless_chromium(served, tmp_path):
    """A person's visit: the catalogue shows, three clicks, and the list changes each time."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(served)
        page.wait_for_selector("#catalogue .item")
        assert "model: prnn, 1997 items, features: image" in page.inner_text("#model")
        lists = []
        for n in range(3):
            page.locator("#catalogue .item").nth(n * 7).click()
            page.wait_for_function(f"document.getElementById('clicks').children.length === {n + 1}")
            page.wait_for_selector("#recs .item")
            lists.append(
                [
                    page.locator("#recs .item").nth(i).get_attribute("data-item-id")
                    for i in range(12)
                ]
            )
        assert lists[0] != lists[1] != lists[2]
        assert "server" in page.inner_text("#latency") and " ms" in page.inner_text("#latency")
        page.screenshot(path=str(tmp_path / "demo.png"))
        if os.environ.get("PRNN_UPDATE_SCREENSHOT"):
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
        browser.close()
    assert (tmp_path / "demo.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_prnn_serve_without_a_model_serves_the_example(tmp_path):
    """The README's one command: the example p-RNN is trained on first use into the cache and
    served with the bundled sample's titles and photos."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "prnn.cli", "-q", "serve", "--port", str(port)],
        env={**os.environ, "PRNN_CACHE": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.5)
        info = httpx.get(f"{url}/v1/model").json()
        assert (info["model"], info["n_items"], info["feature_sets"]) == ("prnn", 1997, ["image"])
        item = httpx.get(f"{url}/v1/catalogue?limit=1").json()["items"][0]
        assert item["title"] != item["item_id"] and item["image"]
        assert list(tmp_path.glob("example-prnn-image-*.prnn"))
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_a_neighbourhood_model_is_not_moved_to_a_gpu(model_files):
    from prnn.errors import ConfigError

    with pytest.raises(ConfigError, match="scores on the CPU only"):
        ServedModel.load(model_files["item-knn"], "cuda")
    assert ServedModel.load(model_files["item-knn"], "cpu").model.name == "item-knn"
