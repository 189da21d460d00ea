"""prnn: session-based recommendation with item features (GRU4Rec and parallel RNNs).

The public names below are imported on first use (PEP 562), so that ``import prnn``, and with
it the command line's ``--help`` and argument errors, does not pay for PyTorch, Polars and
SciPy before a command needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "EventLog": "prnn.data",
    "Vocabulary": "prnn.data",
    "read_events": "prnn.data",
    "split_by_time": "prnn.data",
    "write_events": "prnn.data",
    "ConfigError": "prnn.errors",
    "DataError": "prnn.errors",
    "DataWarning": "prnn.errors",
    "ModelFormatError": "prnn.errors",
    "NotFittedError": "prnn.errors",
    "PrnnError": "prnn.errors",
    "TrainingError": "prnn.errors",
    "EvaluationResult": "prnn.evaluation",
    "evaluate": "prnn.evaluation",
    "target_ranks": "prnn.evaluation",
    "MODELS": "prnn.models",
    "VSKNN": "prnn.models",
    "ItemKNN": "prnn.models",
    "Pop": "prnn.models",
    "SessionRecommender": "prnn.models",
}

#: submodules reachable as attributes (``prnn.evaluation.validation``) without importing them
_SUBMODULES = frozenset(
    {"data", "errors", "evaluation", "features", "models", "network", "threads", "training"}
)

if TYPE_CHECKING:  # for type checkers and IDEs: the names as if imported eagerly
    from prnn.data import EventLog, Vocabulary, read_events, split_by_time, write_events
    from prnn.errors import (
        ConfigError,
        DataError,
        DataWarning,
        ModelFormatError,
        NotFittedError,
        PrnnError,
        TrainingError,
    )
    from prnn.evaluation import EvaluationResult, evaluate, target_ranks
    from prnn.models import MODELS, VSKNN, ItemKNN, Pop, SessionRecommender


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"prnn.{name}")
    else:
        raise AttributeError(f"module 'prnn' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})


def load_model(path) -> SessionRecommender:
    """Load any saved prnn model."""
    from prnn.models import SessionRecommender

    return SessionRecommender.load(path)


__all__ = [
    "MODELS",
    "ConfigError",
    "DataError",
    "DataWarning",
    "EvaluationResult",
    "EventLog",
    "ItemKNN",
    "ModelFormatError",
    "NotFittedError",
    "Pop",
    "PrnnError",
    "SessionRecommender",
    "TrainingError",
    "VSKNN",
    "Vocabulary",
    "evaluate",
    "load_model",
    "read_events",
    "split_by_time",
    "target_ranks",
    "write_events",
]
