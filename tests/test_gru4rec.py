"""GRU4Rec's parts against hand-made cases: lanes, losses, optimiser, embedding modes, seeds."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from prnn import losses
from prnn.batching import NegativeSampler, session_parallel_schedule
from prnn.errors import ConfigError
from prnn.evaluation import evaluate, validation
from prnn.models import GRU4Rec, GRU4RecConfig, SessionRecommender
from prnn.models.gru4rec import gru4rec_network
from prnn.optim import AdagradMomentum
from prnn.training import CrossEntropyStepLoss
from prnn.training.loop import _apply_lane_changes, _lane_change_tensors

from .conftest import make_log

# ---- session-parallel lanes ----------------------------------------------------------------


def test_schedule_by_hand():
    # sessions (in order) of lengths 3, 2, 4, 2 at offsets 0, 3, 5, 9; two lanes
    offsets = np.array([0, 3, 5, 9, 11])
    schedule = session_parallel_schedule(offsets, np.arange(4), batch_size=2)
    steps = [
        schedule.input_positions[a:b].tolist()
        for a, b in zip(schedule.step_offsets[:-1], schedule.step_offsets[1:])
    ]
    # step 0: lane 0 = session 0 (event 0), lane 1 = session 1 (event 3)
    # session 1 ends -> lane 1 takes session 2; step 1: events 1 and 5; session 0 ends ->
    # lane 0 takes session 3; step 2: events 9 and 6; session 3 ends, nothing left: lane 0 is
    # dropped; step 3: event 7 alone
    assert steps == [[0, 3], [1, 5], [9, 6], [7]]
    first_change = schedule.lane_changes[1][0]
    assert first_change.reset.tolist() == [1] and first_change.keep is None
    assert schedule.lane_changes[3][0].keep.tolist() == [1]
    targets = sorted((schedule.input_positions + 1).tolist())
    assert targets == [1, 2, 4, 6, 7, 8, 10]


def test_schedule_uses_every_target_exactly_once():
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 9, size=200)
    offsets = np.r_[0, np.cumsum(lengths)]
    order = rng.permutation(200)
    schedule = session_parallel_schedule(offsets, order, batch_size=7)
    expected = np.concatenate([np.arange(offsets[s], offsets[s + 1] - 1) for s in range(200)])
    assert sorted(schedule.input_positions.tolist()) == expected.tolist()
    assert schedule.n_unused_targets == 0


def test_schedule_with_two_lanes_minimum_counts_the_unused_tail():
    offsets = np.array([0, 2, 8])  # a 2-event session and a 6-event one
    schedule = session_parallel_schedule(offsets, np.arange(2), batch_size=2, min_lanes=2)
    assert schedule.n_targets == 2  # one step of two lanes
    assert schedule.n_unused_targets == 4  # the long session's remaining targets


def test_lane_reset_zeroes_only_that_lane_and_shrinks():
    offsets = np.array([0, 2, 6, 8])  # lengths 2, 4, 2
    schedule = session_parallel_schedule(offsets, np.arange(3), batch_size=2)
    assert schedule.input_positions.tolist() == [0, 2, 6, 3, 4]
    hidden = [torch.arange(1.0, 7.0).view(2, 3), torch.full((2, 2), 9.0)]
    lane_changes = _lane_change_tensors(schedule, "cpu")
    after = _apply_lane_changes([h.clone() for h in hidden], lane_changes[1])
    # session 0 (lane 0) ended and session 2 took its lane: lane 0 zero, lane 1 untouched
    assert after[0][0].tolist() == [0.0, 0.0, 0.0] and after[1][0].tolist() == [0.0, 0.0]
    assert after[0][1].tolist() == [4.0, 5.0, 6.0] and after[1][1].tolist() == [9.0, 9.0]
    # later, with no session left, the finished lane is dropped and the batch shrinks
    shrunk = _apply_lane_changes([h.clone() for h in hidden], lane_changes[max(lane_changes)])
    assert shrunk[0].shape[0] == 1


def test_negative_samples_follow_popularity_power():
    counts = np.array([1, 4, 9, 16])
    sampler = NegativeSampler(
        counts,
        n_sample=1000,
        alpha=0.5,
        store_size=10**6,
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
    )
    samples = torch.cat([sampler.draw() for _ in range(100)])
    share = np.bincount(samples.numpy(), minlength=4) / len(samples)
    assert share == pytest.approx(np.array([1, 2, 3, 4]) / 10, abs=0.01)


# ---- losses --------------------------------------------------------------------------------

SCORES = torch.tensor([[2.0, 0.5, -1.0, 0.3], [1.0, -0.5, 0.2, 3.0]])  # B=2 targets + 2 samples


def _rows():
    for b in range(SCORES.shape[0]):
        row = SCORES[b].tolist()
        negatives = [s for j, s in enumerate(row) if j != b]
        yield row[b], row, negatives


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_cross_entropy_by_hand():
    expected = sum(-t + math.log(sum(math.exp(s) for s in row)) for t, row, _ in _rows())
    assert losses.cross_entropy(SCORES).item() == pytest.approx(expected, rel=1e-6)


def test_logq_correction_subtracts_log_probability_per_column():
    log_q = torch.tensor([0.1, -0.3, 0.7, 0.0])
    expected = losses.cross_entropy(SCORES - log_q[None, :])
    assert losses.cross_entropy(SCORES, log_q).item() == pytest.approx(expected.item())
    # a popular negative (high q) is penalised less: its logit falls, the target's loss drops
    popular_negative = torch.tensor([0.0, 0.0, 5.0, 0.0])
    assert losses.cross_entropy(SCORES, popular_negative) < losses.cross_entropy(SCORES)


def test_cross_entropy_over_distinct_rows_equals_the_spread_matrix():
    generator = torch.Generator().manual_seed(0)
    distinct = torch.randn(3, 5, generator=generator)  # 3 lanes, 5 distinct items
    # targets: rows 0, 2, 2 (lanes 1 and 2 share an item); samples repeat items too; row 4 is an
    # input-only item that fills no column
    columns = torch.tensor([0, 2, 2, 1, 1, 3, 0])
    log_q = torch.randn(7, generator=generator)
    spread = distinct[:, columns]
    for correction in (None, log_q):
        expected = losses.cross_entropy(spread, correction)
        got = losses.cross_entropy_over_distinct(distinct, columns, correction)
        assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_cross_entropy_has_the_references_guard_for_hopeless_lanes():
    """The reference's loss is -log(softmax_target + 1e-24): a lane whose target has no chance
    (exploded scores) costs at most 55.3 and gives (almost) no gradient; the others are
    untouched. Checked against that formula, value and autograd gradient, in all three forms."""
    scores = torch.tensor(
        [
            [2.0, 0.5, -1.0, 0.3, 0.0],
            [0.1, -3000.0, 2.0, 1.0, 40.0],  # lane 1's target (column 1) is hopeless
            [1.0, 0.0, 0.5, -0.2, 0.4],
        ]
    )
    log_q = torch.tensor([0.2, -0.1, 0.0, 0.3, -0.4])

    def reference(leaf):  # the reference's xe_loss_with_softmax
        shifted = leaf - log_q[None, :]
        softmax = torch.exp(shifted - shifted.max(dim=1, keepdim=True)[0])
        softmax = softmax / softmax.sum(dim=1, keepdim=True)
        return -torch.sum(torch.log(torch.diag(softmax) + 1e-24))

    leaf = scores.clone().requires_grad_()
    expected = reference(leaf)
    expected.backward()
    assert expected.item() == pytest.approx(losses.cross_entropy(scores, log_q).item(), rel=1e-5)
    # lanes 0 and 2 as plain cross-entropy, lane 1 at the cap -log(1e-24)
    plain = -torch.diagonal(torch.log_softmax(scores - log_q[None, :], dim=1))
    capped = plain[0] + plain[2] - math.log(1e-24)
    assert expected.item() == pytest.approx(capped.item(), rel=1e-5)
    # distinct rows = the columns here; the closed form used in training
    columns = torch.arange(5)
    assert losses.cross_entropy_over_distinct(scores, columns, log_q).item() == pytest.approx(
        expected.item(), rel=1e-5
    )
    loss, gradient = losses.cross_entropy_with_gradient(
        scores.clone(), columns[:3], losses.log_row_weights(columns, 5, log_q), log_q[:3], 1.0
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(gradient, leaf.grad)
    assert gradient[1].abs().max() < 1e-20  # the hopeless lane teaches nothing
    assert gradient[0].abs().max() > 0.1


def test_cross_entropy_gradient_equals_autograd():
    generator = torch.Generator().manual_seed(1)
    distinct = torch.randn(3, 5, generator=generator) * 4
    columns = torch.tensor([0, 2, 2, 1, 1, 3, 0])  # repeats, and row 4 fills no column
    log_q = torch.randn(7, generator=generator)
    for correction in (None, log_q):
        leaf = distinct.clone().requires_grad_()
        expected = losses.cross_entropy_over_distinct(leaf, columns, correction) * 0.25
        expected.backward()
        step_loss = CrossEntropyStepLoss(scale=0.25)
        target_log_q = torch.zeros(3) if correction is None else correction[:3]
        prepared = (columns[:3], losses.log_row_weights(columns, 5, correction), target_log_q)
        loss, gradient = step_loss.value_and_gradient(distinct.clone(), *prepared)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
        torch.testing.assert_close(gradient, leaf.grad)
        assert torch.all(gradient[:, 4] == 0)


@pytest.mark.parametrize("bpreg, elu", [(0.0, 0.0), (1.0, 0.0), (1.95, 0.5), (0.5, 1.0)])
def test_bpr_max_gradient_equals_autograd(bpreg, elu):
    generator = torch.Generator().manual_seed(2)
    distinct = torch.randn(3, 6, generator=generator) * 3
    columns = torch.tensor([0, 2, 2, 1, 1, 3, 0, 5])  # repeats (a target among the negatives)
    leaf = distinct.clone().requires_grad_()
    expected = losses.bpr_max(leaf.index_select(1, columns), bpreg, elu) * 0.25
    expected.backward()
    loss, gradient = losses.bpr_max_with_gradient(distinct, columns, bpreg, elu, 0.25)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(gradient, leaf.grad)
    assert torch.all(gradient[:, 4] == 0)  # a row no column reads


def test_bpr_max_by_hand():
    bpreg, elu = 0.5, 0.0
    expected = 0.0
    for t, _, negatives in _rows():
        weights = [math.exp(s) for s in negatives]
        weights = [w / sum(weights) for w in weights]
        expected += -math.log(sum(w * _sigmoid(t - s) for w, s in zip(weights, negatives)))
        expected += bpreg * sum(w * s * s for w, s in zip(weights, negatives))
    assert losses.bpr_max(SCORES, bpreg=bpreg, elu_param=elu).item() == pytest.approx(expected)


def test_bpr_max_applies_elu_first():
    elu_scores = torch.nn.functional.elu(SCORES, alpha=0.5)
    assert losses.bpr_max(SCORES, 1.0, 0.5).item() == pytest.approx(
        losses.bpr_max(elu_scores, 1.0, 0.0).item()
    )


def test_top1_max_by_hand():
    expected = 0.0
    for t, _, negatives in _rows():
        weights = [math.exp(s) for s in negatives]
        weights = [w / sum(weights) for w in weights]
        expected += sum(w * (_sigmoid(s - t) + _sigmoid(s * s)) for w, s in zip(weights, negatives))
    assert losses.top1_max(SCORES).item() == pytest.approx(expected)


def test_bpr_and_top1_by_hand():
    bpr = sum(sum(-math.log(_sigmoid(t - s)) for s in row) / len(row) for t, row, _ in _rows())
    top1 = sum(
        sum(_sigmoid(s - t) + _sigmoid(s * s) for s in row) / len(row) for t, row, _ in _rows()
    )
    assert losses.bpr(SCORES).item() == pytest.approx(bpr)
    assert losses.top1(SCORES).item() == pytest.approx(top1)


@pytest.mark.parametrize("name", losses.LOSSES)
def test_losses_stay_finite_on_huge_scores(name):
    from prnn.network import BatchRows, StepBatch
    from prnn.training import make_step_loss, sampled_loss

    scores = torch.tensor([[1e4, -1e4, 5e3], [-1e4, 1e4, 1e4]], requires_grad=True)
    config = GRU4RecConfig(loss=name)
    value = sampled_loss(config, scores, torch.arange(3))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(scores.grad).all()
    # the training step's path: the loss with its gradient, without a graph
    columns = torch.arange(3)
    step = StepBatch(
        inputs=torch.tensor([0, 1]),
        rows=BatchRows(columns, columns, None, torch.tensor([0, 1]), None),
        log_row_weight=losses.log_row_weights(columns, 3),
        target_log_q=torch.zeros(2),
    )
    step_loss = make_step_loss(config)
    prepared = step_loss.prepared(step)
    value, gradient = step_loss.value_and_gradient(scores.detach().clone(), *prepared)
    assert torch.isfinite(value) and torch.isfinite(gradient).all()


# ---- optimiser -----------------------------------------------------------------------------


def test_row_wise_adagrad_momentum_touches_only_given_rows():
    table = torch.ones(4, 2)
    optimizer = AdagradMomentum([], [table], learning_rate=0.1, momentum=0.5)
    rows = torch.tensor([1, 3])
    grad = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    optimizer.step_rows(table, rows, grad)
    # first step: acc = g^2, step = -lr g / sqrt(g^2 + eps), momentum buffer = step
    first = -0.1 * grad / torch.sqrt(grad**2 + 1e-6)
    assert torch.allclose(table[rows], 1 + first)
    assert torch.equal(table[[0, 2]], torch.ones(2, 2))
    optimizer.step_rows(table, rows, grad)
    second = 0.5 * first - 0.1 * grad / torch.sqrt(2 * grad**2 + 1e-6)
    assert torch.allclose(table[rows], 1 + first + second)
    accumulator, momentum = optimizer.state_of(table)
    assert torch.equal(accumulator[[0, 2]], torch.zeros(2, 2))
    assert torch.equal(momentum[[0, 2]], torch.zeros(2, 2))
    assert torch.allclose(accumulator[rows], 2 * grad**2)


def test_row_update_of_a_tensor_the_optimiser_does_not_hold_says_so():
    optimizer = AdagradMomentum([], [torch.zeros(3, 1)], learning_rate=1.0, momentum=0.9)
    with pytest.raises(ValueError, match="not one of the optimiser's tables"):
        optimizer.step_rows(torch.zeros(3, 1), torch.tensor([0]), torch.ones(1, 1))


def test_row_update_leaves_rows_outside_touched_alone():
    table = torch.zeros(3, 1)
    optimizer = AdagradMomentum([], [table], learning_rate=1.0, momentum=0.9)
    optimizer.step_rows(table, torch.tensor([0, 1]), torch.tensor([[1.0], [1.0]]))
    before_value = table.clone()
    before_state = [state.clone() for state in optimizer.state_of(table)]
    touched = torch.tensor([True, False])
    optimizer.step_rows(table, torch.tensor([0, 1]), torch.tensor([[1.0], [0.0]]), touched)
    assert table[1].item() == before_value[1].item()
    for state, before in zip(optimizer.state_of(table), before_state):
        assert state[1].item() == before[1].item()  # momentum would have moved it
        assert state[0].item() != before[0].item()
    assert table[0].item() != before_value[0].item()


def test_dense_adagrad_momentum_matches_formula():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = AdagradMomentum([p], [], learning_rate=0.2, momentum=0.3)
    p.grad = torch.tensor([0.5, 1.0])
    optimizer.step_dense()
    step = -0.2 * p.grad / torch.sqrt(p.grad**2 + 1e-6)
    assert torch.allclose(p.detach(), torch.tensor([1.0, -2.0]) + step)


# ---- model ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "tables"),
    [
        ({"constrained_embedding": True}, {"output_weight": (30, 8), "output_bias": (30, 1)}),
        (
            {"constrained_embedding": False, "embedding": 5},
            {"output_weight": (30, 8), "output_bias": (30, 1), "id_table": (30, 5)},
        ),
        (
            {"constrained_embedding": False, "embedding": 0},
            {"output_weight": (30, 8), "output_bias": (30, 1), "id_table": (30, 18)},
        ),
    ],
)
def test_embedding_modes_parameter_shapes(settings, tables):
    network = gru4rec_network(30, GRU4RecConfig(layers=(6, 8), **settings))
    # GRU4Rec's network: one subnet over the ID, and the shared bias
    shapes = {
        name.removeprefix("subnets.0."): tuple(t.shape) for name, t in network.state_dict().items()
    }
    for name, shape in tables.items():
        assert shapes[name] == shape
    assert ("id_table" in shapes) == ("id_table" in tables)
    first_input = {"constrained": 8, "separate": 5, "one-hot": None}[network.id_mode]
    if first_input is None:
        assert "layers.0.weight_ih" not in shapes  # one-hot: the table is the projection
    else:
        assert shapes["layers.0.weight_ih"] == (first_input, 18)
    assert shapes["layers.1.weight_ih"] == (6, 24) and shapes["layers.1.weight_hh"] == (8, 24)


def test_config_is_validated_with_reference_names():
    with pytest.raises(ConfigError, match="'loss' of GRU4RecConfig must be one of"):
        GRU4RecConfig(loss="xe")
    with pytest.raises(ConfigError, match="unused with constrained_embedding=True"):
        GRU4RecConfig(embedding=64)
    assert GRU4Rec(layers="100/100").config.layers == (100, 100)


def _cyclic(n_sessions=60):
    cycle = [f"c{i}" for i in range(6)]
    return make_log({s: [cycle[(s + k) % 6] for k in range(6)] for s in range(n_sessions)})


SMALL = dict(layers=(16,), batch_size=8, n_sample=4, n_epochs=20, learning_rate=0.1)


@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max", "top1-max"])
@pytest.mark.parametrize("constrained, embedding", [(True, 0), (False, 8), (False, 0)])
def test_learns_a_cycle_in_every_mode(loss, constrained, embedding):
    model = GRU4Rec(
        **SMALL, loss=loss, constrained_embedding=constrained, embedding=embedding, momentum=0.1
    ).fit(_cyclic())
    for step in range(6):
        assert model.recommend([f"c{step}"], k=1)[0][0] == f"c{(step + 1) % 6}"


def test_same_seed_same_model_other_seed_other_model():
    log = _cyclic()
    settings = dict(SMALL, n_epochs=2, dropout_p_hidden=0.3, dropout_p_embed=0.2)
    a, b, c = (GRU4Rec(**settings, seed=s).fit(log) for s in (7, 7, 8))
    for name, tensor in a._tensors().items():
        assert torch.equal(tensor, b._tensors()[name])
    weights = "subnets.0.output_weight"
    assert not torch.equal(a._tensors()[weights], c._tensors()[weights])


def test_save_load_identical_scores_and_config(tmp_path):
    settings = dict(SMALL, n_epochs=1, constrained_embedding=False, embedding=4)
    model = GRU4Rec(**settings).fit(_cyclic())
    model.save(tmp_path / "g.prnn")
    loaded = SessionRecommender.load(tmp_path / "g.prnn")
    assert loaded.config == model.config
    assert model.recommend(["c1", "c2"], k=6) == loaded.recommend(["c1", "c2"], k=6)


def test_training_reports_each_epoch_and_validates():
    log = _cyclic()
    model = GRU4Rec(**dict(SMALL, n_epochs=3)).fit(log, valid=validation(log))
    assert [r.epoch for r in model.history_] == [1, 2, 3]
    assert all(r.n_events == 60 * 5 and r.events_per_second > 0 for r in model.history_)
    losses_by_epoch = [r.loss for r in model.history_]
    assert losses_by_epoch == sorted(losses_by_epoch, reverse=True)
    # the last epoch's validation is the finished model's evaluation
    final = evaluate(model, log, cutoffs=(5, 10, 20)).metrics
    assert model.history_[-1].valid == {k: final[k] for k in ("recall@20", "mrr@20")}
    # and the first epoch's is that of the same model trained for one epoch
    first = evaluate(GRU4Rec(**dict(SMALL, n_epochs=1)).fit(log), log, cutoffs=(20,)).metrics
    assert model.history_[0].valid == {k: first[k] for k in ("recall@20", "mrr@20")}


def test_valid_must_be_a_validation_function():
    with pytest.raises(ConfigError, match=r"prnn.evaluation.validation\(events\)"):
        GRU4Rec(**dict(SMALL, n_epochs=1)).fit(_cyclic(), valid=_cyclic())


needs_cpp_compiler = pytest.mark.skipif(
    not any(shutil.which(name) for name in ("g++", "c++", "clang++")),
    reason="torch.compile on the CPU needs a C++ compiler",
)


@needs_cpp_compiler
def test_compiled_training_repeats_exactly_with_the_seed():
    settings = dict(SMALL, n_epochs=2, dropout_p_hidden=0.3, logq=1.0, momentum=0.2)
    first = GRU4Rec(**settings).fit(_cyclic(), compile=True)
    second = GRU4Rec(**settings).fit(_cyclic(), compile=True)
    assert [r.loss for r in first.history_] == [r.loss for r in second.history_]
    for name, tensor in first.network.state_dict().items():
        assert torch.equal(tensor, second.network.state_dict()[name]), name
    # and it learned what the eager model learns
    for step in range(6):
        assert first.recommend([f"c{step}"], k=1)[0][0] == f"c{(step + 1) % 6}"


@pytest.mark.parametrize("constrained, embedding", [(True, 0), (False, 8), (False, 0)])
def test_every_weight_and_bias_is_trained(constrained, embedding):
    settings = dict(SMALL, n_epochs=1, constrained_embedding=constrained, embedding=embedding)
    untrained = gru4rec_network(6, GRU4RecConfig(**settings))
    untrained.reset_parameters(torch.Generator().manual_seed(GRU4RecConfig().seed))
    model = GRU4Rec(**settings).fit(_cyclic())
    for name, tensor in model.network.state_dict().items():
        if name == "subnets.0.weight":  # the subnet's output multiplier, fixed at 1 in GRU4Rec
            assert tensor.item() == 1.0
            continue
        assert not torch.equal(tensor, untrained.state_dict()[name]), f"{name} never changed"


def test_fewer_sessions_than_lanes_train():
    """The batch starts with as many lanes as there are sessions (30 here, not 64)."""
    model = GRU4Rec(layers=(8,), batch_size=64, n_sample=4, n_epochs=1).fit(_cyclic(30))
    assert model.history_[0].n_events == 30 * 5 and np.isfinite(model.history_[0].loss)


# recommendations of the files in tests/data, recorded by the code that wrote them (GRU4Rec's
# own network, before the one-network engine renamed its tensors)
LEGACY_RECOMMENDATIONS = {
    "constrained": [
        ("c3", 4.54741),
        ("c2", 0.42398),
        ("c4", 0.39125),
        ("c5", -0.347),
        ("c1", -0.42925),
        ("c0", -1.87624),
    ],
    "separate": [
        ("c3", 3.43768),
        ("c4", 1.10439),
        ("c2", 0.54592),
        ("c1", 0.2733),
        ("c5", -2.41241),
        ("c0", -2.90666),
    ],
}


@pytest.mark.parametrize("mode", list(LEGACY_RECOMMENDATIONS))
def test_model_files_from_before_the_one_network_engine_load_and_score_the_same(mode):
    from pathlib import Path

    path = Path(__file__).parent / "data" / f"gru4rec_before_one_network_{mode}.prnn"
    model = SessionRecommender.load(path)
    got = model.recommend(["c1", "c2"], k=6)
    assert [item for item, _ in got] == [item for item, _ in LEGACY_RECOMMENDATIONS[mode]]
    for (_, score), (_, expected) in zip(got, LEGACY_RECOMMENDATIONS[mode]):
        assert score == pytest.approx(expected, abs=1e-4)
