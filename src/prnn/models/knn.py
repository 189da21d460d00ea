"""Neighbourhood baselines: item-kNN (GRU4Rec paper) and V-SKNN (Ludewig & Jannach 2018).

Both are built on the binary session x item matrix of the training log (a SciPy CSR matrix);
neither learns anything by gradient, and both score from the session history alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from prnn.config import check_choice, check_number
from prnn.data import EventLog
from prnn.models.base import HistoryModel, SessionHistories, select_candidates


def session_item_matrix(events: EventLog, item_index: np.ndarray, n_items: int) -> sp.csr_matrix:
    """(S, I) binary CSR matrix: entry (s, i) is 1 when session s contains item i."""
    rows = events.session_index()
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, item_index)),
        shape=(events.n_sessions, n_items),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def keep_top_per_row(matrix: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Keep the ``n`` largest entries of each row (ties broken by lower column index)."""
    matrix = matrix.tocsr()
    matrix.sum_duplicates()
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    order = np.lexsort((matrix.indices, -matrix.data, rows))
    rank_in_row = np.arange(len(order)) - matrix.indptr[rows[order]]
    kept = order[rank_in_row < n]
    return sp.csr_matrix(
        (matrix.data[kept], (rows[kept], matrix.indices[kept])), shape=matrix.shape
    )


def _csr_to_tensors(prefix: str, matrix: sp.csr_matrix) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.indptr": torch.from_numpy(matrix.indptr.astype(np.int64)),
        f"{prefix}.indices": torch.from_numpy(matrix.indices.astype(np.int64)),
        f"{prefix}.data": torch.from_numpy(matrix.data.astype(np.float32)),
        f"{prefix}.shape": torch.tensor(matrix.shape, dtype=torch.int64),
    }


def _csr_from_tensors(prefix: str, tensors: dict[str, torch.Tensor]) -> sp.csr_matrix:
    shape = tuple(int(v) for v in tensors[f"{prefix}.shape"].tolist())
    return sp.csr_matrix(
        (
            tensors[f"{prefix}.data"].numpy(),
            tensors[f"{prefix}.indices"].numpy(),
            tensors[f"{prefix}.indptr"].numpy(),
        ),
        shape=shape,
    )


# --------------------------------------------------------------------------------------------
# item-kNN
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemKNNConfig:
    n_neighbors: int = 100
    """Most similar items kept per item; the others score 0."""
    regularization: float = 20.0
    """lambda added to both supports, damping similarities of rare items (GRU4Rec's ``lmbd``)."""
    alpha: float = 0.5
    """Exponent split of the normaliser: (supp_i + lambda)^alpha (supp_j + lambda)^(1 - alpha)."""

    def __post_init__(self) -> None:
        check_number(self, "n_neighbors", minimum=1)
        check_number(self, "regularization", minimum=0.0)
        check_number(self, "alpha", minimum=0.0, maximum=1.0)


class ItemKNN(HistoryModel[ItemKNNConfig]):
    """Item-to-item kNN, the baseline of the GRU4Rec and p-RNN papers.

    sim(i, j) = cooc(i, j) / ((supp_i + lambda)^alpha * (supp_j + lambda)^(1 - alpha)), where
    cooc counts the training sessions that contain both items and supp the sessions that contain
    one. With lambda = 0 and alpha = 0.5 this is the cosine of the items' session vectors. A
    session is scored by the similarity of every item to its last item.
    """

    name = "item-knn"
    config_class = ItemKNNConfig

    def _fit(self, events: EventLog, item_index: np.ndarray, *, progress: bool) -> None:
        sessions = session_item_matrix(events, item_index, self.n_items)
        support = np.asarray(sessions.sum(axis=0)).ravel()
        cooccurrence = (sessions.T @ sessions).tocsr()
        cooccurrence.setdiag(0)
        cooccurrence.eliminate_zeros()
        coo = cooccurrence.tocoo()
        lam, alpha = self.config.regularization, self.config.alpha
        norm = np.power(support[coo.row] + lam, alpha) * np.power(support[coo.col] + lam, 1 - alpha)
        similarity = sp.csr_matrix(
            (coo.data / np.where(norm > 0, norm, 1.0), (coo.row, coo.col)), shape=coo.shape
        )
        self.similarity_ = keep_top_per_row(similarity, self.config.n_neighbors)

    def item_similarity(self, item_a: int, item_b: int) -> float:
        """The stored similarity of two item indices (0 when j is not among i's neighbours)."""
        return float(self.similarity_[item_a, item_b])

    def score(
        self, state: SessionHistories, lanes: np.ndarray, candidates: np.ndarray | None = None
    ) -> torch.Tensor:
        histories = [state.items[lane] for lane in np.asarray(lanes).tolist()]
        has_history = np.array([bool(h) for h in histories], dtype=bool)
        last_items = np.array([h[-1] if h else 0 for h in histories], dtype=np.int64)
        rows = self.similarity_[last_items]
        if candidates is not None:
            rows = rows[:, np.asarray(candidates, dtype=np.int64)]
        scores = torch.from_numpy(rows.toarray().astype(np.float32, copy=False))
        scores[torch.from_numpy(~has_history)] = 0.0
        return scores

    def _tensors(self) -> dict[str, torch.Tensor]:
        return _csr_to_tensors("similarity", self.similarity_)

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        self.similarity_ = _csr_from_tensors("similarity", tensors)


