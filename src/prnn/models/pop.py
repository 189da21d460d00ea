"""POP: every session gets the items ranked by their number of training events."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from prnn.data import EventLog
from prnn.models.base import HistoryModel, SessionHistories, select_candidates


@dataclass(frozen=True)
class PopConfig:
    """POP has nothing to set."""


class Pop(HistoryModel[PopConfig]):
    """Training popularity, the same list for every session: the floor every model must beat."""

    name = "pop"
    config_class = PopConfig

    def _fit(self, events: EventLog, item_index: np.ndarray, *, progress: bool) -> None:
        self.popularity_ = torch.from_numpy(self.fitted_vocabulary.counts.astype(np.float32))

    def score(
        self, state: SessionHistories, lanes: np.ndarray, candidates: np.ndarray | None = None
    ) -> torch.Tensor:
        row = select_candidates(self.popularity_[None, :], candidates)
        return row.expand(len(lanes), -1)

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        self.popularity_ = torch.from_numpy(self.fitted_vocabulary.counts.astype(np.float32))
