"""Feature-only, concat and p-RNN: schedules, frozen subnets, sparse input, persistence, CLI."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from prnn.errors import ConfigError
from prnn.evaluation import validation
from prnn.features import FeatureMatrix, save_sparse_features
from prnn.models import PRNN, Concat, FeatureOnly, SessionRecommender
from prnn.network import FeatureLookup, Phase
from prnn.training import training_phase

from .conftest import make_log

CYCLE = [f"c{i}" for i in range(6)]
SMALL = dict(layers=(16,), feature_layers=(8,), batch_size=8, n_sample=4, learning_rate=0.1)


def _cyclic():
    return make_log({s: [CYCLE[(s + k) % 6] for k in range(6)] for s in range(60)})


def _dense():
    rng = np.random.default_rng(0)
    return FeatureMatrix(np.array(CYCLE), rng.normal(size=(6, 8)).astype(np.float32))


def _sparse():
    rng = np.random.default_rng(1)
    matrix = sp.random(6, 50, density=0.08, random_state=rng, format="csr", dtype=np.float32)
    return FeatureMatrix(np.array(CYCLE), (matrix + sp.eye(6, 50, dtype=np.float32)).tocsr())


# ---- schedule ------------------------------------------------------------------------------

ORDER = ("id", "image", "text")


def test_simultaneous_trains_everything_always():
    phase = training_phase("simultaneous", ORDER, epoch=3, step=17, residual_epochs=(1, 1, 1))
    assert phase == Phase(frozenset(ORDER), frozenset(ORDER))


def test_alternating_switches_every_epoch():
    trained = [training_phase("alternating", ORDER, e, 0, ()).trainable for e in range(4)]
    assert trained == [{"id"}, {"image"}, {"text"}, {"id"}]
    assert training_phase("alternating", ORDER, 1, 5, ()).active == set(ORDER)


def test_interleaving_switches_every_mini_batch_and_shifts_every_epoch():
    trained = [training_phase("interleaving", ORDER, 0, s, ()).trainable for s in range(4)]
    assert trained == [{"id"}, {"image"}, {"text"}, {"id"}]
    # the next epoch starts one subnet later, so each subnet meets every mini-batch
    later = [training_phase("interleaving", ORDER, 1, s, ()).trainable for s in range(3)]
    assert later == [{"image"}, {"text"}, {"id"}]


def test_residual_trains_in_order_and_adds_subnets_to_the_output():
    phases = [training_phase("residual", ORDER, e, 0, (2, 1, 3)) for e in range(6)]
    assert [p.trainable for p in phases] == [{"id"}] * 2 + [{"image"}] + [{"text"}] * 3
    assert [len(p.active) for p in phases] == [1, 1, 2, 3, 3, 3]


# ---- models --------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", [FeatureOnly, Concat, PRNN])
@pytest.mark.parametrize("feature_sets", [("img",), ("txt",), ("img", "txt")])
def test_every_architecture_learns_a_cycle(model_class, feature_sets):
    available = {"img": _dense(), "txt": _sparse()}
    features = {name: available[name] for name in feature_sets}
    model = model_class(**SMALL, n_epochs=20).fit(_cyclic(), features=features)
    for step in range(6):
        assert model.recommend([f"c{step}"], k=1)[0][0] == f"c{(step + 1) % 6}"


@pytest.mark.parametrize("training", ["residual", "alternating", "interleaving"])
def test_prnn_training_methods_learn_a_cycle(training):
    model = PRNN(**SMALL, n_epochs=12, training=training).fit(
        _cyclic(), features={"img": _dense(), "txt": _sparse()}
    )
    # residual splits the 12 epochs: 10 for the ID subnet, 1 for each feature subnet
    assert len(model.history_) == 12
    for step in range(6):
        assert model.recommend([f"c{step}"], k=1)[0][0] == f"c{(step + 1) % 6}"


def _subnet_state(network, optimizer, name):
    """Every tensor of one subnet (weights, output block, tables) and its optimiser state."""
    subnet = next(s for s in network.subnets if s.name == name)
    tensors = {f"w.{k}": v.detach().clone() for k, v in subnet.state_dict().items()}
    for index, table in enumerate(subnet.item_tables()):
        accumulator, momentum = optimizer.state_of(table)
        tensors[f"acc.{index}"] = accumulator.clone()
        if momentum is not None:
            tensors[f"mom.{index}"] = momentum.clone()
    for index, parameter in enumerate(subnet.parameters()):
        accumulator, momentum = optimizer.state_of(parameter)
        tensors[f"pacc.{index}"] = accumulator.clone()
        if momentum is not None:
            tensors[f"pmom.{index}"] = momentum.clone()
    return tensors


def test_alternating_freezes_the_other_subnet_and_its_optimiser_state():
    snapshots = []

    def remember(report, network, optimizer):
        snapshots.append({name: _subnet_state(network, optimizer, name) for name in ("id", "txt")})

    PRNN(**SMALL, n_epochs=3, training="alternating", momentum=0.5, learn_subnet_weights=True).fit(
        _cyclic(), features={"txt": _sparse()}, epoch_callback=remember
    )
    # epoch 1 trains id, epoch 2 txt, epoch 3 id again
    changed = [
        {
            name: any(not torch.equal(after[name][k], before[name][k]) for k in after[name])
            for name in after
        }
        for before, after in zip(snapshots, snapshots[1:])
    ]
    assert changed == [{"id": False, "txt": True}, {"id": True, "txt": False}]


@pytest.mark.parametrize("feature", ["txt", "img"])
def test_output_blocks_always_train_while_the_subnets_take_turns(feature):
    snapshots = []

    def remember(report, network, optimizer):
        snapshots.append(
            {name: _subnet_state(network, optimizer, name) for name in ("id", feature)}
        )

    features = {"txt": _sparse(), "img": _dense()}
    PRNN(**SMALL, n_epochs=3, training="alternating", momentum=0.5, output_blocks="always").fit(
        _cyclic(), features={feature: features[feature]}, epoch_callback=remember
    )
    # epoch 2 trains the feature subnet: the ID subnet's GRU weights and their optimiser state
    # stay; both subnets' output blocks move
    before, after = snapshots[0], snapshots[1]
    id_output = "w.output_weight"
    for key in after["id"]:
        moved = not torch.equal(after["id"][key], before["id"][key])
        if key.startswith("w.layers") or key.startswith("pacc") or key.startswith("pmom"):
            assert not moved, key
    assert not torch.equal(after["id"][id_output], before["id"][id_output])
    assert not torch.equal(after[feature][id_output], before[feature][id_output])


@pytest.mark.parametrize("constrained", [True, False])
def test_freezing_a_subnet_leaves_the_others_gradient_unchanged(constrained):
    from prnn.training import make_step_loss
    from prnn.training.step_plan import plan_steps

    settings = dict(SMALL, n_epochs=1, constrained_embedding=constrained)
    if not constrained:
        settings["embedding"] = 5
    model = PRNN(**settings).fit(_cyclic(), features={"img": _dense()})
    network = model.network
    step_loss = make_step_loss(model.config)
    (step,) = plan_steps(
        id_mode=network.id_mode,
        n_items=network.n_items,
        inputs=torch.tensor([0, 1, 2, 3]),
        targets=torch.tensor([1, 2, 3, 4]),
        sizes=[4],
        samples=torch.tensor([[5, 0, 1]]),
        log_q=None,
        with_row_weights=True,
        dropout=network.dropout_specs(),
        generator=None,
    )
    hidden = [torch.randn(4, 16, generator=torch.Generator().manual_seed(1)), torch.zeros(4, 8)]

    @torch.no_grad()
    def gradients(trainable):
        network.set_phase(Phase(frozenset({"id", "img"}), frozenset(trainable)))
        gathered = network.gather_rows(step)
        scores, _, caches = network.forward_train(step, list(hidden), gathered)
        _, grad_scores = step_loss.value_and_gradient(scores, *step_loss.prepared(step))
        dense, rows = network.backward(step, gathered, caches, grad_scores)
        return {**dense, **rows}

    both = gradients({"id", "img"})
    for trainable, index in (("id", 0), ("img", 1)):
        found = gradients({trainable})
        # only the trainable subnet's weights and tables (and the shared bias) get a gradient
        assert {n for n in found if n != "bias"} == {
            n
            for n in both
            if n.startswith((f"subnets.{index}.", f"block:{trainable}", f"id:{trainable}"))
        }
        for name, gradient in found.items():
            torch.testing.assert_close(gradient, both[name])


def test_subnet_weights_scale_each_block():
    model = PRNN(**SMALL, n_epochs=1, subnet_weights=(1.0, 0.0)).fit(
        _cyclic(), features={"img": _dense()}
    )
    assert model.network.subnet_weight.tolist() == [1.0, 0.0]
    learned = PRNN(**SMALL, n_epochs=2, learn_subnet_weights=True).fit(
        _cyclic(), features={"img": _dense()}
    )
    assert all(subnet.weight.requires_grad for subnet in learned.network.subnets)
    assert learned.network.subnet_weight.tolist() != [1.0, 1.0]


def test_sparse_lookup_flattens_rows_by_hand():
    from prnn.data import Vocabulary
    from prnn.features import align_features

    matrix = sp.csr_matrix(np.array([[0, 2.0, 0, 5.0], [0, 0, 0, 0], [1.0, 0, 0, 0]]))
    features = FeatureMatrix(np.array(["a", "b", "c"]), matrix.astype(np.float32))
    vocabulary = Vocabulary(np.array(["a", "b", "c", "d"]), np.ones(4, dtype=np.int64))
    lookup = FeatureLookup(align_features(features, vocabulary, name="t"))
    columns, values, offsets = lookup.bag(torch.tensor([2, 0, 3, 0]))
    assert columns.tolist() == [0, 1, 3, 1, 3]
    assert values.tolist() == [1.0, 2.0, 5.0, 2.0, 5.0]
    assert offsets.tolist() == [0, 1, 3, 3]  # item d has no features: an empty bag


@pytest.mark.parametrize("model_class", [FeatureOnly, Concat, PRNN])
def test_save_load_gives_identical_scores(model_class, tmp_path):
    model = model_class(**SMALL, n_epochs=2).fit(
        _cyclic(), features={"img": _dense(), "txt": _sparse()}
    )
    model.save(tmp_path / "m.prnn")
    loaded = SessionRecommender.load(tmp_path / "m.prnn")
    assert type(loaded) is model_class and loaded.config == model.config
    assert loaded.recommend(["c1", "c2"], k=6) == model.recommend(["c1", "c2"], k=6)


def test_feature_models_need_features():
    with pytest.raises(ConfigError, match="needs item features"):
        PRNN(**SMALL, n_epochs=1).fit(_cyclic())
    with pytest.raises(ConfigError, match="feature set\\(s\\) text not given"):
        PRNN(**SMALL, n_epochs=1, features=("text",)).fit(_cyclic(), features={"img": _dense()})
    with pytest.raises(ConfigError, match="'training' of FeatureModelConfig must be one of"):
        PRNN(training="sequential")


def test_cli_trains_prnn_with_features(tmp_path, capsys):
    from prnn.cli import main
    from prnn.data import write_events

    log = _cyclic()
    write_events(log, tmp_path / "train.csv")
    save_sparse_features(tmp_path / "text.npz", _sparse().values, np.array(CYCLE))
    np.savez(tmp_path / "img.npz", item_id=np.array(CYCLE), emb=_dense().values)
    code = main(
        [
            "--quiet",
            "train",
            str(tmp_path / "train.csv"),
            "--model",
            "prnn",
            "--features",
            f"image={tmp_path / 'img.npz'}",
            "--features",
            f"text={tmp_path / 'text.npz'}",
            "--set",
            "training=residual",
            "--set",
            "layers=16",
            "--set",
            "feature_layers=8",
            "--set",
            "n_epochs=2",
            "--set",
            "n_sample=4",
            "--set",
            "batch_size=8",
            "--out",
            str(tmp_path / "p.prnn"),
        ]
    )
    assert code == 0
    capsys.readouterr()
    code = main(["--quiet", "recommend", str(tmp_path / "p.prnn"), "--items", "c1", "--k", "3"])
    assert code == 0 and len(capsys.readouterr().out.strip().splitlines()) == 4


def test_snapshot_helper_sees_changes():
    # guards the frozen-subnet test: a trained subnet's snapshot must differ
    snapshots = []
    PRNN(**SMALL, n_epochs=2).fit(
        _cyclic(),
        features={"img": _dense()},
        epoch_callback=lambda r, n, o: snapshots.append(copy.deepcopy(_subnet_state(n, o, "img"))),
    )
    assert any(not torch.equal(snapshots[0][k], snapshots[1][k]) for k in snapshots[0])


def test_content_knn_ranks_by_feature_cosine_to_the_last_item():
    from prnn.models import ContentKNN

    features = FeatureMatrix(np.array(["a", "b", "c"]), np.array([[1.0, 0], [1, 1], [0, 2]]))
    model = ContentKNN().fit(make_log({1: ["a", "b", "c"]}), features={"f": features})
    ranked = model.recommend(["c", "a"], k=3)
    # after a: b has cosine 1/sqrt(2), c has 0, a itself is excluded (0)
    assert ranked[0] == ("b", pytest.approx(1 / np.sqrt(2)))
    assert {item for item, score in ranked[1:]} == {"a", "c"}


def test_experiment_paper_on_bundled_data_writes_a_report(tmp_path, capsys):
    from prnn.cli import main

    code = main(
        [
            "--quiet",
            "experiment",
            "paper",
            "--out-dir",
            str(tmp_path),
            "--epochs",
            "1",
            "--hidden",
            "16",
            "--set",
            "n_sample=64",
        ]
    )
    assert code == 0
    report = (tmp_path / "results.md").read_text()
    for label in (
        "item-kNN",
        "content-kNN",
        "ID only",
        "feature only",
        "concat",
        "p-RNN (simultaneous)",
        "p-RNN (residual)",
        "p-RNN (alternating)",
        "p-RNN (interleaving)",
    ):
        assert f"| {label} |" in report
    assert "drawn at random" in report
    import json

    rows = json.loads((tmp_path / "results.json").read_text())
    assert len(rows) == 10
    for row in rows:
        assert 0 <= row["mrr@20"] <= row["recall@20"] <= 1, row
    by_label = {row["method"]: row for row in rows}
    # real histories: co-occurrence beats popularity by far, and every neural method learns
    # something (popularity on this sample: Recall@20 ~0.03)
    assert by_label["item-kNN"]["recall@20"] > 0.05
    assert all(row["recall@20"] > 0.02 for row in rows)
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"


def test_an_id_only_subnet_network_trains_like_gru4rec():
    """GRU4Rec is the network with one ID subnet: same seed, bit-identical weights."""
    from prnn.models import GRU4Rec
    from prnn.models.prnn import FeatureModel
    from prnn.network import SubnetSpec

    class IdOnly(FeatureModel):
        name = "id-only-test"

        def _feature_names(self, available):
            return []

        def subnet_specs(self, feature_names):
            return [SubnetSpec("id", ("id",), tuple(self.config.layers))]

    settings = dict(
        layers=(16,),
        batch_size=8,
        n_sample=5,
        n_epochs=2,
        learning_rate=0.1,
        momentum=0.3,
        dropout_p_hidden=0.2,
        dropout_p_embed=0.1,
        logq=1.0,
    )
    reference = GRU4Rec(**settings).fit(_cyclic())
    subnet = IdOnly(**settings).fit(_cyclic())
    expected = reference.network.state_dict()
    got = subnet.network.state_dict()
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name


def test_residual_validation_scores_only_the_subnets_trained_so_far():
    active_at_validation = []
    log = _cyclic()
    PRNN(**SMALL, n_epochs=1, training="residual").fit(
        log,
        features={"img": _dense()},
        valid=validation(log),
        epoch_callback=lambda r, network, o: active_at_validation.append(set(network.active)),
    )
    assert active_at_validation == [{"id"}, {"id", "img"}]


def test_residual_epochs_default_to_a_share_of_n_epochs():
    from prnn.models.prnn import residual_split

    assert residual_split(10, 2, 0.2) == (8, 2)
    assert residual_split(10, 3, 0.2) == (8, 1, 1)
    assert residual_split(1, 2, 0.2) == (1, 1)
    assert residual_split(5, 1, 0.2) == (5,)
    model = PRNN(**SMALL, n_epochs=5).fit(_cyclic(), features={"img": _dense()})
    assert model.config.training == "residual" and len(model.history_) == 5


def test_early_stopping_with_residual_training_picks_among_the_last_stage(monkeypatch):
    from types import SimpleNamespace

    import prnn.evaluation

    # validation per epoch; epochs 1-2 (the ID subnet alone) score highest but do not count
    scripted = iter([0.9, 0.8, 0.3, 0.2, 0.25])

    def fake_evaluate(model, events, cutoffs=(20,), **options):
        value = next(scripted)
        return SimpleNamespace(
            metrics={f"{m}@{k}": value for m in ("recall", "mrr") for k in cutoffs}
        )

    monkeypatch.setattr(prnn.evaluation, "evaluate", fake_evaluate)
    snapshots = []
    model = PRNN(**SMALL, training="residual", residual_epochs=(2, 3)).fit(
        _cyclic(),
        features={"img": _dense()},
        valid=validation(_cyclic()),
        patience=1,
        epoch_callback=lambda r, network, o: snapshots.append(
            {n: t.clone() for n, t in network.state_dict().items()}
        ),
    )
    assert len(model.history_) == 4  # epoch 4 did not beat epoch 3: stop
    for name, tensor in model.network.state_dict().items():
        assert torch.equal(tensor, snapshots[2][name]), name


@pytest.mark.parametrize("name", ["id", "a.b", "keys", ""])
def test_feature_set_names_that_would_clash_are_refused(name):
    with pytest.raises(ConfigError, match="feature set name"):
        PRNN(**SMALL, n_epochs=1).fit(_cyclic(), features={name: _dense()})


def test_experiment_tuning_gives_every_neural_method_the_same_trials(tmp_path):
    from prnn.data import split_sessions_randomly
    from prnn.experiment import Method, draw_trials, run_paper_experiment

    trials = draw_trials(3, seed=5)
    assert trials[0] == {} and len(trials) == 3 and trials == draw_trials(3, seed=5)
    train, test, _ = split_sessions_randomly(_cyclic(), 0.2, seed=0)
    methods = [
        Method("item-kNN", "item-knn", "–"),
        Method("ID only", "gru4rec", "8", {"layers": (8,)}),
        Method(
            "p-RNN (alternating)",
            "prnn",
            "8+8",
            {"layers": (8,), "feature_layers": (8,), "training": "alternating"},
        ),
    ]
    rows = run_paper_experiment(
        train,
        test,
        {"img": _dense()},
        trials=3,
        tune_epochs=1,
        base_settings={"n_epochs": 2, "n_sample": 4, "batch_size": 8},
        methods=methods,
        seed=5,
    )
    assert rows[0].tuning == []  # kNN baselines are not tuned
    for row in rows[1:]:
        tried = [{k: v for k, v in t.items() if k != "valid_mrr@20"} for t in row.tuning]
        assert tried == trials
        best = max(row.tuning, key=lambda t: t["valid_mrr@20"])
        chosen = {k: v for k, v in best.items() if k != "valid_mrr@20"}
        assert all(row.settings.get(k, v) == v for k, v in chosen.items())


def test_early_stopping_restores_the_best_epochs_weights(monkeypatch):
    from types import SimpleNamespace

    import prnn.evaluation

    # validation MRR@20 scripted per epoch: the best is epoch 2, patience 2 stops after 4
    scripted = iter([0.1, 0.3, 0.2, 0.25, 0.9])

    def fake_evaluate(model, events, cutoffs=(20,), **options):
        value = next(scripted)
        metrics = {f"{m}@{k}": value for m in ("recall", "mrr") for k in cutoffs}
        return SimpleNamespace(metrics=metrics)

    monkeypatch.setattr(prnn.evaluation, "evaluate", fake_evaluate)
    snapshots = []

    def remember(report, network, optimizer):
        snapshots.append({n: t.clone() for n, t in network.state_dict().items()})

    model = PRNN(**dict(SMALL, n_epochs=5, training="simultaneous"))
    model.fit(
        _cyclic(),
        features={"img": _dense()},
        valid=validation(_cyclic()),
        patience=2,
        valid_metric="mrr@20",
        epoch_callback=remember,
    )
    assert len(model.history_) == 4
    final = model.network.state_dict()
    assert not torch.equal(
        snapshots[1]["subnets.0.output_weight"], snapshots[3]["subnets.0.output_weight"]
    )
    for name, tensor in final.items():
        assert torch.equal(tensor, snapshots[1][name]), name


@pytest.mark.slow
def test_experiment_paper_at_its_defaults_shows_the_papers_shape(tmp_path):
    """The README's main job: on the bundled sample, at its defaults, the best p-RNN above ID
    only on MRR@20 and feature only below it (measured on split seeds 0-4: the best p-RNN 1.4% to
    12.3% above ID only, on seed 0 (this test's) 1.6%; feature only 8-20% below; docs/prnn.md).
    Seed 0's p-RNN margin is small, and another CPU's rounding may move it, so this checks it
    within 3%, where a broken p-RNN (5-40% below in the failures seen) falls short."""
    import json

    from prnn.cli import main

    assert main(["--quiet", "experiment", "paper", "--out-dir", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    rows = {row["method"]: row for row in results}
    id_only = next(
        r["mrr@20"] for r in results if r["method"] == "ID only" and r["hidden"] == "100"
    )
    best_prnn = max(row["mrr@20"] for label, row in rows.items() if label.startswith("p-RNN"))
    assert best_prnn >= 0.97 * id_only
    assert rows["feature only"]["mrr@20"] < id_only
    assert rows["p-RNN (residual)"]["settings"]["batch_size"] == 32  # the documented defaults