# --------------------------------------------------------------------------------------------
# V-SKNN
# --------------------------------------------------------------------------------------------

#: Weight of the item at 1-based position ``p`` of a session of length ``n`` (1 = oldest).
POSITION_WEIGHTS = {
    "same": lambda p, n: 1.0,
    "div": lambda p, n: p / n,
    "linear": lambda p, n: max(0.0, 1.0 - 0.1 * (n - p)),
    "log": lambda p, n: 1.0 / math.log10((n - p) + 1.7),
    "quadratic": lambda p, n: (p / n) ** 2,
}
#: Weight of a neighbour whose latest match with the session is ``step`` clicks back (1 = last).
MATCH_DECAYS = {
    "same": lambda step: 1.0,
    "div": lambda step: 1.0 / step,
    "linear": lambda step: max(0.0, 1.0 - 0.1 * step),
    "log": lambda step: 1.0 / math.log10(step + 1.7),
    "quadratic": lambda step: 1.0 / (step * step),
}


@dataclass(frozen=True)
class VSKNNConfig:
    k: int = 100
    """Neighbour sessions that vote for the next item."""
    sample_size: int = 500
    """Most recent training sessions sharing an item with the session, among which neighbours are
    sought; 0 = all of them."""
    weighting: str = "div"
    """Decay of the session's own items by position when comparing sessions (one of
    POSITION_WEIGHTS): ``div`` gives the item at position p of n the weight p / n."""
    weighting_score: str = "div"
    """Decay of a neighbour's vote by how far back its most recent shared item lies (one of
    MATCH_DECAYS): ``div`` = 1 / steps back."""

    def __post_init__(self) -> None:
        check_number(self, "k", minimum=1)
        check_number(self, "sample_size", minimum=0)
        check_choice(self, "weighting", POSITION_WEIGHTS)
        check_choice(self, "weighting_score", MATCH_DECAYS)


class VSKNN(HistoryModel[VSKNNConfig]):
    """Vector-multiplication session kNN (Ludewig & Jannach 2018, session-rec's ``vsknn``).

    The session is a vector with decaying weights (most recent click weighs 1); its similarity to
    a training session is the weighted count of shared items over the number of distinct items
    in the session. The ``k`` most similar among the ``sample_size`` most recent candidate
    sessions vote for their items with similarity x decay of their latest shared item.
    """

    name = "v-sknn"
    config_class = VSKNNConfig

    def _fit(self, events: EventLog, item_index: np.ndarray, *, progress: bool) -> None:
        self.session_items_ = session_item_matrix(events, item_index, self.n_items)
        self.item_sessions_ = self.session_items_.T.tocsr()
        # Recency of a training session = time of its last event (session-rec's session_time).
        self.session_times_ = events.timestamps[events.session_offsets[1:] - 1].astype(np.float64)

    def _score_one(self, history: list[int]) -> np.ndarray:
        scores = np.zeros(self.n_items, dtype=np.float64)
        if not history:
            return scores
        length = len(history)
        position_weight = POSITION_WEIGHTS[self.config.weighting]
        weights: dict[int, float] = {}
        for position, item in enumerate(history, start=1):
            weights[item] = position_weight(position, length)  # a repeat keeps its latest weight
        distinct = np.fromiter(weights, dtype=np.int64, count=len(weights))
        weight_vector = np.zeros(self.n_items, dtype=np.float64)
        weight_vector[distinct] = np.fromiter(weights.values(), dtype=np.float64)

        item_sessions = self.item_sessions_
        candidate_sessions = np.unique(
            np.concatenate(
                [
                    item_sessions.indices[item_sessions.indptr[i] : item_sessions.indptr[i + 1]]
                    for i in distinct
                ]
            )
        )
        if len(candidate_sessions) == 0:
            return scores
        sample = self.config.sample_size
        if 0 < sample < len(candidate_sessions):
            times = self.session_times_[candidate_sessions]
            # most recent first; among equal times the later session index wins
            order = np.lexsort((-candidate_sessions, -times))
            candidate_sessions = candidate_sessions[order[:sample]]
        rows = self.session_items_[candidate_sessions]
        similarity = rows @ weight_vector / len(distinct)
        positive = similarity > 0
        candidate_sessions, similarity = candidate_sessions[positive], similarity[positive]
        if len(candidate_sessions) == 0:
            return scores
        order = np.lexsort((candidate_sessions, -similarity))[: self.config.k]
        neighbours, similarity = candidate_sessions[order], similarity[order]
        neighbour_rows = self.session_items_[neighbours]

        # steps back to each neighbour's most recent shared item: 1 = the last click
        reversed_history = np.asarray(history[::-1], dtype=np.int64)
        shared = neighbour_rows[:, reversed_history].toarray() > 0  # (k, length)
        steps = shared.argmax(axis=1) + 1
        decay_of = MATCH_DECAYS[self.config.weighting_score]
        decay = np.array([decay_of(int(s)) for s in steps], dtype=np.float64)
        return np.asarray(neighbour_rows.T @ (similarity * decay)).ravel()

    def score(
        self, state: SessionHistories, lanes: np.ndarray, candidates: np.ndarray | None = None
    ) -> torch.Tensor:
        lanes = np.asarray(lanes).tolist()
        rows = np.zeros((len(lanes), self.n_items), dtype=np.float64)
        for row, lane in enumerate(lanes):
            rows[row] = self._score_one(state.items[lane])
        return select_candidates(torch.from_numpy(rows.astype(np.float32)), candidates)

    def _tensors(self) -> dict[str, torch.Tensor]:
        tensors = _csr_to_tensors("session_items", self.session_items_)
        tensors["session_times"] = torch.from_numpy(self.session_times_)
        return tensors

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        self.session_items_ = _csr_from_tensors("session_items", tensors)
        self.item_sessions_ = self.session_items_.T.tocsr()
        self.session_times_ = tensors["session_times"].numpy()


