"""The recommenders by name: the one table behind ``prnn.models.MODELS``, the command line's
``--model`` choices and model loading, readable without importing any model (or PyTorch)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelEntry:
    """Where a recommender lives and what it is, in one line."""

    module: str
    class_name: str
    summary: str
    trains_by_epochs: bool = False
    uses_features: bool = False


MODEL_ENTRIES: dict[str, ModelEntry] = {
    "pop": ModelEntry("prnn.models.pop", "Pop", "the most clicked items (baseline)"),
    "item-knn": ModelEntry(
        "prnn.models.knn", "ItemKNN", "items co-clicked with the last one (cosine)"
    ),
    "v-sknn": ModelEntry(
        "prnn.models.knn", "VSKNN", "items of similar past sessions, recent clicks weighted more"
    ),
    "content-knn": ModelEntry(
        "prnn.models.knn",
        "ContentKNN",
        "items whose features are closest to the last one's",
        uses_features=True,
    ),
    "gru4rec": ModelEntry(
        "prnn.models.gru4rec", "GRU4Rec", "GRU over the item IDs", trains_by_epochs=True
    ),
    "feature-only": ModelEntry(
        "prnn.models.prnn",
        "FeatureOnly",
        "GRU over item features only",
        trains_by_epochs=True,
        uses_features=True,
    ),
    "concat": ModelEntry(
        "prnn.models.prnn",
        "Concat",
        "one GRU over the ID and the features concatenated",
        trains_by_epochs=True,
        uses_features=True,
    ),
    "prnn": ModelEntry(
        "prnn.models.prnn",
        "PRNN",
        "parallel RNN: a GRU subnet per feature set beside the ID's",
        trains_by_epochs=True,
        uses_features=True,
    ),
}

MODEL_NAMES = tuple(MODEL_ENTRIES)


def model_class(name: str) -> type:
    """The recommender class registered as ``name`` (imports its module)."""
    entry = MODEL_ENTRIES[name]
    return getattr(importlib.import_module(entry.module), entry.class_name)
