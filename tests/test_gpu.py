"""The GPU path: training, scoring, evaluation, saving and item cold start on CUDA. These run
only where CUDA is present (a lent GPU machine); elsewhere they are skipped."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prnn.bundled import example_toys_folder
from prnn.data import read_events
from prnn.evaluation import evaluate
from prnn.features import read_features
from prnn.models import PRNN, GRU4Rec, SessionRecommender

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

TOYS = example_toys_folder()


@pytest.fixture(scope="module")
def toys():
    events = read_events(TOYS / "sequences.csv.gz", session_col="seq_id", time_col="none")
    return events, read_features(TOYS / "clip_image.npz")


def test_gru4rec_trains_scores_and_saves_on_cuda(toys, tmp_path):
    events, _ = toys
    model = GRU4Rec(layers=(32,), n_epochs=1).fit(events, device="cuda")
    assert next(model.network.parameters()).device.type == "cuda"
    assert len(model.recommend(events.item_ids[:2], k=5)) == 5
    metrics = evaluate(model, events, cutoffs=(20,)).metrics
    model.save(tmp_path / "m.prnn")
    loaded = SessionRecommender.load(tmp_path / "m.prnn")
    assert evaluate(loaded, events, cutoffs=(20,)).metrics["recall@20"] == pytest.approx(
        metrics["recall@20"], abs=1e-3
    )


def test_hybrid_prnn_adds_items_on_cuda(toys):
    events, image = toys
    known = np.isin(events.item_ids, np.unique(events.item_ids)[:-50], invert=False)
    model = PRNN(layers=(16,), feature_layers=(16,), n_epochs=1, output="hybrid")
    model.fit(events.select_events(known), features={"image": image}, device="cuda")
    added = model.add_items({"image": image})
    assert len(added) == 50 and model.n_items == len(np.unique(events.item_ids))
    assert len(model.recommend(added[:1], k=5)) == 5


def test_serving_scores_on_cuda(toys, tmp_path):
    from fastapi.testclient import TestClient

    from prnn.serving import ServeOptions, create_app

    events, _ = toys
    GRU4Rec(layers=(32,), n_epochs=1).fit(events).save(tmp_path / "m.prnn")
    app = create_app(tmp_path / "m.prnn", ServeOptions(device="cuda"))
    assert next(app.state.engine.served.model.network.parameters()).device.type == "cuda"
    item = events.item_ids[0].item()
    with TestClient(app) as client:
        answer = client.post("/v1/sessions/s1/events", json={"item_id": item, "k": 5})
        assert answer.status_code == 200 and len(answer.json()["items"]) == 5


def test_mixed_precision_training_on_cuda(toys):
    events, _ = toys
    model = GRU4Rec(layers=(32,), n_epochs=1).fit(events, device="cuda", mixed_precision=True)
    assert model.network.output_dtype is None  # scoring in float32 after training
    assert evaluate(model, events, cutoffs=(20,)).metrics["recall@20"] > 0.05
