"""The click engine: live sessions' clicks applied and answered in one thread, batched.

Every click on a live session goes through one queue to one thread, which owns the served
model's state of many lanes (one lane per live session, ``prnn.serving.sessions``). The thread
takes whatever clicks have arrived together (up to ``max_batch``) and answers them with one
batched model step for all their sessions, one scoring pass and one top-k: under load, the
scoring's read of the item table (12k x 200 floats for the p-RNN with image features) is paid
once per batch instead of once per click. A lone click is answered at once, without waiting
for company.

Order: the queue is first in, first out and a batch is split into rounds in which each session
appears at most once, so the clicks of one session are applied in the order they arrived and
none is lost. Model swaps (``call``) run in the same thread between batches, so a click is
answered entirely by the model before or entirely by the model after a swap.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from prnn.errors import PrnnError
from prnn.serving.engine import ServedModel
from prnn.serving.sessions import LiveSession

log = logging.getLogger("prnn.serving")


class SessionEnded(PrnnError):
    """The session ended (or was evicted) while its click waited."""


class SessionFull(PrnnError):
    """The session has reached the most clicks a session may have."""


@dataclass(eq=False)
class ClickJob:
    """A click to apply and answer.

    Attributes:
        session: the live session clicked.
        item_id: the clicked item's id, as the request gave it.
        k: how many items to answer with.
        filter: ids of the only items that may be recommended (None: all).
        exclude: ids of items never recommended.
        exclude_seen: leave out the session's own items too.
        future: receives the answer (a dict) or the error.
    """

    session: LiveSession
    item_id: Any
    k: int
    filter: list | None
    exclude: list | None
    exclude_seen: bool
    future: concurrent.futures.Future


class ClickEngine:
    """Owns the lanes' state of the served model; see the module doc."""

    def __init__(
        self, served: ServedModel, *, max_session_length: int, max_batch: int = 256
    ) -> None:
        self.served = served
        self.max_session_length = max_session_length
        self.max_batch = max_batch
        self._capacity = 64
        self.state = served.new_state(self._capacity)
        self.batches = 0
        self.clicks = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="prnn-clicks", daemon=True)
        self._thread.start()

    # ---- the caller's side ------------------------------------------------------------------

    def submit(self, job: ClickJob) -> concurrent.futures.Future:
        self._queue.put(job)
        return job.future

    def call(self, function: Callable[[ClickEngine], Any]) -> concurrent.futures.Future:
        """Run ``function(self)`` in the engine's thread, between batches (a model swap)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((function, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    @property
    def mean_batch(self) -> float:
        return self.clicks / self.batches if self.batches else 0.0

    # ---- the engine's thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            pending = [self._queue.get()]
            while len(pending) < self.max_batch:
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            clicks: list[ClickJob] = []
            for job in pending:
                if isinstance(job, ClickJob):
                    clicks.append(job)
                    continue
                self._answer(clicks)  # the clicks before a call see the model before it
                clicks = []
                if job is None:
                    return
                function, future = job
                try:
                    future.set_result(function(self))
                except BaseException as error:  # noqa: BLE001 - handed to the caller
                    future.set_exception(error)
            self._answer(clicks)

    def _answer(self, jobs: list[ClickJob]) -> None:
        if not jobs:
            return
        self.batches += 1
        self.clicks += len(jobs)
        # rounds: a session's second click in the batch goes to the next round, and so on
        rounds: list[list[ClickJob]] = []
        round_of: dict[int, int] = {}
        for job in jobs:
            number = round_of.get(id(job.session), -1) + 1
            round_of[id(job.session)] = number
            if number == len(rounds):
                rounds.append([])
            rounds[number].append(job)
        for batch in rounds:
            try:
                self._round(batch)
            except BaseException as error:  # noqa: BLE001 - a bug must not stop the engine
                log.exception("answering %d clicks failed", len(batch))
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(error)

    def ensure_lanes(self, n_lanes: int) -> None:
        """Grow the state (doubling) to hold at least ``n_lanes`` lanes."""
        if n_lanes > self._capacity:
            grown = max(n_lanes, 2 * self._capacity)
            self.served.model.add_lanes(self.state, grown - self._capacity)
            self._capacity = grown

    def _round(self, jobs: list[ClickJob]) -> None:
        live = []
        for job in jobs:
            if not job.session.alive:
                job.future.set_exception(
                    SessionEnded(f"session {job.session.session_id!r} ended while its click waited")
                )
            else:
                live.append(job)
        if not live:
            return
        served = self.served
        self.ensure_lanes(max(job.session.lane for job in live) + 1)
        fresh = [job.session.lane for job in live if not job.session.started]
        if fresh:
            served.model.reset(self.state, np.array(fresh, dtype=np.int64))
            for job in live:
                job.session.started = True
        indices = served.indices([job.item_id for job in live])
        answered, unknown = [], []
        for job, index in zip(live, indices.tolist()):
            session = job.session
            if index >= 0 and len(session.clicks) >= self.max_session_length:
                job.future.set_exception(
                    SessionFull(
                        f"session {session.session_id!r} has reached the limit of "
                        f"{self.max_session_length} clicks; end it (DELETE) or start another"
                    )
                )
                continue
            answered.append(job)
            unknown.append(index < 0)
        if not answered:
            return
        known = [(job, i) for job, i, u in zip(answered, indices.tolist(), unknown) if not u]
        if known:
            lanes = np.array([job.session.lane for job, _ in known], dtype=np.int64)
            items = np.array([index for _, index in known], dtype=np.int64)
            with torch.inference_mode():
                served.advance(self.state, lanes, items)
            for job, index in known:
                job.session.clicks.append(job.item_id)
                job.session.item_indices.append(index)
        # ids to indices in the model now served (a swap may have come after the request)
        allowed, excluded, unknown_ids = [], [], []
        for job, unknown_click in zip(answered, unknown):
            unknown_ids.append([job.item_id] if unknown_click else [])
            allowed_ = None
            if job.filter is not None:
                allowed_, missing = served.known(job.filter)
                allowed_ = np.unique(allowed_)
                unknown_ids[-1] += missing
            excluded_, missing = served.known(job.exclude)
            unknown_ids[-1] += missing
            if job.exclude_seen:
                seen = np.asarray(job.session.item_indices, dtype=np.int64)
                excluded_ = np.concatenate([excluded_, seen])
            allowed.append(allowed_)
            excluded.append(excluded_)
        # one scoring pass per distinct filter (usually one: no filter)
        groups: dict[bytes | None, list[int]] = {}
        for position in range(len(answered)):
            key = None if allowed[position] is None else allowed[position].tobytes()
            groups.setdefault(key, []).append(position)
        for positions in groups.values():
            group = [answered[p] for p in positions]
            rows = served.top_k(
                self.state,
                np.array([job.session.lane for job in group], dtype=np.int64),
                max(job.k for job in group),
                exclude=[excluded[p] for p in positions],
                allowed=allowed[positions[0]],
            )
            for job, row, p in zip(group, rows, positions):
                job.future.set_result(
                    {
                        "items": [{"item_id": r.item_id, "score": r.score} for r in row[: job.k]],
                        "unknown_items": unknown_ids[p],
                        "n_clicks": len(job.session.clicks),
                        "model": served.model.name,
                    }
                )

    def swap(self, new: ServedModel, sessions: list[LiveSession], n_lanes: int) -> None:
        """(In the engine's thread.) Serve ``new``: a fresh state whose lanes replay the given
        sessions' known clicks side by side; clicks the new model does not know are dropped
        from the sessions. If the replay fails, nothing changes (the old model stays)."""
        state = new.new_state(max(self._capacity, n_lanes))
        replayed = []
        for session in sessions:
            indices = new.indices(session.clicks)
            keep = indices >= 0
            clicks = [c for c, k in zip(session.clicks, keep.tolist()) if k]
            replayed.append((session, clicks, indices[keep].tolist()))
        if replayed:
            try:
                new.advance_sequences(
                    state,
                    np.array([s.lane for s, _, _ in replayed], dtype=np.int64),
                    [indices for _, _, indices in replayed],
                )
            except Exception as error:  # noqa: BLE001 - any failure leaves the old model
                raise PrnnError(f"replaying the live sessions failed: {error}") from error
        for session, clicks, indices in replayed:
            session.clicks, session.item_indices, session.started = clicks, indices, True
        self.served, self.state = new, state
        self._capacity = max(self._capacity, n_lanes)
