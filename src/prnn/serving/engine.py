"""A saved model as the service scores with it: ids to indices, one step per click, top-k with
filters, and what ``/v1/model`` says about it.

Only the ``SessionRecommender`` interface is used (``new_state``, ``advance``, ``score``), so any
saved prnn model can be served: the neighbourhood models keep a session's clicks as their
state, the recurrent ones a hidden state per layer that each click advances by one GRU step.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prnn import __version__
from prnn.config import config_to_dict
from prnn.errors import ConfigError
from prnn.models import SessionRecommender


def file_checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Recommendation:
    item_id: object
    score: float


def _mask(scores: torch.Tensor, exclude: list[np.ndarray], columns: np.ndarray | None) -> None:
    """Set each row's ``exclude`` items (indices) to -inf; ``columns``: the item index of each
    score column (None: column = item index)."""
    column_of = None if columns is None else {int(i): c for c, i in enumerate(columns.tolist())}
    for row, excluded in enumerate(exclude):
        items = np.asarray(excluded, dtype=np.int64).tolist()
        hit = items if column_of is None else [column_of[i] for i in items if i in column_of]
        if hit:
            scores[row, torch.tensor(hit, dtype=torch.int64)] = -np.inf


class ServedModel:
    """One loaded model file, read-only once loaded (a reload builds a new ``ServedModel``)."""

    def __init__(self, model: SessionRecommender, path: Path | None = None) -> None:
        self.model = model
        self.path = path
        self.checksum = file_checksum(path) if path is not None else None
        self.vocabulary = model.fitted_vocabulary
        self.n_items = len(self.vocabulary)
        # item ids as JSON gives them back: Python str or int
        self._ids = self.vocabulary.item_ids.tolist()

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> ServedModel:
        """The model file at ``path``, moved to ``device`` (recurrent models only: the
        neighbourhood models score on the CPU)."""
        path = Path(path)
        model = SessionRecommender.load(path)
        if torch.device(device).type != "cpu":
            if getattr(model, "network", None) is None:
                raise ConfigError(
                    f"{path}: a {model.name} model scores on the CPU only; serve it without "
                    f"--device {device}"
                )
            model.to(device)
        return cls(model, path)

    # ---- ids --------------------------------------------------------------------------------

    def indices(self, item_ids: list) -> np.ndarray:
        """(N,) vocabulary index of each id (str or int, as JSON gave it); -1 where unknown."""
        if not item_ids:
            return np.zeros(0, dtype=np.int64)
        return self.vocabulary.index(np.array(item_ids, dtype=object))

    def known(self, item_ids: list | None) -> tuple[np.ndarray, list]:
        """(indices of the known ids, the unknown ids), in the order given."""
        item_ids = item_ids or []
        indices = self.indices(item_ids)
        unknown = [item for item, index in zip(item_ids, indices.tolist()) if index < 0]
        return indices[indices >= 0], unknown

    def item_id(self, index: int) -> object:
        return self._ids[index]

    # ---- sessions ---------------------------------------------------------------------------

    def new_state(self, n_lanes: int = 1):
        return self.model.new_state(n_lanes)

    def advance(self, state, lanes: np.ndarray, items: np.ndarray) -> None:
        with torch.inference_mode():
            self.model.advance(state, lanes, items)

    def advance_sequences(self, state, lanes: np.ndarray, sequences: list) -> None:
        """Advance each of ``lanes`` through its sequence of item indices, the lanes side by
        side: one batched step per position (a batch of stateless sessions, or the live
        sessions replayed on a model swapped in). Longest first, so that the lanes still going
        at a position are a prefix: O(total clicks), not sessions x longest session."""
        if not sequences:
            return
        lengths = np.array([len(s) for s in sequences])
        order = np.argsort(-lengths, kind="stable")
        lanes = np.asarray(lanes, dtype=np.int64)[order]
        ordered = [sequences[i] for i in order.tolist()]
        ascending = np.sort(lengths)
        for position in range(int(lengths.max())):
            count = len(lengths) - int(np.searchsorted(ascending, position, side="right"))
            items = np.array([ordered[row][position] for row in range(count)], dtype=np.int64)
            self.advance(state, lanes[:count], items)

    def scoring_work(self) -> float | None:
        """Multiply-adds of scoring one session against all items (None: not a matrix
        product; the neighbourhood models)."""
        network = getattr(self.model, "network", None)
        return network.scoring_work() if hasattr(network, "scoring_work") else None

    def top_k(
        self,
        state,
        lanes: np.ndarray,
        k: int,
        *,
        exclude: list[np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
    ) -> list[list[Recommendation]]:
        """The ``k`` best items for each lane: among ``allowed`` (indices; None = all items),
        without each row's ``exclude`` indices."""
        with torch.inference_mode():
            scores = self.model.score(state, lanes, allowed).float()
            if exclude is not None:
                _mask(scores, exclude, allowed)
            top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        columns = allowed
        results = []
        for values, positions in zip(top.values.tolist(), top.indices.tolist()):
            row = []
            for value, position in zip(values, positions):
                if value == -np.inf:
                    break
                index = int(columns[position]) if columns is not None else position
                row.append(Recommendation(self._ids[index], float(value)))
            results.append(row)
        return results

    def recommend_sessions(
        self,
        sessions: list[np.ndarray],
        k: int,
        *,
        exclude: list[np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
    ) -> list[list[Recommendation]]:
        """Item-to-session recommendations for many sessions at once (known item indices each):
        the sessions advance side by side, one batched step per position."""
        lanes = np.arange(len(sessions), dtype=np.int64)
        state = self.new_state(len(sessions))
        self.advance_sequences(state, lanes, sessions)
        return self.top_k(state, lanes, k, exclude=exclude, allowed=allowed)

    # ---- description ------------------------------------------------------------------------

    def feature_sets(self) -> list[str]:
        network = getattr(self.model, "network", None)
        if network is not None and hasattr(network, "features"):
            return list(network.features)
        return list(getattr(self.model.config, "features", ()) or ())

    def info(self) -> dict:
        return {
            "model": self.model.name,
            "n_items": self.n_items,
            "feature_sets": self.feature_sets(),
            "settings": config_to_dict(self.model.config),
            "prnn_version": __version__,
            "file": str(self.path) if self.path is not None else None,
            "sha256": self.checksum,
        }
