"""Live sessions: each one's clicks and recurrent state, in a bounded store.

A session's state is advanced by one model step per click and never replayed (but once, when a
new model is swapped in: ``SessionStore.replace_model``). Each session has its own lock, so
that concurrent clicks on one session are applied one after the other and none is lost; the
store's lock guards only the table, so requests for different sessions do not wait for each
other's scoring. The store is bounded: at most ``max_sessions`` (the least recently used one is
evicted to make room), each dropped after ``ttl_seconds`` without a click.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LiveSession:
    """One browsing session in progress.

    Attributes:
        session_id: the client's name for it.
        model: the model its ``state`` belongs to (the served one when it was last advanced).
        state: the model's state of one lane, advanced by each known click.
        clicks: the known item ids clicked so far, in order.
        item_indices: their vocabulary indices (for ``exclude_seen``).
        last_used: ``time.monotonic()`` of the last request.
    """

    session_id: str
    model: Any
    state: Any
    clicks: list = field(default_factory=list)
    item_indices: list[int] = field(default_factory=list)
    last_used: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


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
        self._lock = threading.Lock()
        self.evicted_lru = 0
        self.expired = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _expire(self, now: float) -> None:
        """Drop sessions idle longer than the time-to-live (the oldest are first)."""
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if now - oldest.last_used <= self.ttl_seconds:
                break
            self._sessions.popitem(last=False)
            self.expired += 1

    def get_or_create(self, session_id: str, create: Callable[[], tuple[Any, Any]]) -> LiveSession:
        """The live session ``session_id``, created (``create() -> (model, state)``) if absent;
        marks it used now."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            session = self._sessions.get(session_id)
            if session is None:
                while len(self._sessions) >= self.max_sessions:
                    self._sessions.popitem(last=False)
                    self.evicted_lru += 1
                model, state = create()
                session = LiveSession(session_id, model, state, last_used=now)
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
            return self._sessions.pop(session_id, None) is not None

    def sessions(self) -> list[LiveSession]:
        with self._lock:
            return list(self._sessions.values())

    def clear(self) -> int:
        with self._lock:
            count = len(self._sessions)
            self._sessions.clear()
            return count

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
