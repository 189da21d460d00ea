"""Item features: reading dense and sparse feature matrices, and aligning them to a vocabulary.

A feature matrix has one row per item id: dense vectors (image embeddings, CLIP vectors) or a
sparse CSR matrix (TF-IDF text). Models look features up by item index, so a matrix is aligned
to the model's ``Vocabulary`` once: items without features get a zero row (counted), feature
rows of items the model does not know are ignored (counted). Dense ``.npy`` files are
memory-mapped and rows are gathered on demand; sparse input stays sparse.

File formats:
- ``.npz`` with ``item_id`` and one 2-D array (e.g. ``emb``), or with the CSR arrays written by
  ``scipy.sparse.save_npz`` (``data``, ``indices``, ``indptr``, ``shape``) plus ``item_id``;
- ``.npy`` (a 2-D array, memory-mapped) with its ids in ``<name>.item_id.npy`` beside it;
- Parquet with an ``item_id`` column and either one list column or numeric columns.

A file with another extension (or none) is recognised by its first bytes. prnn writes ``.npz``
files, and, as ``numpy.savez`` does, adds ``.npz`` to a path that does not end in it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from prnn.data import Vocabulary
from prnn.errors import DataError

log = logging.getLogger(__name__)

ID_KEYS = ("item_id", "item_ids", "ItemId")
_CSR_KEYS = {"data", "indices", "indptr", "shape"}
#: below this share of the model's items with a feature row, aligning warns (ids mismatched?)
LOW_COVERAGE = 0.5
#: the first bytes of each format, for files whose extension does not say it
_MAGIC = ((b"PK\x03\x04", ".npz"), (b"\x93NUMPY", ".npy"), (b"PAR1", ".parquet"))


class _FeatureValues:
    """Shape facts of a class holding its feature rows in ``values`` (dense or CSR)."""

    values: np.ndarray | sp.csr_matrix

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.values)

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])


@dataclass(frozen=True)
class FeatureMatrix(_FeatureValues):
    """Feature rows keyed by item id, as read from disk.

    Attributes:
        item_ids: (N,) ids of the rows (int64 or str), unique.
        values: (N, D) dense array (possibly a read-only memory map) or CSR matrix.
        source: the file, for messages.
    """

    item_ids: np.ndarray
    values: np.ndarray | sp.csr_matrix
    source: str = "<memory>"

    def __post_init__(self) -> None:
        if self.values.ndim != 2:
            raise DataError(
                f"{self.source}: features must be a 2-D matrix; got {self.values.ndim}-D"
            )
        if len(self.item_ids) != self.values.shape[0]:
            raise DataError(
                f"{self.source}: {len(self.item_ids)} item ids for {self.values.shape[0]} "
                "feature rows; expected one id per row"
            )
        unique, counts = np.unique(self.item_ids, return_counts=True)
        if len(unique) != len(self.item_ids):
            duplicate = unique[counts > 1][0].item()
            raise DataError(f"{self.source}: item id {duplicate!r} has more than one feature row")
        dtype = self.values.dtype
        if dtype.kind not in "fiu":
            raise DataError(f"{self.source}: features must be numbers; got dtype {dtype}")
        if self.values.shape[1] == 0:
            raise DataError(f"{self.source}: feature vectors have no columns")
        if sp.issparse(self.values):
            if self.values.nnz and not np.isfinite(self.values.data).all():
                raise DataError(f"{self.source}: features contain NaN or infinite values")
            indices = self.values.tocsr().indices
            if len(indices) and (indices.min() < 0 or indices.max() >= self.values.shape[1]):
                raise DataError(
                    f"{self.source}: sparse column indices fall outside the "
                    f"{self.values.shape[1]} columns"
                )


def _ids_from(array: np.ndarray, source: str) -> np.ndarray:
    if array.ndim != 1:
        raise DataError(f"{source}: item ids must be a 1-D array; got shape {array.shape}")
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    if array.dtype.kind in "US":
        return array.astype(str)
    raise DataError(f"{source}: item ids must be integers or strings; got dtype {array.dtype}")


def _read_npz(path: Path) -> FeatureMatrix:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            id_key = next((k for k in ID_KEYS if k in keys), None)
            if id_key is None:
                raise DataError(
                    f"{path}: no item id array (expected one of {', '.join(ID_KEYS)}; "
                    f"found {', '.join(sorted(keys))})"
                )
            item_ids = _ids_from(archive[id_key], str(path))
            if _CSR_KEYS <= keys:
                layout = archive["format"].item() if "format" in keys else "csr"
                layout = layout.decode() if isinstance(layout, bytes) else str(layout)
                if layout not in ("csr", "csc"):
                    raise DataError(f"{path}: sparse format {layout!r}; expected csr or csc")
                build = sp.csr_matrix if layout == "csr" else sp.csc_matrix
                shape = tuple(int(v) for v in archive["shape"])
                values = build(
                    (archive["data"], archive["indices"], archive["indptr"]), shape=shape
                ).tocsr()
            else:
                matrices = [k for k in sorted(keys - {id_key}) if archive[k].ndim == 2]
                if len(matrices) != 1:
                    raise DataError(
                        f"{path}: expected exactly one 2-D feature array beside {id_key!r}; "
                        f"found {matrices or 'none'}"
                    )
                values = archive[matrices[0]]
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as exc:  # corrupt zip, pickled objects, bad CSR
        raise DataError(f"{path}: cannot be read as a feature .npz ({exc})") from None
    return FeatureMatrix(item_ids, values, str(path))


def _read_npy(path: Path) -> FeatureMatrix:
    ids_path = path.with_name(path.name.removesuffix(".npy") + ".item_id.npy")
    if not ids_path.exists():
        raise DataError(f"{path}: its item ids are missing; expected them in {ids_path}")
    try:
        values = np.load(path, mmap_mode="r", allow_pickle=False)
        item_ids = np.load(ids_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as .npy ({exc})") from None
    return FeatureMatrix(_ids_from(item_ids, str(ids_path)), values, str(path))


def _read_parquet(path: Path) -> FeatureMatrix:
    try:
        table = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path}: cannot be read as Parquet ({exc})") from None
    id_key = next((k for k in ID_KEYS if k in table.columns), None)
    if id_key is None:
        raise DataError(f"{path}: no item id column (expected one of {', '.join(ID_KEYS)})")
    rest = [c for c in table.columns if c != id_key]
    list_columns = [c for c in rest if isinstance(table[c].dtype, pl.List | pl.Array)]
    if len(list_columns) == 1:
        if table[list_columns[0]].null_count():
            row = int(table[list_columns[0]].is_null().arg_true()[0])
            raise DataError(f"{path} row {row + 1}, column {list_columns[0]!r}: missing vector")
        lengths = table[list_columns[0]].list.len()
        if lengths.n_unique() != 1:
            raise DataError(f"{path}: vectors in {list_columns[0]!r} differ in length")
        values = np.stack(table[list_columns[0]].to_list()).astype(np.float32)
    else:
        values = table.select(rest).to_numpy()
    ids = table[id_key].to_numpy()
    return FeatureMatrix(
        _ids_from(np.asarray(ids, dtype=str if ids.dtype == object else None), str(path)),
        values,
        str(path),
    )


def feature_file_path(path: str | os.PathLike) -> Path:
    """The path prnn writes a feature file to: ``path``, with ``.npz`` added unless it ends so."""
    path = Path(path)
    return path if path.suffix.lower() == ".npz" else path.with_name(path.name + ".npz")


def _format_of(path: Path) -> str:
    """The file's format as an extension: from its name, else from its first bytes."""
    suffix = path.suffix.lower()
    if suffix in (".npz", ".npy", ".parquet"):
        return suffix
    if suffix == ".pq":
        return ".parquet"
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise DataError(f"{path}: cannot read feature file ({exc.strerror})") from None
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    raise DataError(
        f"{path}: unknown feature file type; expected .npz, .npy or .parquet (by extension or "
        "content)"
    )


