"""The recommenders: one explicit name -> class table, used by the CLI and by model loading."""

from prnn.models.base import SessionRecommender
from prnn.models.gru4rec import GRU4Rec, GRU4RecConfig
from prnn.models.knn import VSKNN, ContentKNN, ContentKNNConfig, ItemKNN, ItemKNNConfig, VSKNNConfig
from prnn.models.pop import Pop, PopConfig
from prnn.models.prnn import PRNN, Concat, FeatureModelConfig, FeatureOnly

MODELS: dict[str, type[SessionRecommender]] = {
    Pop.name: Pop,
    ItemKNN.name: ItemKNN,
    VSKNN.name: VSKNN,
    ContentKNN.name: ContentKNN,
    GRU4Rec.name: GRU4Rec,
    FeatureOnly.name: FeatureOnly,
    Concat.name: Concat,
    PRNN.name: PRNN,
}

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
