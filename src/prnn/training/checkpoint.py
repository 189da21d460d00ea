"""Crash-safe training: the whole training state in one file, written atomically, and resumed.

A checkpoint holds what the next step needs to run exactly as it would have without the
interruption: the trained tensors, the optimiser's buffers, where the random draws stand (the
shared generator, the dropout generator and the negative sampler's store, as they were before
the next chunk of steps was planned), the position (epoch and step), the lanes' hidden states
and the epoch's loss so far, the reports of the finished epochs and early stopping's best
epoch. It is written at the end of every epoch and, with ``every_minutes``, at the first chunk
boundary after that many minutes; always to a temporary file that then replaces the previous
checkpoint, so a kill leaves the last complete one.

Each checkpoint carries the identity of its training: the model kind, its settings, a
fingerprint of the training events and the shapes of the trained tensors. Resuming with a
different one is refused with a message that names what differs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prnn.atomic import atomic_path
from prnn.errors import ConfigError
from prnn.file_kinds import checkpoint_path

__all__ = [
    "CheckpointError",
    "Checkpointing",
    "checkpoint_path",
    "load_for_resume",
    "read_checkpoint",
    "save_checkpoint",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


class CheckpointError(ConfigError):
    """A checkpoint that cannot be resumed: unreadable, or from another training."""


@dataclass
class Checkpointing:
    """Where and how often the training loop saves its state, and whether it resumes.

    Attributes:
        path: the checkpoint file (``checkpoint_path(model_path)`` puts it beside the model).
        every_minutes: also save at the first chunk boundary (256 steps) after this many
            minutes since the last save; None: at the end of each epoch only.
        resume: continue from ``path`` when it exists (else start from the beginning).
        identity: what the training is (set by the model: kind, settings, data fingerprint,
            tensor shapes); a checkpoint of another identity is refused.
    """

    path: Path
    every_minutes: float | None = None
    resume: bool = False
    identity: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.every_minutes is not None and not self.every_minutes > 0:
            raise ConfigError(
                f"checkpoint every_minutes must be > 0 minutes; got {self.every_minutes!r}"
            )


def events_fingerprint(session_offsets: np.ndarray, item_index: np.ndarray, order: np.ndarray):
    """sha256 of what the schedule is made from: sessions, their items, their order."""
    digest = hashlib.sha256()
    for array in (session_offsets, item_index, order):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    found = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "(absent)"), current.get(key, "(absent)")
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: checkpoint {a!r}, now {b!r}")
    return found


def identity_differences(saved: dict, current: dict) -> list[str]:
    """What differs between two training identities, most telling first: the model kind, then
    its settings, then the data, then (only when all those agree: other feature files) the
    shapes of the tensors."""
    for key in ("model", "settings", "data", "tensors"):
        a, b = saved.get(key), current.get(key)
        if a == b:
            continue
        if key == "data":
            return ["the training events differ (another file, filter or split)"]
        if isinstance(a, dict) and isinstance(b, dict):
            prefix = "tensor shape " if key == "tensors" else ""
            return _differences(a, b, prefix)
        return [f"{key}: checkpoint {a!r}, now {b!r}"]
    return []


def save_checkpoint(checkpointing: Checkpointing, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists and dicts of them) atomically."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "identity": json.dumps(checkpointing.identity, sort_keys=True),
        **state,
    }
    with atomic_path(checkpointing.path) as temp:
        torch.save(payload, temp)
    log.info(
        "checkpoint: epoch %d, step %d -> %s",
        state["epoch"],
        state["step"],
        checkpointing.path,
    )


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint at ``path`` as saved (CheckpointError when it is not one)."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same answer
        raise CheckpointError(
            f"{path}: not a readable prnn training checkpoint ({type(error).__name__}); "
            "delete it to train from the start"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a prnn training checkpoint of format 1")
    return payload


def load_for_resume(checkpointing: Checkpointing) -> dict[str, Any] | None:
    """The checkpoint to resume from (None: there is none, start from the beginning); refused
    when it belongs to another training."""
    if not checkpointing.resume:
        return None
    if not checkpointing.path.exists():
        log.warning("no checkpoint at %s: training from the start", checkpointing.path)
        return None
    payload = read_checkpoint(checkpointing.path)
    saved = json.loads(payload["identity"])
    current = json.loads(json.dumps(checkpointing.identity, sort_keys=True))
    differences = identity_differences(saved, current)
    if differences:
        raise CheckpointError(
            f"{checkpointing.path} is the checkpoint of another training: "
            + "; ".join(differences[:6])
            + (f" (and {len(differences) - 6} more)" if len(differences) > 6 else "")
            + ". Resume with the same command, or delete it to start anew"
        )
    log.info(
        "resuming from %s: epoch %d, step %d",
        checkpointing.path,
        payload["epoch"],
        payload["step"],
    )
    return payload
