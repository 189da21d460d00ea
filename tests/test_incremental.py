"""Incremental training: a saved model continued on new events (``fit(..., init=model)``,
``prnn train --init``), with its optimiser state when it was saved with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from prnn.cli import main
from prnn.data import EventLog, read_events
from prnn.errors import ConfigError
from prnn.evaluation import evaluate
from prnn.models import GRU4Rec, ItemKNN, SessionRecommender
from prnn.models.gru4rec import gru4rec_network

RSC15 = Path(__file__).resolve().parents[2] / "shared" / "data" / "rsc15_100k" / "events.csv.gz"
SMALL = {"layers": (8,), "n_sample": 16, "batch_size": 4, "n_epochs": 2}


def _log(sessions: list[list[int]]) -> EventLog:
    ids = [s for s, items in enumerate(sessions) for _ in items]
    return EventLog.from_arrays(ids, [i for items in sessions for i in items])


OLD = _log([[1, 2, 3], [2, 3, 4], [1, 3, 4, 2], [4, 1, 2]] * 3)
NEW = _log([[2, 5, 6], [5, 6, 1], [6, 2, 5, 3]] * 3)


def test_continuing_keeps_the_known_items_rows_and_adds_the_new_ones():
    old = GRU4Rec(**SMALL).fit(OLD, keep_optimizer_state=True)
    # a vanishing learning rate and no momentum: the continued model is the old one, grown
    frozen = GRU4Rec(**{**SMALL, "learning_rate": 1e-12, "momentum": 0.0}).fit(NEW, init=old)
    assert frozen.fitted_vocabulary.item_ids.tolist() == [1, 2, 3, 4, 5, 6]
    assert frozen.fitted_vocabulary.counts.tolist() == [
        *(old.fitted_vocabulary.counts + np.array([3, 6, 3, 0])).tolist(),
        9,
        9,
    ]
    rows = torch.from_numpy(frozen.fitted_vocabulary.index(np.array([1, 2, 3, 4])))
    before, after = old.network.state_dict(), frozen.network.state_dict()
    for name, tensor in before.items():
        expected = after[name][rows] if tensor.dim() and tensor.shape[0] == 4 else after[name]
        torch.testing.assert_close(expected, tensor, msg=name)
    new_rows = after["subnets.0.output_weight"][4:]
    assert new_rows.abs().sum() > 0  # fresh rows, not zeros
    # the optimiser's table buffers grow the same way: old rows carried over, new ones zero
    grown = GRU4Rec(**SMALL)
    grown.vocabulary = old.fitted_vocabulary.merged_with(NEW)
    network = gru4rec_network(grown.n_items, grown.config)
    state = grown._carry_over(old, network)
    for name, buffer in old.optimizer_state_.items():
        if name.startswith("table_"):
            torch.testing.assert_close(state[name][rows], buffer)
            assert not state[name][4:].any()
        else:
            torch.testing.assert_close(state[name], buffer)


def test_optimizer_state_is_saved_only_when_asked(tmp_path):
    model = GRU4Rec(**SMALL).fit(OLD, keep_optimizer_state=True)
    model.save(tmp_path / "with.prnn", optimizer_state=True)
    model.save(tmp_path / "without.prnn")
    with_state = SessionRecommender.load(tmp_path / "with.prnn")
    assert SessionRecommender.load(tmp_path / "without.prnn").optimizer_state_ is None
    assert with_state.optimizer_state_.keys() == model.optimizer_state_.keys()
    for name, buffer in model.optimizer_state_.items():
        torch.testing.assert_close(with_state.optimizer_state_[name], buffer)
    sizes = [(tmp_path / name).stat().st_size for name in ("with.prnn", "without.prnn")]
    assert sizes[0] > sizes[1]
    plain = GRU4Rec(**SMALL).fit(OLD)
    with pytest.raises(ConfigError, match="keep_optimizer_state=True"):
        plain.save(tmp_path / "x.prnn", optimizer_state=True)


def test_init_must_be_the_same_kind_and_shape():
    old = GRU4Rec(**SMALL).fit(OLD)
    with pytest.raises(ConfigError, match="differs from this one's in subnets.0"):
        GRU4Rec(**{**SMALL, "layers": (6,)}).fit(NEW, init=old)
    with pytest.raises(ConfigError, match="models trained by epochs"):
        ItemKNN().fit(NEW, init=old)


def test_an_update_on_the_next_day_beats_the_stale_model():
    days_1_5 = read_events(RSC15, where={"tune_split": "train_tr"})
    day_6 = read_events(RSC15, where={"tune_split": "valid"})
    day_7 = read_events(RSC15, where={"split": "test"})
    stale = GRU4Rec(n_epochs=3).fit(days_1_5, keep_optimizer_state=True, threads=1)
    updated = GRU4Rec(n_epochs=2).fit(day_6, init=stale, threads=1)
    recall = {
        name: evaluate(model, day_7, cutoffs=(20,)).metrics["recall@20"]
        for name, model in (("stale", stale), ("updated", updated))
    }
    assert recall["updated"] > recall["stale"] + 0.01, recall


def test_prnn_train_init_on_the_command_line(tmp_path, capsys):
    old_csv, new_csv = tmp_path / "old.csv", tmp_path / "new.csv"
    for log, path in ((OLD, old_csv), (NEW, new_csv)):
        sessions = np.repeat(np.arange(log.n_sessions), log.session_lengths)
        rows = [f"{s},{i},{t}" for s, i, t in zip(sessions, log.item_ids, range(log.n_events))]
        path.write_text("session_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    small = ["--set", "layers=8", "--set", "n_sample=16", "--set", "batch_size=4"]
    old_model, new_model = tmp_path / "old.prnn", tmp_path / "new.prnn"
    assert main(["-q", "train", str(old_csv), "--model", "gru4rec", *small, "--updatable",
                 "--out", str(old_model), "--no-compile"]) == 0  # fmt: skip
    # the kind and the settings come from the init model; --set changes what it names
    assert main(["-q", "train", str(new_csv), "--init", str(old_model), "--set", "n_epochs=1",
                 "--out", str(new_model), "--no-compile"]) == 0  # fmt: skip
    grown = SessionRecommender.load(new_model)
    assert grown.name == "gru4rec" and grown.config.layers == (8,) and grown.n_items == 6
    assert grown.config.n_epochs == 1
    capsys.readouterr()
    assert main(["train", str(new_csv), "--init", str(old_model), "--model", "prnn",
                 "--out", str(tmp_path / "x.prnn")]) == 2  # fmt: skip
    assert "holds a gru4rec model; --model says prnn" in capsys.readouterr().err
    assert main(["train", str(new_csv), "--out", str(tmp_path / "x.prnn")]) == 2
    assert "--model is required" in capsys.readouterr().err


def test_init_adapts_the_optimiser_state_to_a_changed_momentum():
    without = GRU4Rec(**{**SMALL, "momentum": 0.0}).fit(OLD, keep_optimizer_state=True)
    assert not any("momentum" in name for name in without.optimizer_state_)
    continued = GRU4Rec(**{**SMALL, "momentum": 0.3}).fit(
        NEW, init=without, keep_optimizer_state=True
    )
    assert any("momentum" in name for name in continued.optimizer_state_)
    again = GRU4Rec(**{**SMALL, "momentum": 0.0}).fit(NEW, init=continued)
    assert again.n_items == 6


def test_init_keeps_the_trained_models_subnet_order():
    from prnn.bundled import example_toys_folder
    from prnn.features import read_features
    from prnn.models import PRNN

    folder = example_toys_folder()
    events = read_events(folder / "sequences.csv.gz", session_col="seq_id", time_col="none")
    image = read_features(folder / "clip_image.npz")
    shifted = type(image)(image.item_ids, image.values[:, ::-1].copy(), source="shifted")
    settings = {"layers": (8,), "feature_layers": (8,), "n_epochs": 1, "n_sample": 16}
    old = PRNN(**settings).fit(events, features={"a": image, "b": shifted})
    # the same sets given the other way round: each subnet continues with its own weights
    continued = PRNN(**{**settings, "learning_rate": 1e-12, "momentum": 0.0}).fit(
        events, features={"b": shifted, "a": image}, init=old
    )
    assert list(continued.network.features) == ["a", "b"]
    for name, tensor in old.network.state_dict().items():
        torch.testing.assert_close(continued.network.state_dict()[name], tensor, msg=name)
    with pytest.raises(ConfigError, match="reads the feature sets a, b"):
        PRNN(**settings).fit(events, features={"a": image}, init=old)


def test_added_items_grow_the_kept_optimiser_state(tmp_path):
    from prnn.bundled import example_toys_folder
    from prnn.cold_start import hold_out_items
    from prnn.features import read_features
    from prnn.models import PRNN

    folder = example_toys_folder()
    events = read_events(folder / "sequences.csv.gz", session_col="seq_id", time_col="none")
    image = read_features(folder / "clip_image.npz")
    warm, held = hold_out_items(events, 0.1, seed=0)
    settings = {"layers": (8,), "feature_layers": (8,), "n_epochs": 1, "n_sample": 16}
    model = PRNN(**settings, output="hybrid").fit(
        warm, features={"image": image}, keep_optimizer_state=True
    )
    model.add_items({"image": image})
    tables = [b for n, b in model.optimizer_state_.items() if n.startswith("table_accumulator")]
    assert any(len(b) == model.n_items for b in tables)
    model.save(tmp_path / "m.prnn", optimizer_state=True)
    loaded = SessionRecommender.load(tmp_path / "m.prnn")
    PRNN(**settings, output="hybrid").fit(events, features={"image": image}, init=loaded)
