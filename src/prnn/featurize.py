"""Turning item content into feature matrices: TF-IDF word n-grams of item text.

The p-RNN paper's text features: title and description concatenated, word bi-grams, TF-IDF
weighted, kept sparse (1.1M dimensions, 5.44 non-zeros per item on average).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from prnn.errors import DataError


@dataclass(frozen=True)
class TextFeatures:
    values: sp.csr_matrix
    item_ids: np.ndarray
    vocabulary: np.ndarray

    @property
    def mean_nonzeros(self) -> float:
        return float(self.values.getnnz(axis=1).mean()) if self.values.shape[0] else 0.0


def read_item_table(path: str | os.PathLike, id_col: str, text_cols: list[str]) -> pl.DataFrame:
    """Item id and text columns of a CSV/TSV (maybe gzipped) or Parquet item table."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such item file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pl.read_parquet(path)
        else:
            opener = __import__("gzip").open if path.name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
                header = handle.readline()
            table = pl.read_csv(path, separator="\t" if "\t" in header else ",", infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path}: cannot be read ({str(exc).splitlines()[0]})") from None
    missing = [c for c in [id_col, *text_cols] if c not in table.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(map(repr, missing))} "
            f"(found columns: {', '.join(table.columns)})"
        )
    if table[id_col].null_count():
        row = int(table[id_col].is_null().arg_true()[0])
        raise DataError(f"{path} line {row + 2}, column {id_col!r}: missing item id")
    return table.select([id_col, *text_cols])


def tfidf_text_features(
    table: pl.DataFrame,
    id_col: str,
    text_cols: list[str],
    *,
    ngram_range: tuple[int, int] = (2, 2),
    min_df: int = 1,
    max_features: int | None = None,
    sublinear_tf: bool = False,
) -> TextFeatures:
    """TF-IDF of word n-grams of the concatenated text columns (scikit-learn's vectorizer)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = (
        table.select(
            pl.concat_str(
                [pl.col(c).cast(pl.String).fill_null("") for c in text_cols], separator=" "
            )
        )
        .to_series()
        .to_list()
    )
    vectorizer = TfidfVectorizer(
        ngram_range=ngram_range,
        min_df=min_df,
        max_features=max_features,
        sublinear_tf=sublinear_tf,
        dtype=np.float32,
    )
    try:
        values = vectorizer.fit_transform(texts)
    except ValueError as exc:  # e.g. an empty vocabulary
        raise DataError(f"TF-IDF failed: {exc}") from None
    ids = table[id_col].to_numpy()
    item_ids = np.asarray(ids, dtype=str) if ids.dtype == object else ids
    return TextFeatures(
        values=values.tocsr(),
        item_ids=item_ids,
        vocabulary=np.asarray(vectorizer.get_feature_names_out(), dtype=str),
    )
