"""The full softmax: every item scored at every step, instead of the targets and samples."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prnn.bundled import example_events_path
from prnn.data import read_events, split_sessions_randomly
from prnn.errors import ConfigError
from prnn.evaluation import evaluate
from prnn.models import PRNN, GRU4Rec, Pop
from prnn.training import CrossEntropyStepLoss
from prnn.training.step_plan import plan_steps

from .test_prnn import SMALL, _cyclic, _dense


def _plan(id_mode):
    inputs = torch.tensor([3, 1, 3, 0, 4, 4, 2])
    targets = torch.tensor([1, 2, 0, 4, 2, 3, 1])
    steps = plan_steps(
        id_mode=id_mode,
        n_items=6,
        inputs=inputs,
        targets=targets,
        sizes=[3, 4],
        samples=None,
        log_q=None,
        with_row_weights=True,
        dropout=[],
        generator=None,
        all_items=True,
    )
    return inputs, targets, steps


@pytest.mark.parametrize("id_mode", ["constrained", "separate"])
def test_every_step_scores_all_items_once_and_its_columns_are_the_targets(id_mode):
    inputs, targets, steps = _plan(id_mode)
    for step, lanes in zip(steps, (slice(0, 3), slice(3, 7))):
        assert step.rows.rows.tolist() == list(range(6))
        assert step.rows.output_columns.tolist() == targets[lanes].tolist()
        assert torch.equal(step.log_row_weight, torch.zeros(6))
        assert torch.equal(step.target_log_q, torch.zeros(len(step.inputs)))
        assert step.rows.bias_touched is None  # every item is an output: every bias moves
        # each input finds its own item's row
        if id_mode == "constrained":
            read = step.rows.input_positions[step.rows.input_slots]
            assert step.rows.input_columns.tolist() == inputs[lanes].tolist()
        else:
            read = step.rows.input_rows[step.rows.input_columns]
        assert read.tolist() == inputs[lanes].tolist()


def test_the_step_loss_is_the_cross_entropy_over_all_items():
    _, targets, steps = _plan("constrained")
    step = steps[1]
    scores = torch.randn(4, 6, generator=torch.Generator().manual_seed(0)) * 3
    loss, gradient = CrossEntropyStepLoss(scale=0.5).value_and_gradient(
        scores.clone(), *CrossEntropyStepLoss(0.5).prepared(step)
    )
    leaf = scores.clone().requires_grad_()
    expected = F.cross_entropy(leaf, targets[3:], reduction="sum") * 0.5
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(gradient, leaf.grad)


def test_models_learn_with_the_full_softmax(cyclic_log):
    model = GRU4Rec(layers=(16,), batch_size=8, n_epochs=20, full_softmax=True).fit(cyclic_log)
    for item in (1, 2, 3, 4):
        assert model.recommend([item], k=1)[0][0] == item % 4 + 1
    prnn = PRNN(**SMALL, n_epochs=20, full_softmax=True).fit(_cyclic(), features={"img": _dense()})
    for step in range(6):
        assert prnn.recommend([f"c{step}"], k=1)[0][0] == f"c{(step + 1) % 6}"


def test_full_softmax_beats_popularity_on_real_clicks():
    train, test, _ = split_sessions_randomly(read_events(example_events_path()), 0.1, seed=0)
    model = GRU4Rec(layers=(64,), n_epochs=2, full_softmax=True).fit(train, compile=False)
    recall = evaluate(model, test, cutoffs=(20,)).metrics["recall@20"]
    popular = evaluate(Pop().fit(train), test, cutoffs=(20,)).metrics["recall@20"]
    assert recall > 2 * popular, (recall, popular)


def test_full_softmax_takes_cross_entropy_only():
    with pytest.raises(ConfigError, match="full_softmax=true scores every item with cross-entropy"):
        GRU4Rec(loss="bpr-max", full_softmax=True)
