"""The baselines on real RSC15 sessions: the neighbourhood methods must beat popularity."""

from __future__ import annotations

import pytest

from prnn.data import read_events
from prnn.evaluation import evaluate
from prnn.models import VSKNN, ItemKNN, Pop

pytestmark = pytest.mark.realdata


def test_knn_baselines_beat_pop_on_rsc15(rsc15_path):
    train = read_events(rsc15_path, where={"split": "train"})
    test = read_events(rsc15_path, where={"split": "test"})
    recall = {}
    for model in (Pop(), ItemKNN(), VSKNN()):
        result = evaluate(model.fit(train), test, cutoffs=(20,))
        assert result.n_events == 10152 and result.n_skipped == 0
        recall[model.name] = result.metrics["recall@20"]
    assert recall["item-knn"] > 2 * recall["pop"]
    assert recall["v-sknn"] > recall["item-knn"]


def test_gru4rec_beats_item_knn_on_rsc15_in_two_epochs(rsc15_path):
    from prnn.config import read_preset
    from prnn.models import GRU4Rec

    train = read_events(rsc15_path, where={"split": "train"})
    test = read_events(rsc15_path, where={"split": "test"})
    model = GRU4Rec(**{**read_preset("rsc15"), "n_epochs": 2}).fit(train)
    gru = evaluate(model, test, cutoffs=(20,)).metrics
    knn = evaluate(ItemKNN().fit(train), test, cutoffs=(20,)).metrics
    assert gru["recall@20"] > knn["recall@20"] + 0.1
    assert gru["mrr@20"] > knn["mrr@20"]
