"""The past steps that truncated back-propagation through time reaches (``bptt`` > 1).

With ``bptt=k`` each training step back-propagates its loss through the last k steps of every
lane, not only its own (``bptt=1``, GRU4Rec's one-step truncation). The window keeps the k - 1
steps before the current one as their forward passes left them (Williams and Peng's truncated
BPTT: the activations are those of the step's own forward pass; the gradient flows through
them with the current weights). Lanes change between steps: a lane whose session ends starts
the next session from a zero state, which cuts its chain, and lanes are dropped when sessions
run out. Each kept step records how its lanes map to those of the step before it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch

from prnn.network.step import StepBatch


@dataclass
class LaneMap:
    """How the lanes of one step continue the lanes of the step before it."""

    positions: torch.Tensor | None = None
    """(B,) each lane's index among the previous step's lanes; None = the same lanes."""
    carried: torch.Tensor | None = None
    """(B,) 1.0 where the lane carries the previous state on, 0.0 where a new session
    started from a zero state; None = every lane carries it on."""

    def to_previous(self, grad: torch.Tensor, n_previous: int) -> torch.Tensor:
        """``grad`` w.r.t. this step's starting states, as the gradient w.r.t. the previous
        step's (n_previous, H) output states."""
        if self.carried is not None:
            grad = grad * self.carried[:, None]
        if self.positions is None:
            return grad
        return grad.new_zeros(n_previous, grad.shape[1]).index_copy(0, self.positions, grad)


@dataclass
class PastStep:
    step: StepBatch
    caches: dict[str, tuple[list, torch.Tensor | None]]
    """By subnet name: (its layers' caches, its dense input's dropout mask). Subnets not in the
    output at that step are absent: their chain stops there."""
    lanes: LaneMap
    """From the step before this one to this one."""


class BackpropWindow:
    """The last ``steps - 1`` training steps, for back-propagation through ``steps`` steps."""

    def __init__(self, steps: int) -> None:
        if steps < 2:
            raise ValueError("a back-propagation window needs at least 2 steps")
        self.steps = steps
        self.past: deque[PastStep] = deque(maxlen=steps - 1)
        self.lanes = LaneMap()
        """From the newest past step to the current one."""

    def clear(self) -> None:
        """Forget every past step (a new epoch starts every lane afresh)."""
        self.past.clear()
        self.lanes = LaneMap()

    def lanes_changed(self, changes, n_lanes: int) -> None:
        """Record the lane changes before the current step: ``(reset, keep)`` pairs as the
        training loop applies them (reset lanes start from zero, then only ``keep`` lanes stay;
        either may be None) to ``n_lanes`` lanes."""
        device = self.past[-1].step.inputs.device if self.past else None
        positions = None  # the same lanes until some are dropped
        carried = torch.ones(n_lanes, device=device)
        for reset, keep in changes:
            if reset is not None:
                carried = carried.index_fill(0, reset, 0.0)
            if keep is not None:
                if positions is None:
                    positions = torch.arange(len(carried), device=device)
                positions, carried = positions[keep], carried[keep]
        if not bool(carried.any()):  # every lane starts afresh: nothing to reach back to
            self.clear()
            return
        self.lanes = LaneMap(positions, carried)

    def push(self, step: StepBatch, caches: dict[str, tuple[list, torch.Tensor | None]]) -> None:
        """Keep the step just trained (dropping the oldest beyond the window)."""
        self.past.append(PastStep(step, caches, self.lanes))
        self.lanes = LaneMap()
