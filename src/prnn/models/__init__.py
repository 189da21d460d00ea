"""The recommenders: ``MODELS`` maps each name of ``prnn.model_registry`` to its class (used by
the CLI and by model loading)."""

from prnn.model_registry import MODEL_NAMES, model_class
from prnn.models.base import SessionRecommender
from prnn.models.gru4rec import GRU4Rec, GRU4RecConfig
from prnn.models.knn import VSKNN, ContentKNN, ContentKNNConfig, ItemKNN, ItemKNNConfig, VSKNNConfig
from prnn.models.pop import Pop, PopConfig
from prnn.models.prnn import PRNN, Concat, FeatureModelConfig, FeatureOnly

MODELS: dict[str, type[SessionRecommender]] = {name: model_class(name) for name in MODEL_NAMES}

__all__ = [
    "MODELS",
    "SessionRecommender",
    "Pop",
    "PopConfig",
    "ItemKNN",
    "ItemKNNConfig",
    "VSKNN",
    "VSKNNConfig",
    "ContentKNN",
    "ContentKNNConfig",
    "GRU4Rec",
    "GRU4RecConfig",
    "FeatureOnly",
    "Concat",
    "PRNN",
    "FeatureModelConfig",
]
