"""Functions that run eagerly even inside a compiled training step, without importing torch's
compiler before a step compiles.

``torch.compiler.disable`` imports ``torch._dynamo`` when it is applied, which takes about a
second on the development machine: as a decorator it made every ``prnn`` process pay that at
import, although short fits (the default for them) and every command but ``train`` never
compile. ``eager_only`` marks a function the same way, and ``disable_compilation`` applies
``torch.compiler.disable`` to every marked function just before the first ``torch.compile``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

Function = TypeVar("Function", bound=Callable)

#: per marked function, the callable its calls go to: itself, then its disabled version
_TARGETS: list[dict[str, Callable]] = []
_disabled = False


def eager_only(function: Function) -> Function:
    """Marks ``function`` to run eagerly inside compiled code (``torch.compiler.disable``, once
    ``disable_compilation`` has run). Works on methods too."""
    target = {"call": function, "original": function}
    _TARGETS.append(target)
    if _disabled:  # marked after the first compilation
        target["call"] = torch.compiler.disable(function)

    @functools.wraps(function)
    def run(*args, **kwargs):
        return target["call"](*args, **kwargs)

    return run  # type: ignore[return-value]


def disable_compilation() -> None:
    """Makes every ``eager_only`` function a ``torch.compiler.disable`` one; call before
    ``torch.compile`` (idempotent)."""
    global _disabled
    _disabled = True
    for target in _TARGETS:
        if target["call"] is target["original"]:
            target["call"] = torch.compiler.disable(target["original"])
