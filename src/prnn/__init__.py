"""prnn: session-based recommendation with item features (GRU4Rec and parallel RNNs)."""

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

__version__ = "0.1.0"


def load_model(path) -> SessionRecommender:
    """Load any saved prnn model."""
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
