"""Truncated back-propagation through time over the last k steps of each lane (``bptt=k``).

The hand-written step with a window of past steps against autograd through the same steps, for
every architecture of the network tests; lane changes (a session restart, a dropped lane) and the
window's length; and training through the loop and the models.
"""

from __future__ import annotations

import logging

import pytest
import torch

from prnn import load_model
from prnn.bundled import example_events_path
from prnn.cli import main
from prnn.config import read_preset
from prnn.data import read_events, split_sessions_randomly
from prnn.errors import ConfigError
from prnn.evaluation import evaluate
from prnn.models import PRNN, GRU4Rec, GRU4RecConfig, Pop
from prnn.network import BackpropWindow
from prnn.training import TRAINING_METHODS, make_step_loss
from prnn.training.loop import _apply_lane_changes
from prnn.training.step_plan import plan_steps

from .test_network import ARCHITECTURES, N_ITEMS, _config, _hidden, _log_q, _network
from .test_prnn import SMALL, _cyclic, _dense, _sparse

# four steps of four lanes; before step 2 lane 1 starts a new session, before step 3 lane 1 is
# dropped (its sessions ran out)
STEP_INPUTS = [[1, 3, 3, 0], [2, 5, 1, 0], [4, 7, 6, 3], [0, 2, 5]]
STEP_TARGETS = [[2, 5, 1, 0], [4, 3, 6, 3], [0, 6, 2, 5], [1, 4, 7]]
SAMPLES = torch.tensor(
    [[6, 6, 0, 4, 2, 1], [7, 1, 2, 2, 5, 3], [3, 0, 1, 4, 4, 7], [5, 6, 0, 2, 3, 1]]
)
LANE_CHANGES = {
    2: [(torch.tensor([1]), None)],
    3: [(None, torch.tensor([0, 2, 3]))],
}
SHORT = (STEP_INPUTS, STEP_TARGETS, SAMPLES, LANE_CHANGES)


def _long_scenario():
    """Twelve steps: lanes restart sessions now and then, and two lanes are dropped."""
    generator = torch.Generator().manual_seed(0)
    sizes = [5] * 6 + [4] * 3 + [3] * 3

    def items(n):
        return torch.randint(0, N_ITEMS, (n,), generator=generator).tolist()

    changes = {
        3: [(torch.tensor([0, 4]), None)],
        6: [(torch.tensor([2]), torch.tensor([0, 1, 2, 4]))],
        9: [(None, torch.tensor([1, 2, 3]))],
        10: [(torch.tensor([1]), None)],
    }
    samples = torch.randint(0, N_ITEMS, (len(sizes), 6), generator=generator)
    return [items(n) for n in sizes], [items(n) for n in sizes], samples, changes


LONG = _long_scenario()


class RecordingOptimizer:
    """Keeps the gradients a step hands the optimiser; changes no weight."""

    def __init__(self, network) -> None:
        self.names = network.parameter_names
        self.dense: dict[str, torch.Tensor] = {}
        self.rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def step_dense(self, grads) -> None:
        self.dense = {n: g for n, g in zip(self.names, grads) if g is not None}
        self.rows = []

    def step_rows(self, table, rows, grad, touched=None) -> None:
        assert len(torch.unique(rows)) == len(rows), "a table's update rows repeat"
        self.rows.append((table, rows, grad))


def _plan(network, config, scenario=SHORT):
    step_inputs, step_targets, samples, _ = scenario
    step_loss = make_step_loss(config)
    return plan_steps(
        id_mode=network.id_mode,
        n_items=N_ITEMS,
        inputs=torch.tensor([i for step in step_inputs for i in step]),
        targets=torch.tensor([i for step in step_targets for i in step]),
        sizes=[len(step) for step in step_inputs],
        samples=samples,
        log_q=_log_q() if config.loss == "cross-entropy" else None,
        with_row_weights=step_loss.needs_row_weights,
        dropout=network.dropout_specs(),
        generator=torch.Generator().manual_seed(5),
        sparse_features=network.sparse_features(),
        row_dropout=network.output_id_dropout,
    )