def read_features(path: str | os.PathLike) -> FeatureMatrix:
    """Read a feature matrix from ``.npz``, ``.npy`` (+ ids) or Parquet; see the module doc."""
    path = Path(path)
    if not path.is_file():
        written = feature_file_path(path)
        hint = f"; did you mean {written} (prnn features adds .npz)?" if written.is_file() else ""
        raise DataError(f"{path}: no such feature file{hint}")
    kind = _format_of(path)
    if kind == ".npz":
        features = _read_npz(path)
    elif kind == ".npy":
        features = _read_npy(path)
    else:
        features = _read_parquet(path)
    if not features.is_sparse and features.values.dtype.kind == "f":
        if not np.isfinite(features.values).all():
            raise DataError(f"{path}: features contain NaN or infinite values")
    return features


@dataclass(frozen=True)
class AlignedFeatures(_FeatureValues):
    """A feature matrix addressed by a model's item indices.

    Attributes:
        name: the feature set's name (``image``, ``text``, ...).
        values: the feature rows as read (dense array, memory map, or CSR).
        source_row: (I,) int64 row of ``values`` for each item index; for items without
            features -1 (dense) or the index of an empty last row appended to a sparse set.
        normalize: scale each dense row to unit L2 norm when it is looked up.
        n_missing: vocabulary items without a feature row.
        n_unused: feature rows of items outside the vocabulary.
    """

    name: str
    values: np.ndarray | sp.csr_matrix
    source_row: np.ndarray
    normalize: bool
    n_missing: int
    n_unused: int

    def dense_rows(self, items: np.ndarray) -> np.ndarray:
        """(len(items), D) float32 feature rows of item indices; zeros for missing features."""
        if self.is_sparse:
            out = self.sparse_rows(items).toarray().astype(np.float32)
        else:
            rows = self.source_row[np.asarray(items, dtype=np.int64)]
            out = np.zeros((len(rows), self.dim), dtype=np.float32)
            present = rows >= 0
            out[present] = self.values[rows[present]]
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.where(norms > 0, norms, 1.0)
        return out

    def sparse_rows(self, items: np.ndarray) -> sp.csr_matrix:
        """(len(items), D) CSR rows of item indices (sparse feature sets only)."""
        if not self.is_sparse:
            raise DataError(f"feature set {self.name!r} is dense; use dense_rows")
        # a sparse set's last row is empty: items without features point at it
        return self.values[self.source_row[np.asarray(items, dtype=np.int64)]]


