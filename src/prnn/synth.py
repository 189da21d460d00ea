"""Synthetic click logs and item features at any scale, with structure a model can learn.

The generator (``prnn synth``):

- **Items** belong to clusters (``n_items / items_per_cluster`` of them, sizes drawn at random).
  Item popularity follows a power law: the item of popularity rank r is drawn with weight
  ``r ** -popularity_exponent`` (ranks shuffled over the catalogue).
- **Sessions** have ``2 + Geometric(p)`` clicks (mean 2 + (1 - p) / p; 3.9 by default, with
  median 3, like rsc15's 3.95 and 3). The first click's cluster is drawn by cluster popularity;
  each next click stays in the cluster with probability ``stay``, else moves to one of its
  cluster's ``successors`` (a Markov chain over clusters); within a cluster the item is drawn
  by popularity. So the next click depends on the current one, as in real sessions.
- **Timestamps**: sessions start uniformly over ``days`` days, clicks 10 s to 3 min apart.
- **Text** (``text_width`` > 0): sparse TF-IDF-like rows of about ``text_nnz`` non-zeros;
  70% of an item's tokens come from its cluster's own vocabulary (``4 * text_nnz`` tokens),
  the rest from anywhere; rows L2-normalised.
- **Image** (``image_dim`` > 0): a dense vector, its cluster's centroid plus item noise,
  L2-normalised.

Generation runs in chunks of sessions and writes the log as Parquet row groups, so memory is
bounded by the catalogue and one chunk, not by the number of events.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from prnn.atomic import atomic_path, atomic_write_bytes
from prnn.errors import ConfigError
from prnn.features import save_dense_features, save_sparse_features

log = logging.getLogger(__name__)

#: sessions generated at once (bounded memory)
CHUNK_SESSIONS = 200_000


@dataclass(frozen=True)
class SynthSpec:
    """What ``prnn synth`` generates; see the module doc."""

    n_items: int
    n_events: int
    seed: int = 0
    items_per_cluster: int = 50
    popularity_exponent: float = 1.0
    length_p: float = 0.35
    stay: float = 0.6
    successors: int = 3
    days: float = 30.0
    text_width: int = 0
    text_nnz: int = 20
    image_dim: int = 0

    def __post_init__(self) -> None:
        if self.n_items < 2:
            raise ConfigError(f"--items must be at least 2; got {self.n_items}")
        if self.n_events < 2:
            raise ConfigError(f"--events must be at least 2; got {self.n_events}")
        if self.text_width < 0 or self.image_dim < 0:
            raise ConfigError("--text-width and --image-dim must be >= 0")
        if self.text_width and not 1 <= self.text_nnz <= self.text_width:
            raise ConfigError(
                f"--text-nnz must be between 1 and --text-width ({self.text_width}); "
                f"got {self.text_nnz}"
            )
        if not 0 < self.length_p <= 1 or not 0 <= self.stay <= 1:
            raise ConfigError("length_p must be in (0, 1] and stay in [0, 1]")

    @property
    def n_clusters(self) -> int:
        return max(1, self.n_items // self.items_per_cluster)


@dataclass(frozen=True)
class Catalogue:
    cluster: np.ndarray  # (I,) cluster of each item
    popularity: np.ndarray  # (I,) drawing weight
    by_cluster: np.ndarray  # item indices sorted by cluster
    cluster_start: np.ndarray  # (C + 1,) offsets into by_cluster
    cluster_cdf: np.ndarray  # (I,) cumulative weight within each cluster, plus its index
    cluster_weight: np.ndarray  # (C,) share of all draws
    successors: np.ndarray  # (C, successors) next clusters


def make_catalogue(spec: SynthSpec, rng: np.random.Generator) -> Catalogue:
    n, c = spec.n_items, spec.n_clusters
    cluster = rng.integers(0, c, size=n)
    cluster[:c] = np.arange(min(c, n))  # every cluster has an item
    ranks = rng.permutation(n) + 1
    popularity = ranks.astype(np.float64) ** -spec.popularity_exponent
    by_cluster = np.argsort(cluster, kind="stable")
    cluster_start = np.searchsorted(cluster[by_cluster], np.arange(c + 1))
    weights = popularity[by_cluster]
    totals = np.add.reduceat(weights, cluster_start[:-1])
    within = np.cumsum(weights) - np.repeat(np.cumsum(totals) - totals, np.diff(cluster_start))
    # cluster k's items occupy (k, k + 1] of this axis: one searchsorted draws in any cluster
    cluster_cdf = np.repeat(np.arange(c), np.diff(cluster_start)) + within / np.repeat(
        totals, np.diff(cluster_start)
    )
    successors = rng.integers(0, c, size=(c, spec.successors))
    return Catalogue(
        cluster, popularity, by_cluster, cluster_start, cluster_cdf, totals / totals.sum(),
        successors,
    )  # fmt: skip


def _draw_items(catalogue: Catalogue, clusters: np.ndarray, rng: np.random.Generator):
    position = np.searchsorted(catalogue.cluster_cdf, clusters + rng.random(len(clusters)))
    position = np.minimum(position, catalogue.cluster_start[clusters + 1] - 1)
    return catalogue.by_cluster[position]


def session_chunk(
    spec: SynthSpec,
    catalogue: Catalogue,
    n_sessions: int,
    first_session: int,
    rng: np.random.Generator,
):
    """(session ids, item indices, timestamps) of ``n_sessions`` sessions, click by click."""
    lengths = 1 + rng.geometric(spec.length_p, size=n_sessions)
    longest = int(lengths.max())
    clusters = np.searchsorted(np.cumsum(catalogue.cluster_weight), rng.random(n_sessions))
    clusters = np.minimum(clusters, spec.n_clusters - 1)
    items = np.empty((n_sessions, longest), dtype=np.int64)
    for position in range(longest):
        if position:
            move = rng.random(n_sessions) >= spec.stay
            picked = catalogue.successors[clusters, rng.integers(0, spec.successors, n_sessions)]
            clusters = np.where(move, picked, clusters)
        items[:, position] = _draw_items(catalogue, clusters, rng)
    keep = np.arange(longest)[None, :] < lengths[:, None]
    starts = rng.random(n_sessions) * spec.days * 86400.0
    gaps = rng.uniform(10.0, 180.0, size=(n_sessions, longest))
    gaps[:, 0] = 0.0
    times = starts[:, None] + np.cumsum(gaps, axis=1)
    sessions = np.broadcast_to(
        np.arange(first_session, first_session + n_sessions)[:, None], items.shape
    )
    return sessions[keep], items[keep], times[keep]


def text_features(spec: SynthSpec, catalogue: Catalogue, rng) -> sp.csr_matrix:
    n, k, width = spec.n_items, spec.text_nnz, spec.text_width
    topic = rng.integers(0, width, size=(spec.n_clusters, min(width, 4 * k)))
    own = max(1, round(0.7 * k))
    columns = np.concatenate(
        [
            topic[catalogue.cluster[:, None], rng.integers(0, topic.shape[1], size=(n, own))],
            rng.integers(0, width, size=(n, k - own)),
        ],
        axis=1,
    )
    values = rng.uniform(0.5, 1.5, size=columns.shape)
    rows = np.repeat(np.arange(n), columns.shape[1])
    matrix = sp.csr_matrix(
        (values.ravel(), (rows, columns.ravel())), shape=(n, width), dtype=np.float32
    )
    matrix.sum_duplicates()
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1))).ravel()
    return sp.diags(1.0 / np.maximum(norms, 1e-12)).astype(np.float32) @ matrix


def image_features(spec: SynthSpec, catalogue: Catalogue, rng) -> np.ndarray:
    centroids = rng.standard_normal((spec.n_clusters, spec.image_dim))
    vectors = centroids[catalogue.cluster] + 0.6 * rng.standard_normal(
        (spec.n_items, spec.image_dim)
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


def generate(spec: SynthSpec, out_dir: str | os.PathLike, *, progress: bool = False) -> dict:
    """Write ``events.parquet`` (session_id, item_id, timestamp), ``text.npz`` / ``image.npz``
    when asked, and ``synth.json`` (the spec and counts) to ``out_dir``; returns the counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from prnn.progress import progress_bar

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    catalogue = make_catalogue(spec, rng)
    mean_length = 2 + (1 - spec.length_p) / spec.length_p
    schema = pa.schema(
        [("session_id", pa.int64()), ("item_id", pa.int64()), ("timestamp", pa.float64())]
    )
    written = sessions_done = 0
    bar = progress_bar(desc="synth", total=spec.n_events, unit="ev", enabled=progress)
    with atomic_path(out_dir / "events.parquet") as temp:
        with pq.ParquetWriter(temp, schema) as writer:
            while written < spec.n_events:
                left = spec.n_events - written
                n_sessions = int(min(CHUNK_SESSIONS, max(1, left / mean_length)))
                sessions, items, times = session_chunk(
                    spec, catalogue, n_sessions, sessions_done, rng
                )
                if len(items) > left:  # the last chunk: whole sessions up to the count
                    ends = np.flatnonzero(np.diff(sessions, append=-1))
                    cut = ends[ends < left]
                    stop = int(cut[-1]) + 1 if len(cut) else 0
                    if stop < 2:
                        stop = len(items)
                    sessions, items, times = sessions[:stop], items[:stop], times[:stop]
                table = pa.table({"session_id": sessions, "item_id": items, "timestamp": times})
                writer.write_table(table.cast(schema))
                written += len(items)
                sessions_done += n_sessions
                bar.update(len(items))
    bar.close()
    item_ids = np.arange(spec.n_items, dtype=np.int64)
    if spec.text_width:
        save_sparse_features(out_dir / "text.npz", text_features(spec, catalogue, rng), item_ids)
    if spec.image_dim:
        save_dense_features(out_dir / "image.npz", item_ids, image_features(spec, catalogue, rng))
    counts = {"events": int(written), "sessions": int(sessions_done), "items": spec.n_items}
    atomic_write_bytes(
        out_dir / "synth.json", json.dumps({"spec": asdict(spec), **counts}, indent=2).encode()
    )
    return counts