def _start_states(network, n_lanes):
    generator = torch.Generator().manual_seed(2)
    return [torch.randn(h.shape, generator=generator) for h in network.initial_hidden(n_lanes)]


def _by_hand(network, config, steps, bptt, lane_changes=LANE_CHANGES):
    """The last step's gradients, as the hand-written step hands them to the optimiser."""
    step_loss = make_step_loss(config)
    optimizer = RecordingOptimizer(network)
    window = BackpropWindow(bptt) if bptt > 1 else None
    hidden = _start_states(network, steps[0].batch)
    for index, step in enumerate(steps):
        if index in lane_changes:
            if window is not None:
                window.lanes_changed(lane_changes[index], len(hidden[0]))
            hidden = _apply_lane_changes(hidden, lane_changes[index])
        _, hidden = network.train_step(step, hidden, step_loss, optimizer, window=window)
    return optimizer


def _by_autograd(network, config, steps, bptt, lane_changes=LANE_CHANGES):
    """The last step's gradients by autograd through its last ``bptt`` steps (the earlier
    ones run without a graph: the state they leave is a constant)."""
    step_loss = make_step_loss(config)
    tables = network.item_tables()
    for table in tables:
        table.requires_grad_(True)
    hidden = _start_states(network, steps[0].batch)
    try:
        for index, step in enumerate(steps):
            if index in lane_changes:
                hidden = _apply_lane_changes(hidden, lane_changes[index])
            with torch.set_grad_enabled(index >= len(steps) - bptt):
                scores, hidden, _ = network.forward_train(step, hidden, network.gather_rows(step))
        _, grad_scores = step_loss.value_and_gradient(scores.detach(), *step_loss.prepared(step))
        parameters = dict(network.named_parameters())
        inputs = list(parameters.values()) + tables
        grads = torch.autograd.grad(scores, inputs, grad_scores, allow_unused=True)
    finally:
        for table in tables:
            table.requires_grad_(False)
    return dict(zip(parameters, grads[: len(parameters)])), grads[len(parameters) :]


def _dense_rows(recorded, table):
    """The recorded row updates of ``table`` as a full-table gradient."""
    full = torch.zeros_like(table)
    for known, rows, grad in recorded.rows:
        if known is table:
            full[rows] += grad
    return full


def _check_against_autograd(architecture, loss, bptt, scenario):
    network = _network(architecture)
    config = _config(loss)
    steps = _plan(network, config, scenario)
    lane_changes = scenario[3]
    recorded = _by_hand(network, config, steps, bptt, lane_changes)
    expected_dense, expected_tables = _by_autograd(network, config, steps, bptt, lane_changes)
    assert set(recorded.dense) == {n for n, g in expected_dense.items() if g is not None}
    for name, grad in recorded.dense.items():
        torch.testing.assert_close(grad, expected_dense[name], msg=name)
    for table, expected in zip(network.item_tables(), expected_tables):
        got = _dense_rows(recorded, table)
        if table is network.output_bias and network.output == "id":
            expected = expected * (got != 0)  # the reference moves the outputs' bias only
        torch.testing.assert_close(got, expected if expected is not None else torch.zeros_like(got))


@pytest.mark.parametrize("bptt", [1, 2, 3])
@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_back_propagation_through_the_window_equals_autograd(architecture, loss, bptt):
    _check_against_autograd(architecture, loss, bptt, SHORT)


@pytest.mark.parametrize("bptt", [6, 10])
@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_a_long_window_over_restarts_and_dropped_lanes_equals_autograd(architecture, bptt):
    _check_against_autograd(architecture, "cross-entropy", bptt, LONG)


def test_the_window_reaches_further_back_only_as_far_as_it_is_long():
    """bptt=2 and bptt=3 differ on the last step (which reaches step 1 only with 3), and a
    window longer than the steps so far equals one just long enough."""
    network = _network("gru4rec-constrained")
    config = _config("cross-entropy")
    steps = _plan(network, config)
    two, three = (_by_hand(network, config, steps, k) for k in (2, 3))
    four, ten = (_by_hand(network, config, steps, k) for k in (4, 10))
    name = "subnets.0.layers.0.weight_hh"
    assert not torch.allclose(two.dense[name], three.dense[name])
    torch.testing.assert_close(four.dense[name], ten.dense[name])