# --------------------------------------------------------------------------------------------
# content-kNN
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContentKNNConfig:
    features: tuple[str, ...] = ()
    """Feature set to compare items by (one name); () = the only one given."""


class ContentKNN(HistoryModel[ContentKNNConfig]):
    """Items ranked by the cosine of their feature vectors to the session's last item.

    A cheap content baseline: no training signal from sessions at all. As in item-kNN, an item
    is not its own neighbour (its self-similarity is set to 0).
    """

    name = "content-knn"
    config_class = ContentKNNConfig
    uses_features = True

    def _fit(self, events, item_index, *, progress, features=None) -> None:
        from prnn.errors import ConfigError
        from prnn.features import align_features

        features = features or {}
        names = list(self.config.features) or list(features)
        if len(names) != 1 or names[0] not in features:
            raise ConfigError(
                f"content-knn compares items by one feature set; given: "
                f"{', '.join(features) or 'none (use --features NAME=PATH)'}"
            )
        aligned = align_features(features[names[0]], self.fitted_vocabulary, name=names[0])
        items = np.arange(self.n_items)
        if aligned.is_sparse:
            rows = aligned.sparse_rows(items).astype(np.float32)
            norms = np.sqrt(np.asarray(rows.multiply(rows).sum(axis=1))).ravel()
            rows = sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ rows
            self.unit_vectors_ = rows.tocsr()
        else:
            rows = aligned.dense_rows(items)
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            self.unit_vectors_ = rows / np.where(norms > 0, norms, 1.0)

    def score(
        self, state: SessionHistories, lanes: np.ndarray, candidates: np.ndarray | None = None
    ) -> torch.Tensor:
        histories = [state.items[lane] for lane in np.asarray(lanes).tolist()]
        last = np.array([h[-1] if h else 0 for h in histories], dtype=np.int64)
        vectors = self.unit_vectors_
        similarity = vectors[last] @ vectors.T
        similarity = similarity.toarray() if sp.issparse(similarity) else similarity
        similarity = np.asarray(similarity, dtype=np.float32)
        similarity[np.arange(len(last)), last] = 0.0
        similarity[[not h for h in histories]] = 0.0
        return select_candidates(torch.from_numpy(similarity), candidates)

    def _tensors(self) -> dict[str, torch.Tensor]:
        if sp.issparse(self.unit_vectors_):
            return _csr_to_tensors("unit_vectors", self.unit_vectors_)
        return {"unit_vectors": torch.from_numpy(np.ascontiguousarray(self.unit_vectors_))}

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        if "unit_vectors" in tensors:
            self.unit_vectors_ = tensors["unit_vectors"].numpy()
        else:
            self.unit_vectors_ = _csr_from_tensors("unit_vectors", tensors)
