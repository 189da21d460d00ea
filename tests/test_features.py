"""Feature files, their alignment to a vocabulary, and TF-IDF text features."""

from __future__ import annotations

import logging
import math

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from prnn.cli import main
from prnn.data import Vocabulary
from prnn.errors import DataError
from prnn.features import (
    FeatureMatrix,
    align_features,
    read_features,
    save_dense_features,
    save_sparse_features,
)
from prnn.featurize import read_item_table, tfidf_text_features

from .conftest import SHARED_DATA

VOCABULARY = Vocabulary(item_ids=np.array(["a", "b", "c", "d"]), counts=np.ones(4, dtype=np.int64))


def test_dense_npz_is_aligned_with_missing_and_unused_rows_counted(tmp_path):
    np.savez(
        tmp_path / "f.npz",
        item_id=np.array(["c", "a", "zz"]),
        emb=np.array([[3.0, 4.0], [1.0, 0.0], [9.0, 9.0]], dtype=np.float16),
    )
    aligned = align_features(read_features(tmp_path / "f.npz"), VOCABULARY, name="image")
    assert (aligned.n_missing, aligned.n_unused) == (2, 1)
    rows = aligned.dense_rows(np.array([0, 1, 2, 3]))
    assert rows.tolist() == [[1.0, 0.0], [0.0, 0.0], [3.0, 4.0], [0.0, 0.0]]
    normalized = align_features(
        read_features(tmp_path / "f.npz"), VOCABULARY, name="image", normalize=True
    )
    assert normalized.dense_rows(np.array([2]))[0] == pytest.approx([0.6, 0.8])


def test_npy_is_memory_mapped_with_ids_beside_it(tmp_path):
    np.save(tmp_path / "vectors.npy", np.arange(8, dtype=np.float32).reshape(4, 2))
    np.save(tmp_path / "vectors.item_id.npy", np.array(["d", "c", "b", "a"]))
    features = read_features(tmp_path / "vectors.npy")
    assert isinstance(features.values, np.memmap)
    aligned = align_features(features, VOCABULARY, name="v")
    assert aligned.dense_rows(np.array([0]))[0].tolist() == [6.0, 7.0]
    (tmp_path / "vectors.item_id.npy").unlink()
    with pytest.raises(
        DataError, match=r"item ids are missing; expected them in .*vectors.item_id"
    ):
        read_features(tmp_path / "vectors.npy")


def test_parquet_with_a_vector_column_or_numeric_columns(tmp_path):
    pl.DataFrame({"item_id": ["a", "b"], "vec": [[1.0, 2.0], [3.0, 4.0]]}).write_parquet(
        tmp_path / "list.parquet"
    )
    pl.DataFrame({"item_id": ["a", "b"], "x": [1.0, 3.0], "y": [2.0, 4.0]}).write_parquet(
        tmp_path / "cols.parquet"
    )
    for name in ("list.parquet", "cols.parquet"):
        features = read_features(tmp_path / name)
        assert features.values.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_sparse_round_trip_keeps_missing_rows_empty(tmp_path):
    matrix = sp.csr_matrix(np.array([[0, 2.0, 0, 0], [1.0, 0, 0, 3.0]], dtype=np.float32))
    save_sparse_features(tmp_path / "t.npz", matrix, np.array(["b", "d"]), np.array(list("wxyz")))
    features = read_features(tmp_path / "t.npz")
    assert features.is_sparse and features.dim == 4
    aligned = align_features(features, VOCABULARY, name="text")
    rows = aligned.sparse_rows(np.array([0, 1, 3, 1]))
    assert sp.issparse(rows)
    assert rows.toarray().tolist() == [[0, 0, 0, 0], [0, 2, 0, 0], [1, 0, 0, 3], [0, 2, 0, 0]]
    assert rows.getnnz(axis=1).tolist() == [0, 1, 2, 1]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"emb": np.zeros((2, 3))}, "no item id array"),
        ({"item_id": np.array(["a", "a"]), "emb": np.zeros((2, 3))}, "'a' has more than one"),
        ({"item_id": np.array(["a"]), "emb": np.zeros((2, 3))}, "1 item ids for 2 feature rows"),
        ({"item_id": np.array(["a", "b"]), "emb": np.array([[0.0], [np.nan]])}, "NaN"),
        (
            {"item_id": np.array(["a", "b"]), "x": np.zeros((2, 3)), "y": np.zeros((2, 3))},
            "exactly one 2-D feature array",
        ),
        ({"item_id": np.array(["q", "r"]), "emb": np.zeros((2, 3))}, None),
    ],
)
def test_bad_feature_files(tmp_path, arrays, message):
    np.savez(tmp_path / "f.npz", **arrays)
    if message is None:  # readable, but no id matches the events
        with pytest.raises(DataError, match="no item of the event log has features"):
            align_features(read_features(tmp_path / "f.npz"), VOCABULARY, name="f")
        return
    with pytest.raises(DataError, match=message):
        read_features(tmp_path / "f.npz")


def test_tfidf_bigrams_by_hand():
    table = pl.DataFrame(
        {"item_id": ["a", "b"], "title": ["red fast", "red fast"], "description": ["car", None]}
    )
    text = tfidf_text_features(table, "item_id", ["title", "description"])
    assert text.vocabulary.tolist() == ["fast car", "red fast"]
    # smooth idf: ln((1 + n) / (1 + df)) + 1; rows scaled to unit length
    idf_fast_car, idf_red_fast = math.log(3 / 2) + 1, 1.0
    norm = math.hypot(idf_fast_car, idf_red_fast)
    assert text.values.toarray()[0] == pytest.approx([idf_fast_car / norm, idf_red_fast / norm])
    assert text.values.toarray()[1] == pytest.approx([0.0, 1.0])
    assert text.mean_nonzeros == pytest.approx(1.5)


