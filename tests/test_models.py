"""The contract every recommender keeps, and the baselines' numbers by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prnn.errors import ModelFormatError, NotFittedError
from prnn.models import MODELS, VSKNN, ItemKNN, Pop, SessionRecommender

from .conftest import make_log


@pytest.fixture
def train_log():
    rng = np.random.default_rng(1)
    return make_log(
        {s: [f"i{v}" for v in rng.integers(0, 25, size=rng.integers(2, 8))] for s in range(80)}
    )


def _fitted(name, log):
    """Fit model ``name`` on ``log``; feature-rich models get random dense item features."""
    model = MODELS[name]()
    if not getattr(model, "uses_features", False):
        fitted = model.fit(log)
        assert fitted is model  # fit returns self
        return model
    from prnn.features import FeatureMatrix

    items = np.unique(log.item_ids)
    vectors = np.random.default_rng(2).normal(size=(len(items), 6)).astype(np.float32)
    small = dict(n_epochs=2, layers=(12,), feature_layers=(6,), n_sample=16, batch_size=16)
    model = MODELS[name](**small) if model.trains_by_epochs else model
    assert model.fit(log, features={"f": FeatureMatrix(items, vectors)}) is model
    return model


def _advance_histories(model, histories):
    state = model.new_state(len(histories))
    for step in range(max(len(h) for h in histories)):
        lanes = np.array([lane for lane, h in enumerate(histories) if step < len(h)])
        items = np.array([histories[lane][step] for lane in lanes])
        model.advance(state, lanes, items)
    return state


@pytest.mark.parametrize("name", sorted(MODELS))
class TestContract:
    def test_fit_returns_self_and_scores_every_item(self, name, train_log):
        model = _fitted(name, train_log)
        assert model.vocabulary is not None
        state = _advance_histories(model, [[0, 3], [5]])
        scores = model.score(state, np.array([0, 1]))
        assert scores.shape == (2, len(model.vocabulary)) and scores.dtype == torch.float32
        candidates = np.array([4, 0, 2])
        # equal up to float rounding: a GEMM over fewer columns may sum in another order
        subset = model.score(state, np.array([0, 1]), candidates)
        assert torch.allclose(subset, scores[:, candidates], atol=1e-6)

    def test_batch_equals_one_by_one(self, name, train_log):
        model = _fitted(name, train_log)
        histories = [[0, 3, 7], [5], [2, 2, 9, 1]]
        together = model.score(_advance_histories(model, histories), np.arange(3))
        for lane, history in enumerate(histories):
            alone = model.score(_advance_histories(model, [history]), np.array([0]))
            assert torch.allclose(together[lane], alone[0], atol=1e-6)

    def test_reset_empties_a_lane(self, name, train_log):
        model = _fitted(name, train_log)
        state = _advance_histories(model, [[0, 3], [0, 3]])
        model.reset(state, np.array([1]))
        model.advance(state, np.array([1]), np.array([5]))
        fresh = model.score(_advance_histories(model, [[5]]), np.array([0]))
        assert torch.allclose(model.score(state, np.array([1])), fresh)

    def test_save_load_gives_identical_scores(self, name, train_log, tmp_path):
        model = _fitted(name, train_log)
        model.save(tmp_path / "model.prnn")
        loaded = SessionRecommender.load(tmp_path / "model.prnn")
        assert type(loaded) is type(model) and loaded.config == model.config
        assert loaded.vocabulary.item_ids.tolist() == model.vocabulary.item_ids.tolist()
        histories = [[0, 3, 7], [5]]
        assert torch.equal(
            model.score(_advance_histories(model, histories), np.arange(2)),
            loaded.score(_advance_histories(loaded, histories), np.arange(2)),
        )
        assert not list(tmp_path.glob(".*tmp"))

    def test_unfitted_model_refuses_to_score(self, name):
        with pytest.raises(NotFittedError, match="not fitted"):
            MODELS[name]().new_state(1)

    def test_recommend_ignores_unknown_items(self, name, train_log):
        model = _fitted(name, train_log)
        recommendations = model.recommend(["i3", "unknown", "i7"], k=5)
        assert len(recommendations) == 5
        assert recommendations == model.recommend(["i3", "i7"], k=5)
        scores = [score for _, score in recommendations]
        assert scores == sorted(scores, reverse=True)
        assert all(item in set(model.vocabulary.item_ids.tolist()) for item, _ in recommendations)


def test_pop_ranks_by_training_count():
    model = Pop().fit(make_log({1: ["a", "b", "b"], 2: ["c", "b", "c"]}))
    assert [item for item, _ in model.recommend(["a"], k=3)] == ["b", "c", "a"]


SESSIONS_FOR_SIMILARITY = {1: ["a", "b", "a"], 2: ["a", "b", "c"], 3: ["a", "c"], 4: ["b", "d"]}


def test_item_knn_cosine_similarities_by_hand():
    model = ItemKNN(regularization=0.0, alpha=0.5).fit(make_log(SESSIONS_FOR_SIMILARITY))
    a, b, c, d = model.vocabulary.index(["a", "b", "c", "d"])
    # supports (sessions containing the item): a 3, b 3, c 2, d 1; a repeat counts once
    assert model.item_similarity(a, b) == pytest.approx(2 / np.sqrt(3 * 3))
    assert model.item_similarity(a, c) == pytest.approx(2 / np.sqrt(3 * 2))
    assert model.item_similarity(b, c) == pytest.approx(1 / np.sqrt(3 * 2))
    assert model.item_similarity(b, d) == pytest.approx(1 / np.sqrt(3 * 1))
    assert model.item_similarity(a, d) == 0.0
    assert model.item_similarity(a, a) == 0.0


def test_item_knn_regularization_alpha_and_neighbour_count():
    model = ItemKNN(regularization=20.0, alpha=0.75).fit(make_log(SESSIONS_FOR_SIMILARITY))
    a, b, c, _ = model.vocabulary.index(["a", "b", "c", "d"])
    assert model.item_similarity(a, c) == pytest.approx(2 / (23**0.75 * 22**0.25))
    assert model.item_similarity(c, a) == pytest.approx(2 / (22**0.75 * 23**0.25))
    nearest = ItemKNN(regularization=0.0, n_neighbors=1).fit(make_log(SESSIONS_FOR_SIMILARITY))
    # a's best neighbour is c (0.816 > 0.667); b is no longer stored
    assert nearest.item_similarity(a, c) > 0 and nearest.item_similarity(a, b) == 0.0


def test_item_knn_recommends_by_last_item():
    log = make_log({s: [["x", "y"], ["p", "q"]][s % 2] for s in range(10)})
    model = ItemKNN().fit(log)
    assert model.recommend(["p", "x"], k=1)[0][0] == "y"
    assert model.recommend(["x", "p"], k=1)[0][0] == "q"


def _vsknn_log():
    return make_log(
        {1: ["a", "b"], 2: ["b", "c"], 3: ["c", "d"]}, start_times={1: 1.0, 2: 2.0, 3: 3.0}
    )


def _vsknn_scores(model, history):
    state = _advance_histories(model, [model.vocabulary.index(history).tolist()])
    return dict(
        zip(model.vocabulary.item_ids.tolist(), model.score(state, np.array([0]))[0].tolist())
    )


def test_vsknn_scores_by_hand():
    model = VSKNN().fit(_vsknn_log())
    # session [a, c]: weights a = 1/2, c = 1; similarities (over 2 distinct items):
    # T1 {a,b} 0.25, T2 {b,c} 0.5, T3 {c,d} 0.5; T1's latest shared item (a) is 2 clicks back
    scores = _vsknn_scores(model, ["a", "c"])
    expected = {"a": 0.25 / 2, "b": 0.25 / 2 + 0.5, "c": 1.0, "d": 0.5}
    assert scores == pytest.approx(expected)


@pytest.mark.parametrize("settings", [{"k": 2}, {"sample_size": 2}])
def test_vsknn_neighbour_count_and_recent_sample(settings):
    model = VSKNN(**settings).fit(_vsknn_log())
    # k=2 keeps the two best neighbours (T2, T3); sample_size=2 keeps the two most recent
    assert _vsknn_scores(model, ["a", "c"]) == pytest.approx(
        {"a": 0.0, "b": 0.5, "c": 1.0, "d": 0.5}
    )


def test_loading_a_model_as_the_wrong_class(train_log, tmp_path):
    Pop().fit(train_log).save(tmp_path / "pop.prnn")
    with pytest.raises(ModelFormatError, match="holds a 'pop' model, not 'item-knn'"):
        ItemKNN.load(tmp_path / "pop.prnn")
