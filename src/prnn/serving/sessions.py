"""Live sessions: each one's clicks and its lane in the served model's state, in a bounded store.

The served model keeps one state of many lanes (as in session-parallel training); each live
session owns one lane, which its clicks advance by one model step each, never replayed (but
once, when a new model is swapped in). The state itself is only touched by the click engine's
thread (``prnn.serving.clicks``); this store hands out lanes and bounds the table: at most
``max_sessions`` (the least recently used one is evicted to make room), each dropped after
``ttl_seconds`` without a click. A dropped session's lane goes back to the free list; it is
reset by the engine when its next owner's first click is applied.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(eq=False)
class LiveSession:
    """One browsing session in progress.

    Attributes:
        session_id: the client's name for it.
        lane: its lane in the served model's state.
        clicks: the known item ids clicked so far, in order.
        item_indices: their vocabulary indices (for ``exclude_seen`` and model swaps).
        last_used: ``time.monotonic()`` of the last request.
        alive: False once ended, evicted or expired (its lane may then belong to another).
        started: whether the engine has reset its lane (done before its first click).
    """

    session_id: str
    lane: int
    clicks: list = field(default_factory=list)
    item_indices: list[int] = field(default_factory=list)
    last_used: float = 0.0
    alive: bool = True
    started: bool = False


class SessionStore:
    """The live sessions, least recently used first; see the module doc."""

    def __init__(
        self,
        max_sessions: int = 100_000,
        ttl_seconds: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_sessions = max_sessions
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._sessions: OrderedDict[str, LiveSession] = OrderedDict()
        self._free_lanes: list[int] = []
        self._n_lanes = 0
        self._lock = threading.Lock()
        self.evicted_lru = 0
        self.expired = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _drop(self, session: LiveSession) -> None:
        session.alive = False
        self._free_lanes.append(session.lane)

    def _expire(self, now: float) -> None:
        """Drop sessions idle longer than the time-to-live (the oldest are first)."""
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if now - oldest.last_used <= self.ttl_seconds:
                break
            self._drop(self._sessions.popitem(last=False)[1])
            self.expired += 1

    def get_or_create(self, session_id: str) -> LiveSession:
        """The live session ``session_id``, created with a free lane if absent; marks it used
        now."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            session = self._sessions.get(session_id)
            if session is None:
                while len(self._sessions) >= self.max_sessions:
                    self._drop(self._sessions.popitem(last=False)[1])
                    self.evicted_lru += 1
                if self._free_lanes:
                    lane = self._free_lanes.pop()
                else:
                    lane, self._n_lanes = self._n_lanes, self._n_lanes + 1
                session = LiveSession(session_id, lane, last_used=now)
                self._sessions[session_id] = session
            else:
                session.last_used = now
                self._sessions.move_to_end(session_id)
            return session

    def get(self, session_id: str) -> LiveSession | None:
        now = self._clock()
        with self._lock:
            self._expire(now)
            return self._sessions.get(session_id)

    def delete(self, session_id: str) -> bool:
        with self._lock:
            session = self._sessions.pop(session_id, None)
            if session is not None:
                self._drop(session)
            return session is not None

    def sessions(self) -> list[LiveSession]:
        with self._lock:
            return list(self._sessions.values())

    def clear(self) -> int:
        with self._lock:
            count = len(self._sessions)
            for session in self._sessions.values():
                self._drop(session)
            self._sessions.clear()
            return count

    @property
    def n_lanes(self) -> int:
        """Lanes handed out so far (free or in use): the state must hold this many."""
        return self._n_lanes

    def status(self) -> dict:
        now = self._clock()
        with self._lock:
            self._expire(now)
            return {
                "live_sessions": len(self._sessions),
                "max_sessions": self.max_sessions,
                "session_ttl_seconds": self.ttl_seconds,
                "evicted_least_recently_used": self.evicted_lru,
                "expired_idle": self.expired,
            }
