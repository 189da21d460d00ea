"""``prnn synth``: the synthetic log's statistics (popularity exponent, session lengths), its
sequential structure and its features, seeded and written as files the readers take."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prnn.cli import main
from prnn.data import read_events
from prnn.features import read_features
from prnn.synth import SynthSpec, generate


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    spec = SynthSpec(n_items=3000, n_events=120_000, seed=3, text_width=5000, image_dim=16)
    generate(spec, out)
    return out, spec


def test_popularity_follows_the_power_law_and_lengths_look_like_rsc15(synth):
    out, spec = synth
    events = read_events(out / "events.parquet")
    assert abs(events.n_events - spec.n_events) < 50
    lengths = events.session_lengths
    assert lengths.min() >= 2
    assert 3.6 < lengths.mean() < 4.2 and np.median(lengths) == 3  # rsc15: 3.95 and 3
    counts = np.sort(np.bincount(events.item_ids.astype(np.int64)))[::-1]
    ranks = np.arange(1, len(counts) + 1)
    middle = slice(10, int((counts > 0).sum()) // 2)
    slope = np.polyfit(np.log(ranks[middle]), np.log(counts[middle]), 1)[0]
    assert slope == pytest.approx(-spec.popularity_exponent, abs=0.15)
    assert json.loads((out / "synth.json").read_text())["events"] == events.n_events


def test_the_next_click_and_the_features_share_the_items_cluster(synth):
    out, spec = synth
    events = read_events(out / "events.parquet")
    text = read_features(out / "text.npz").values.tocsr()
    image = read_features(out / "image.npz").values
    assert text.shape == (spec.n_items, spec.text_width)
    assert abs(text.getnnz(axis=1).mean() - spec.text_nnz) < 2
    items = events.item_ids.astype(np.int64)
    same_session = np.diff(events.session_index()) == 0
    current, following = items[:-1][same_session], items[1:][same_session]
    rng = np.random.default_rng(0)
    unrelated = rng.integers(0, spec.n_items, size=len(current))

    def cosine(matrix, a, b):
        if hasattr(matrix, "multiply"):
            return np.asarray(matrix[a].multiply(matrix[b]).sum(axis=1)).ravel()
        return (matrix[a] * matrix[b]).sum(axis=1)

    for matrix in (text, image):  # consecutive clicks' items are alike, random pairs are not
        assert (
            cosine(matrix, current, following).mean()
            > 3 * cosine(matrix, current, unrelated).mean()
        )


def test_the_same_seed_gives_the_same_log(tmp_path):
    spec = SynthSpec(n_items=100, n_events=2000, seed=7)
    generate(spec, tmp_path / "a")
    generate(spec, tmp_path / "b")
    assert (tmp_path / "a" / "events.parquet").read_bytes() == (
        tmp_path / "b" / "events.parquet"
    ).read_bytes()


def test_prnn_synth_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["-q", "synth", "--items", "200", "--events", "5000", "--image-dim", "8",
                 "--out", str(out)]) == 0  # fmt: skip
    assert "events in" in capsys.readouterr().out
    assert read_events(out / "events.parquet").n_events >= 5000
    # a file of the same name that prnn synth did not write is not replaced
    foreign = tmp_path / "other"
    foreign.mkdir()
    (foreign / "events.parquet").write_text("mine")
    assert main(["synth", "--items", "200", "--events", "5000", "--out", str(foreign)]) == 2
    assert (foreign / "events.parquet").read_text() == "mine"
    assert main(["synth", "--items", "1", "--events", "5000", "--out", str(out)]) == 2