def test_a_lane_that_restarts_its_session_cuts_its_chain():
    """A lane reset before every step: no gradient reaches back, whatever the window."""
    network = _network("prnn-separate-learned-weights")
    config = _config("cross-entropy")
    steps = _plan(network, config)[:3]
    every_lane = torch.arange(4)
    step_loss = make_step_loss(config)
    results = []
    for bptt in (1, 3):
        optimizer = RecordingOptimizer(network)
        window = BackpropWindow(bptt) if bptt > 1 else None
        hidden = _hidden(network)
        for index, step in enumerate(steps):
            if index and window is not None:
                window.lanes_changed([(every_lane, None)], 4)
            if index:
                hidden = _apply_lane_changes(hidden, [(every_lane, None)])
            _, hidden = network.train_step(step, hidden, step_loss, optimizer, window=window)
        results.append(optimizer)
    for name, grad in results[0].dense.items():
        torch.testing.assert_close(results[1].dense[name], grad, msg=name)


def test_models_learn_with_bptt(cyclic_log):
    model = GRU4Rec(layers=(16,), batch_size=8, n_epochs=20, bptt=3).fit(cyclic_log)
    assert model.config.bptt == 3
    for item in (1, 2, 3, 4):
        assert model.recommend([item], k=1)[0][0] == item % 4 + 1


@pytest.mark.parametrize("training", TRAINING_METHODS)
def test_every_prnn_training_method_learns_with_bptt(training):
    model = PRNN(**SMALL, n_epochs=20, bptt=4, training=training)
    model.fit(_cyclic(), features={"img": _dense(), "txt": _sparse()})
    for step in range(6):
        assert model.recommend([f"c{step}"], k=1)[0][0] == f"c{(step + 1) % 6}"


def test_bptt_beats_popularity_on_real_clicks():
    train, test, _ = split_sessions_randomly(read_events(example_events_path()), 0.1, seed=0)
    model = GRU4Rec(layers=(64,), n_epochs=2, bptt=5).fit(train)
    recall = evaluate(model, test, cutoffs=(20,)).metrics["recall@20"]
    popular = evaluate(Pop().fit(train), test, cutoffs=(20,)).metrics["recall@20"]
    assert recall > 2 * popular, (recall, popular)


def test_bptt_trains_eagerly_and_says_so_when_compile_is_asked(cyclic_log, caplog):
    with caplog.at_level(logging.WARNING, logger="prnn"):
        GRU4Rec(layers=(8,), batch_size=8, n_epochs=1, bptt=2).fit(cyclic_log, compile=True)
    assert "bptt > 1 runs the step eagerly: --compile is ignored" in caplog.text


def test_bptt_must_be_at_least_one():
    with pytest.raises(ConfigError, match="bptt"):
        GRU4RecConfig(bptt=0)


def test_the_long_history_preset_back_propagates_through_several_steps():
    settings = read_preset("long_history")
    assert settings["bptt"] > 1 and settings["loss"] == "bpr-max"
    assert GRU4Rec(**settings).config.bptt == settings["bptt"]
    prnn = PRNN(**settings, training="alternating")
    assert prnn.config.bptt == settings["bptt"] and prnn.config.training == "alternating"


def test_train_with_the_long_history_preset_from_the_command_line(tmp_path, capsys):
    model = tmp_path / "long.prnn"
    arguments = [
        "train",
        str(example_events_path()),
        "--model",
        "gru4rec",
        "--preset",
        "long_history",
        "--set",
        "n_epochs=1",
        "--set",
        "layers=16",
        "--out",
        str(model),
        "-q",
    ]
    assert main(arguments) == 0, capsys.readouterr().err
    assert load_model(model).config.bptt == read_preset("long_history")["bptt"]
