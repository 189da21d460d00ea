"""The HTTP service: live sessions advanced one model step per click, stateless and batch
recommendations, model facts, hot reload, and a demo page.

Bad input is a 4xx that says what is wrong, never a 5xx: request bodies are validated by strict
schemas (wrong types, ``k`` out of range, over-long lists and absurd ids are 422), bodies over
``max_body_bytes`` are 413, a session past ``max_session_length`` clicks is 409, unknown item
ids are skipped and listed in the answer (``unknown_items``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import json
import logging
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated

import numpy as np
import orjson
from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from prnn.errors import PrnnError
from prnn.serving.catalogue import Catalogue
from prnn.serving.clicks import ClickEngine, ClickJob, SessionEnded, SessionFull
from prnn.serving.engine import ServedModel
from prnn.serving.sessions import SessionStore

log = logging.getLogger("prnn.serving")

#: the most items one answer may list
MAX_K = 1000
#: the most item ids in one list of a request (``items``, ``filter``, ``exclude``)
MAX_LIST = 10_000
#: the most sessions of one batch request
MAX_BATCH = 256

#: an item id as JSON gives it: an integer in int64's range, or a non-empty string of at most
#: 256 characters (longer ones are no id of any catalogue: 422)
ItemId = (
    Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)]
    | Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)]
)
SessionId = Annotated[str, PathParam(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:~-]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Filters(_Strict):
    k: int = Field(20, ge=1, le=MAX_K, description="how many items to return")
    exclude_seen: bool = Field(False, description="leave out the session's own items")
    filter: list[ItemId] | None = Field(
        None, max_length=MAX_LIST, description="only these items may be recommended"
    )
    exclude: list[ItemId] | None = Field(
        None, max_length=MAX_LIST, description="these items are never recommended"
    )


class Click(Filters):
    item_id: ItemId = Field(description="the item the session's user just clicked")


class Session(Filters):
    items: list[ItemId] = Field(max_length=MAX_LIST, description="the session's clicks, in order")


class Batch(_Strict):
    sessions: list[Session] = Field(min_length=1, max_length=MAX_BATCH)


class Reload(_Strict):
    path: str | None = Field(None, max_length=4096, description="model file; default: the same")
    keep_sessions: bool = Field(True, description="replay live sessions on the new model")


@dataclass(frozen=True)
class ServeOptions:
    """What ``prnn serve`` lets the operator choose."""

    max_sessions: int = 100_000
    session_ttl_seconds: float = 1800.0
    max_session_length: int = 1000
    max_body_bytes: int = 1_000_000
    admin_token: str | None = None
    items_path: str | None = None
    images_path: str | None = None
    device: str = "cpu"
    """torch device the model scores on (recurrent models), e.g. cuda."""


def _is_loopback(host: str | None) -> bool:
    if host in ("testclient", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


class BodyLimit:
    """ASGI middleware: request bodies larger than ``max_bytes`` are refused with 413 before the
    app reads them (by their Content-Length, or while they stream in)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send, size: str) -> None:
        body = json.dumps(
            {"error": f"request body {size} exceeds the limit of {self.max_bytes} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, f"of {int(declared)} bytes")
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(send, "streamed")
                return
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def json_response(content: dict) -> Response:
    """``content`` as JSON, written by orjson: the click answer's list of scores is the
    service's hottest output, and FastAPI's own encoder walks it in Python."""
    return Response(orjson.dumps(content), media_type="application/json")


def _error_text(errors: list) -> str:
    parts = []
    for error in errors[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def create_app(model_path: str | Path, options: ServeOptions | None = None) -> FastAPI:
    """The service for the model file at ``model_path``."""
    options = options or ServeOptions()
    served = {"model": ServedModel.load(model_path, options.device), "path": Path(model_path)}
    store = SessionStore(options.max_sessions, options.session_ttl_seconds)
    engine = ClickEngine(served["model"], max_session_length=options.max_session_length)
    catalogue = Catalogue.load(options.items_path, options.images_path)
    reload_lock = threading.Lock()
    counters = {"requests": 0, "reloads": 0}

    app = FastAPI(
        title="prnn",
        summary="Session-based recommendations: one model step per click",
        version=served["model"].info()["prnn_version"],
    )
    app.state.store = store
    app.state.engine = engine

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError):
        errors = error.errors()
        return JSONResponse(
            status_code=422,
            content={
                "error": _error_text(errors),
                "detail": json.loads(json.dumps(errors, default=str)),
            },
        )

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException):
        return JSONResponse(status_code=error.status_code, content={"error": error.detail})

    @app.exception_handler(PrnnError)
    async def _prnn(request: Request, error: PrnnError):
        return JSONResponse(status_code=400, content={"error": str(error)})

    def model() -> ServedModel:
        return served["model"]

    def listing(rows) -> list[dict]:
        return [{"item_id": r.item_id, "score": r.score} for r in rows]

    def filters_of(model_: ServedModel, request: Filters, seen: np.ndarray):
        """(allowed indices or None, excluded indices, unknown filter/exclude ids); ``seen``:
        the session's items, excluded with ``exclude_seen``."""
        allowed, unknown = None, []
        if request.filter is not None:
            allowed, unknown_filter = model_.known(request.filter)
            allowed = np.unique(allowed)
            unknown += unknown_filter
        excluded, unknown_exclude = model_.known(request.exclude)
        unknown += unknown_exclude
        if request.exclude_seen:
            excluded = np.concatenate([excluded, seen])
        return allowed, excluded, unknown

    # ---- live sessions ----------------------------------------------------------------------

    @app.post("/v1/sessions/{session_id}/events", summary="a click: advance the session, top-k")
    async def click(session_id: SessionId, request: Click):
        started = time.perf_counter()
        for attempt in range(3):
            job = ClickJob(
                store.get_or_create(session_id),
                request.item_id,
                request.k,
                request.filter,
                request.exclude,
                request.exclude_seen,
                concurrent.futures.Future(),
            )
            try:
                answer = await asyncio.wrap_future(engine.submit(job))
                break
            except SessionEnded:
                # ended (DELETE, or a reload that dropped sessions) while the click waited:
                # the click starts the session anew, as it would have a moment later
                if attempt == 2:
                    raise HTTPException(409, f"session {session_id!r} keeps ending") from None
            except SessionFull as error:
                raise HTTPException(409, str(error)) from None
        counters["requests"] += 1
        return json_response(
            {
                "session_id": session_id,
                **answer,
                "took_ms": round(1000 * (time.perf_counter() - started), 3),
            }
        )

    @app.get("/v1/sessions/{session_id}", summary="a live session's clicks so far")
    async def get_session(session_id: SessionId):
        session = store.get(session_id)
        if session is None:
            raise HTTPException(
                404, f"no live session {session_id!r} (never started, ended or expired)"
            )
        return {"session_id": session_id, "clicks": list(session.clicks)}

    @app.delete("/v1/sessions/{session_id}", summary="end a live session")
    async def end_session(session_id: SessionId):
        if not store.delete(session_id):
            raise HTTPException(404, f"no live session {session_id!r}")
        return {"session_id": session_id, "ended": True}

    # ---- stateless --------------------------------------------------------------------------

    def recommend_many(sessions: list[Session]) -> list[dict]:
        current = model()
        known_sessions, unknowns, excludes, alloweds = [], [], [], []
        for request in sessions:
            indices, unknown = current.known(request.items)
            allowed, excluded, unknown_filters = filters_of(current, request, indices)
            known_sessions.append(indices)
            unknowns.append(unknown + unknown_filters)
            excludes.append(excluded)
            alloweds.append(allowed)
        answers: list[dict | None] = [None] * len(sessions)
        # sessions with the same k and the same filter are scored in one batched pass
        groups: dict[tuple, list[int]] = {}
        for position, request in enumerate(sessions):
            key = (request.k, None if alloweds[position] is None else alloweds[position].tobytes())
            groups.setdefault(key, []).append(position)
        for (k, _), positions in groups.items():
            rows = current.recommend_sessions(
                [known_sessions[p] for p in positions],
                k,
                exclude=[excludes[p] for p in positions],
                allowed=alloweds[positions[0]],
            )
            for p, row in zip(positions, rows):
                answers[p] = {"items": listing(row), "unknown_items": unknowns[p]}
        return answers

    @app.post("/v1/recommend", summary="top-k for a session given by its clicks")
    def recommend(request: Session):
        started = time.perf_counter()
        answer = recommend_many([request])[0]
        counters["requests"] += 1
        return {
            **answer,
            "model": model().model.name,
            "took_ms": round(1000 * (time.perf_counter() - started), 3),
        }

    @app.post("/v1/recommend/batch", summary="top-k for many sessions at once")
    def recommend_batch(request: Batch):
        started = time.perf_counter()
        answers = recommend_many(request.sessions)
        counters["requests"] += 1
        return {
            "results": answers,
            "model": model().model.name,
            "took_ms": round(1000 * (time.perf_counter() - started), 3),
        }

    # ---- facts ------------------------------------------------------------------------------

    @app.get("/health", summary="the service is up and has a model")
    def health():
        return {"status": "ok", "model": model().model.name}

    @app.get("/v1/model", summary="the served model")
    def model_info():
        return model().info()

    @app.get("/v1/status", summary="live sessions, their bounds, evictions")
    def status():
        import torch

        return {
            **store.status(),
            "max_session_length": options.max_session_length,
            "requests": counters["requests"],
            "reloads": counters["reloads"],
            "intra_op_threads": torch.get_num_threads(),
            "click_batches": engine.batches,
            "mean_clicks_per_batch": round(engine.mean_batch, 3),
        }

    # ---- hot reload -------------------------------------------------------------------------

    def authorised(request: Request) -> None:
        if options.admin_token is not None:
            given = request.headers.get("authorization", "")
            if given != f"Bearer {options.admin_token}":
                raise HTTPException(401, "reload needs the header Authorization: Bearer <token>")
        elif not _is_loopback(request.client.host if request.client else None):
            raise HTTPException(403, "reload is allowed from loopback only (or set a token)")

    def reload_model(path: Path, keep_sessions: bool) -> dict:
        """Load ``path`` and swap it in; live sessions are replayed on it (their known clicks)
        or dropped. In-flight requests finish on the model they started with."""
        with reload_lock:
            new = ServedModel.load(path, options.device)
            old = served["model"]

            def swap(engine: ClickEngine) -> tuple[int, int]:
                # in the engine's thread: the clicks queued before are answered by the old
                # model, those after by the new one
                dropped = 0 if keep_sessions else store.clear()
                live = store.sessions()
                engine.swap(new, live, store.n_lanes)
                return len(live), dropped

            carried, dropped = engine.call(swap).result()
            served["model"], served["path"] = new, path
            counters["reloads"] += 1
            log.info("reloaded %s (%s)", path, new.model.name)
            return {
                "reloaded": str(path),
                "model": new.model.name,
                "previous_model": old.model.name,
                "sha256": new.checksum,
                "sessions_carried_over": carried,
                "sessions_dropped": dropped,
                "how": "live sessions replayed on the new model"
                if keep_sessions
                else "live sessions dropped",
            }

    app.state.reload = lambda: reload_model(served["path"], True)

    @app.post("/v1/admin/reload", summary="swap in a model file without stopping")
    def reload(request: Request, body: Annotated[Reload | None, Body()] = None):
        authorised(request)
        body = body or Reload()
        path = Path(body.path) if body.path else served["path"]
        try:
            return reload_model(path, body.keep_sessions)
        except PrnnError as error:
            raise HTTPException(
                400, f"not reloaded, still serving the previous model: {error}"
            ) from None

    # ---- the demo page ----------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def demo_page():
        page = resources.files("prnn.serving") / "static" / "demo.html"
        return HTMLResponse(page.read_text(encoding="utf-8"))

    @app.get("/v1/catalogue", summary="browse the items (for the demo page)")
    def browse(
        q: Annotated[str, Query(max_length=200)] = "",
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 48,
    ):
        current = model()
        ids = catalogue.search(q, current.vocabulary.item_ids.tolist(), offset, limit)
        return {"items": [catalogue.describe(item) for item in ids], "offset": offset}

    @app.post("/v1/items", summary="titles and photos of some items (for the demo page)")
    def describe(items: Annotated[list[ItemId], Body(max_length=MAX_K)]):
        return {"items": [catalogue.describe(item) for item in items]}

    @app.get("/v1/items/{item_id}/image", include_in_schema=False)
    def image(item_id: Annotated[str, PathParam(max_length=256)]):
        data = catalogue.image(item_id)
        if data is None:
            raise HTTPException(404, f"no image of item {item_id!r}")
        return Response(data, media_type="image/jpeg", headers={"cache-control": "max-age=3600"})

    if options.max_body_bytes:
        app.add_middleware(BodyLimit, max_bytes=options.max_body_bytes)
    return app