def test_item_table_errors(tmp_path):
    (tmp_path / "items.csv").write_text("item_id,title\na,x\n")
    with pytest.raises(DataError, match="missing column\\(s\\) 'description'"):
        read_item_table(tmp_path / "items.csv", "item_id", ["title", "description"])


@pytest.mark.parametrize(
    ("out", "written"), [("text.npz", "text.npz"), ("text", "text.npz"), ("t.bin", "t.bin.npz")]
)
def test_cli_features_text_writes_an_npz_that_train_reads(tmp_path, capsys, out, written):
    (tmp_path / "items.csv").write_text(
        "item_id,title,description\n1,red fast car,a car\n2,red fast bike,\n3,blue slow car,x y\n"
    )
    (tmp_path / "events.csv").write_text(
        "session_id,item_id,timestamp\n1,1,1\n1,3,2\n2,2,5\n2,1,6\n"
    )
    text = ["features", "text", str(tmp_path / "items.csv"), "--ngram-range", "1,2"]
    code = main(["--quiet", *text, "--out", str(tmp_path / out)])
    assert code == 0
    # as numpy.savez does, .npz is added to a path without it; the message says where
    out = capsys.readouterr().out
    assert out.startswith("3 items, vocabulary of 12 1-2-grams")
    assert out.endswith(f"; saved {tmp_path / written}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["items.csv", "events.csv", written]
    )
    features = read_features(tmp_path / written)
    assert features.is_sparse and features.values.shape[0] == 3

    train = ["train", str(tmp_path / "events.csv"), "--model", "content-knn"]
    train += ["--features", f"text={tmp_path / written}", "--out", str(tmp_path / "m.prnn")]
    assert main(["--quiet", *train]) == 0


def test_feature_files_are_recognised_by_content_and_missing_npz_is_hinted(tmp_path):
    save_sparse_features(tmp_path / "t.npz", sp.csr_matrix(np.eye(2)), np.array(["a", "b"]))
    (tmp_path / "t.npz").rename(tmp_path / "renamed")
    assert read_features(tmp_path / "renamed").values.shape == (2, 2)
    save_dense_features(tmp_path / "dense", np.array(["a", "b"]), np.ones((2, 3)))
    with pytest.raises(DataError, match="dense: no such feature file; did you mean .*dense.npz"):
        read_features(tmp_path / "dense")
    (tmp_path / "notes.txt").write_text("item_id,x\na,1\n")
    with pytest.raises(DataError, match="notes.txt: unknown feature file type"):
        read_features(tmp_path / "notes.txt")


def test_low_coverage_of_the_event_log_warns(tmp_path, caplog):
    save_dense_features(tmp_path / "f.npz", np.array(["a", "b", "zz"]), np.ones((3, 2)))
    with caplog.at_level(logging.INFO, logger="prnn.features"):
        align_features(read_features(tmp_path / "f.npz"), VOCABULARY, name="img")
    # 2 of 4 items: half, no warning
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.INFO]
    caplog.clear()
    save_dense_features(tmp_path / "f.npz", np.array(["a", "zz"]), np.ones((2, 2)))
    with caplog.at_level(logging.INFO, logger="prnn.features"):
        align_features(read_features(tmp_path / "f.npz"), VOCABULARY, name="img")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"feature set 'img' ({tmp_path / 'f.npz'}): only 1 of the 4 items of the event log "
        "(25.0%) have features, the others get zero rows; do the ids match (features: "
        "['a', 'zz'], events: ['a', 'b', 'c'])?"
    ]


@pytest.mark.realdata
def test_clip_vectors_of_amazon_toys_align_to_its_sequences():
    folder = SHARED_DATA / "amazon_toys_mm"
    if not folder.exists():
        pytest.skip("amazon_toys_mm not found")
    from prnn.data import read_events

    events = read_events(folder / "sequences.csv.gz", session_col="seq_id", time_col="none")
    vocabulary = Vocabulary.from_events(events)
    aligned = align_features(
        read_features(folder / "clip_vitb32_image.npz"), vocabulary, name="image", normalize=True
    )
    assert aligned.n_missing == 17 and aligned.n_unused == 0  # 17 items have no image
    rows = aligned.dense_rows(np.arange(50))
    norms = np.linalg.norm(rows, axis=1)
    assert np.all((np.abs(norms - 1) < 1e-3) | (norms == 0))


def test_object_id_arrays_and_csc_files(tmp_path):
    np.savez(tmp_path / "obj.npz", item_id=np.array(["a", "b"], dtype=object), emb=np.zeros((2, 2)))
    with pytest.raises(DataError, match="cannot be read as a feature .npz"):
        read_features(tmp_path / "obj.npz")
    matrix = sp.csc_matrix(np.array([[0, 2.0], [3.0, 0]], dtype=np.float32))
    sp.save_npz(tmp_path / "csc.npz", matrix)
    with np.load(tmp_path / "csc.npz") as archive:
        arrays = dict(archive)
    np.savez(tmp_path / "csc_ids.npz", item_id=np.array(["a", "b"]), **arrays)
    features = read_features(tmp_path / "csc_ids.npz")
    assert features.values.toarray().tolist() == [[0, 2.0], [3.0, 0]]


def test_bad_sparse_and_empty_features():
    bad = sp.csr_matrix(np.array([[np.nan, 1.0]], dtype=np.float32))
    with pytest.raises(DataError, match="NaN"):
        FeatureMatrix(np.array(["a"]), bad)
    with pytest.raises(DataError, match="no columns"):
        FeatureMatrix(np.array(["a"]), np.zeros((1, 0), dtype=np.float32))