def align_features(
    features: FeatureMatrix, vocabulary: Vocabulary, *, name: str, normalize: bool = False
) -> AlignedFeatures:
    """Address ``features`` by ``vocabulary`` index; missing and unused rows are counted."""
    feature_index = vocabulary.index(features.item_ids)
    source_row = np.full(len(vocabulary), -1, dtype=np.int64)
    known = feature_index >= 0
    source_row[feature_index[known]] = np.flatnonzero(known)
    n_missing = int((source_row < 0).sum())
    n_unused = int((~known).sum())
    ids_hint = (
        f"do the ids match (features: {features.item_ids[:3].tolist()}, events: "
        f"{vocabulary.item_ids[:3].tolist()})?"
    )
    if n_missing == len(vocabulary):
        raise DataError(f"{features.source}: no item of the event log has features; {ids_hint}")
    n_covered = len(vocabulary) - n_missing
    if n_covered < LOW_COVERAGE * len(vocabulary):
        # a warning, not info: -q hides info, and a model mostly without features is worth
        # knowing about before its results are
        log.warning(
            "feature set %r (%s): only %d of the %d items of the event log (%.1f%%) have "
            "features, the others get zero rows; %s",
            name,
            features.source,
            n_covered,
            len(vocabulary),
            100 * n_covered / len(vocabulary),
            ids_hint,
        )
    elif n_missing:
        log.info(
            "feature set %r: %d of %d items have no features (zero rows)",
            name,
            n_missing,
            len(vocabulary),
        )
    if n_unused:
        log.info("feature set %r: ignored %d rows of items not in the event log", name, n_unused)
    values = features.values
    if features.is_sparse:
        values = sp.vstack([values.tocsr(), sp.csr_matrix((1, features.dim), dtype=values.dtype)])
        source_row[source_row < 0] = values.shape[0] - 1
        values = values.tocsr()
    return AlignedFeatures(name, values, source_row, normalize, n_missing, n_unused)


def _write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` as a compressed ``.npz``, atomically; returns the path written."""
    import io

    from prnn.atomic import atomic_write_bytes

    path = feature_file_path(path)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def save_dense_features(path: str | os.PathLike, item_ids: np.ndarray, values: np.ndarray) -> Path:
    """Write dense feature rows as ``.npz`` (``item_id``, ``emb``); returns the path written
    (``path``, with ``.npz`` added unless it ends so)."""
    return _write_npz(path, {"item_id": np.asarray(item_ids), "emb": np.asarray(values)})


def save_sparse_features(
    path: str | os.PathLike,
    values: sp.csr_matrix,
    item_ids: np.ndarray,
    vocabulary: np.ndarray | None = None,
) -> Path:
    """Write a CSR feature matrix as ``.npz`` (scipy's CSR arrays + ``item_id`` [+ vocabulary]);
    returns the path written (``path``, with ``.npz`` added unless it ends so)."""
    values = values.tocsr()
    arrays = {
        "data": values.data.astype(np.float32),
        "indices": values.indices,
        "indptr": values.indptr,
        "shape": np.array(values.shape, dtype=np.int64),
        "format": np.array("csr"),
        "item_id": np.asarray(item_ids),
    }
    if vocabulary is not None:
        arrays["vocabulary"] = np.asarray(vocabulary, dtype=str)
    return _write_npz(path, arrays)
