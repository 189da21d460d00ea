"""The p-RNN training methods as schedules of phases over the network's subnets.

``simultaneous`` (all at once), ``residual`` (subnets in order, each trained for its epochs
with the earlier ones frozen and the later ones not yet in the output), ``alternating`` (one
subnet per epoch, round-robin), ``interleaving`` (one subnet per mini-batch).
"""

from __future__ import annotations

import numpy as np

from prnn.errors import ConfigError
from prnn.network import Phase

TRAINING_METHODS = ("simultaneous", "residual", "alternating", "interleaving")


def training_phase(
    method: str, order: tuple[str, ...], epoch: int, step: int, residual_epochs: tuple[int, ...]
) -> Phase:
    """Which subnets are active and trainable at mini-batch ``step`` of (0-based) ``epoch``.

    Interleaving shifts the round-robin by one every epoch: every epoch has the same
    mini-batches, so without the shift a subnet would only ever learn from the same share of
    them (with two subnets, the same half of the transitions).
    """
    everything = frozenset(order)
    if method == "simultaneous" or len(order) == 1:
        return Phase(everything, everything)
    if method == "alternating":
        return Phase(everything, frozenset({order[epoch % len(order)]}))
    if method == "interleaving":
        return Phase(everything, frozenset({order[(step + epoch) % len(order)]}))
    if method == "residual":
        boundaries = np.cumsum(residual_epochs)
        current = int(np.searchsorted(boundaries, epoch, side="right"))
        current = min(current, len(order) - 1)
        return Phase(frozenset(order[: current + 1]), frozenset({order[current]}))
    raise ConfigError(f"unknown training method {method!r}")


def n_phases(method: str, n_subnets: int) -> int:
    """How many different phases the method goes through (each is a compiled graph)."""
    return 1 if method == "simultaneous" or n_subnets == 1 else n_subnets
