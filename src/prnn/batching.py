"""Session-parallel mini-batches and the shared negative-sample store (GRU4Rec's training input).

Session-parallel mini-batches (Hidasi et al., ICLR 2016): ``B`` lanes each hold one session;
at every step each lane feeds its session's current event and predicts the next one. When a
lane's session has no next event, the lane takes the next unused session (in start-time order)
and only that lane's hidden state is zeroed. Sessions are never cut or padded. When no unused
session is left, finished lanes are dropped and the batch shrinks; training stops once fewer than
``min_lanes`` lanes remain (2 when the other lanes' targets are the only negatives), and the
events that could not be used are counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class LaneChange:
    """What happens to the lanes before a step: some restart, and maybe the batch shrinks."""

    reset: np.ndarray
    """Lanes (numbered as before the change) whose new session starts: hidden state to zero."""
    keep: np.ndarray | None
    """Lanes (numbered as before the change) that stay, in order; None = all stay."""


@dataclass(frozen=True)
class SessionParallelSchedule:
    """Every training step of one epoch, precomputed from the session layout.

    Step ``t`` feeds events ``input_positions[step_offsets[t]:step_offsets[t + 1]]`` (one per
    lane, in lane order) and predicts the events right after them.
    """

    input_positions: np.ndarray
    step_offsets: np.ndarray
    lane_changes: dict[int, list[LaneChange]] = field(repr=False)
    """Changes to apply, in order, before the step with that index."""
    n_unused_targets: int
    """Targets left unseen because too few lanes remained at the end of the epoch."""

    @property
    def n_steps(self) -> int:
        return len(self.step_offsets) - 1

    @property
    def n_targets(self) -> int:
        return len(self.input_positions)

    def first_steps(self, n_steps: int) -> SessionParallelSchedule:
        """This schedule cut after ``n_steps`` steps (the later targets counted as unused)."""
        if n_steps >= self.n_steps:
            return self
        kept = int(self.step_offsets[n_steps])
        return SessionParallelSchedule(
            input_positions=self.input_positions[:kept],
            step_offsets=self.step_offsets[: n_steps + 1],
            lane_changes={k: v for k, v in self.lane_changes.items() if k < n_steps},
            n_unused_targets=self.n_unused_targets + self.n_targets - kept,
        )


def session_parallel_schedule(
    session_offsets: np.ndarray,
    session_order: np.ndarray,
    batch_size: int,
    min_lanes: int = 1,
) -> SessionParallelSchedule:
    """Lay out session-parallel mini-batches.

    Args:
        session_offsets: (S + 1,) event offsets of each session in the event arrays.
        session_order: (S,) the order in which sessions enter lanes (GRU4Rec: start time).
        batch_size: number of lanes.
        min_lanes: stop when fewer lanes than this still have a session.
    """
    offsets = np.asarray(session_offsets, dtype=np.int64)
    order = np.asarray(session_order, dtype=np.int64)
    n_sessions = len(order)
    lane_session = np.arange(min(batch_size, n_sessions))  # index into `order`
    next_session = len(lane_session)
    start = offsets[order[lane_session]]
    end = offsets[order[lane_session] + 1]
    blocks: list[np.ndarray] = []
    step_sizes: list[np.ndarray] = []
    lane_changes: dict[int, list[LaneChange]] = {}
    n_steps = 0
    unused = 0
    while len(lane_session) >= min_lanes and len(lane_session) > 0:
        # every lane can advance this many steps before the first of them runs out
        steps = int((end - start).min()) - 1
        if steps > 0:
            block = start[None, :] + np.arange(steps)[:, None]  # (steps, lanes)
            blocks.append(block.reshape(-1))
            step_sizes.append(np.full(steps, len(lane_session), dtype=np.int64))
            n_steps += steps
            start = start + steps
        finished = end - start <= 1
        n_finished = int(finished.sum())
        new_index = next_session + np.arange(n_finished)
        next_session += n_finished
        lane_session = lane_session.copy()
        lane_session[finished] = new_index
        valid = lane_session < n_sessions
        refilled = finished & valid
        sessions = order[lane_session[refilled]]
        start[refilled] = offsets[sessions]
        end[refilled] = offsets[sessions + 1]
        keep = None if valid.all() else np.flatnonzero(valid)
        if keep is not None:
            lane_session, start, end = lane_session[keep], start[keep], end[keep]
        if len(lane_session) < min_lanes:
            # the remaining lanes' events are never trained on
            unused = int((end - start - 1).clip(min=0).sum())
            if next_session < n_sessions:
                rest = order[next_session:]
                unused += int((offsets[rest + 1] - offsets[rest] - 1).sum())
            break
        change = LaneChange(reset=np.flatnonzero(refilled), keep=keep)
        lane_changes.setdefault(n_steps, []).append(change)
    positions = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int64)
    sizes = np.concatenate(step_sizes) if step_sizes else np.zeros(0, dtype=np.int64)
    return SessionParallelSchedule(
        input_positions=positions,
        step_offsets=np.r_[0, np.cumsum(sizes)].astype(np.int64),
        lane_changes=lane_changes,
        n_unused_targets=unused,
    )


class NegativeSampler:
    """Shared negative samples drawn with probability proportional to popularity ** alpha.

    Samples are generated in large blocks (the reference's "sample store") so drawing is one
    vectorised search per few thousand mini-batches, not one per step.
    """

    def __init__(
        self,
        counts: np.ndarray,
        n_sample: int,
        alpha: float,
        store_size: int,
        generator: torch.Generator,
        device: torch.device,
        max_rows: int | None = None,
    ) -> None:
        weights = np.asarray(counts, dtype=np.float64) ** alpha
        cdf = np.cumsum(weights) / weights.sum()
        cdf[-1] = 1.0
        self.cdf = torch.from_numpy(cdf).to(device)
        self.n_sample = n_sample
        # no point generating more rows at once than an epoch has steps
        self.rows = max(1, min(store_size // max(1, n_sample), max_rows or store_size))
        self.generator = generator
        self.device = device
        self._store = torch.empty(0, dtype=torch.int64)
        self._next = 0

    def _refill(self) -> None:
        uniform = torch.rand(
            self.rows * self.n_sample, generator=self.generator, dtype=torch.float64
        ).to(self.device)
        samples = torch.searchsorted(self.cdf, uniform, right=True)
        self._store = samples.clamp_(max=len(self.cdf) - 1).view(self.rows, self.n_sample)
        self._next = 0

    def state(self) -> dict:
        """Where the draws stand (the store is replaced, never changed, by a refill, so this
        is a snapshot): for a training checkpoint."""
        return {"store": self._store, "next": self._next}

    def set_state(self, state: dict) -> None:
        self._store = state["store"].to(self.device)
        self._next = int(state["next"])

    def draw(self) -> torch.Tensor:
        """(n_sample,) int64 item indices for one mini-batch."""
        if self._next >= len(self._store):
            self._refill()
        sample = self._store[self._next]
        self._next += 1
        return sample

    def draw_many(self, n_batches: int) -> torch.Tensor:
        """(n_batches, n_sample): the samples of ``n_batches`` calls of ``draw``, at once."""
        parts = []
        while n_batches > 0:
            if self._next >= len(self._store):
                self._refill()
            taken = self._store[self._next : self._next + n_batches]
            self._next += len(taken)
            n_batches -= len(taken)
            parts.append(taken)
        return parts[0] if len(parts) == 1 else torch.cat(parts)
