"""Adam and AdamW beside Adagrad: PyTorch's formulas on dense weights, lazy rows on item tables."""

from __future__ import annotations

import logging

import pytest
import torch

from prnn.errors import ConfigError
from prnn.models import PRNN, GRU4Rec
from prnn.optim import Adam

from .test_prnn import SMALL, _cyclic, _dense


def _grads(step: int, shapes):
    generator = torch.Generator().manual_seed(step)
    return [torch.randn(*shape, generator=generator) for shape in shapes]


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_dense_updates_equal_pytorchs_adam_and_adamw(weight_decay):
    start = [torch.randn(4, 3), torch.randn(5)]
    ours = [torch.nn.Parameter(p.clone()) for p in start]
    theirs = [torch.nn.Parameter(p.clone()) for p in start]
    optimizer = Adam(ours, [], learning_rate=0.01, weight_decay=weight_decay)
    reference = (
        torch.optim.AdamW(theirs, lr=0.01, weight_decay=weight_decay)
        if weight_decay
        else torch.optim.Adam(theirs, lr=0.01)
    )
    for step in range(6):
        grads = _grads(step, [(4, 3), (5,)])
        optimizer.step_dense(grads)
        for param, grad in zip(theirs, grads):
            param.grad = grad
        reference.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.data, b.data)


def test_rows_touched_every_step_follow_adam_and_untouched_rows_stay():
    table = torch.randn(6, 3)
    dense_copy = torch.nn.Parameter(table[:4].clone())
    optimizer = Adam([], [table], learning_rate=0.05)
    reference = torch.optim.Adam([dense_copy], lr=0.05)
    untouched = table[4:].clone()
    rows = torch.tensor([0, 1, 2, 3])
    for step in range(5):
        (grad,) = _grads(step, [(4, 3)])
        optimizer.step_dense([])  # counts the step, as the training step does
        optimizer.step_rows(table, rows, grad)
        dense_copy.grad = grad
        reference.step()
    torch.testing.assert_close(table[:4], dense_copy.data)
    assert torch.equal(table[4:], untouched)
    state = optimizer.state_tensors()
    assert torch.all(state["table_first_moment.0"][4:] == 0)
    assert state["step"].item() == 5


def test_models_learn_with_adam(cyclic_log):
    model = GRU4Rec(layers=(16,), batch_size=8, n_epochs=20, optimizer="adam", learning_rate=0.02)
    model.fit(cyclic_log)
    for item in (1, 2, 3, 4):
        assert model.recommend([item], k=1)[0][0] == item % 4 + 1
    prnn = PRNN(**{**SMALL, "learning_rate": 0.02}, n_epochs=20, optimizer="adamw")
    prnn.fit(_cyclic(), features={"img": _dense()})
    for step in range(6):
        assert prnn.recommend([f"c{step}"], k=1)[0][0] == f"c{(step + 1) % 6}"


def test_compiled_and_eager_adam_steps_agree(cyclic_log):
    settings = dict(layers=(8,), batch_size=8, n_epochs=2, optimizer="adam", learning_rate=0.01)
    eager = GRU4Rec(**settings).fit(cyclic_log, compile=False)._tensors()
    compiled = GRU4Rec(**settings).fit(cyclic_log, compile=True)._tensors()
    for name, tensor in eager.items():
        torch.testing.assert_close(compiled[name], tensor, rtol=1e-4, atol=1e-5)


def test_continued_training_carries_adams_state_and_refuses_another_optimisers(cyclic_log, caplog):
    settings = dict(layers=(8,), batch_size=8, n_epochs=1, learning_rate=0.01)
    adam = GRU4Rec(**settings, optimizer="adam").fit(cyclic_log, keep_optimizer_state=True)
    assert adam.optimizer_state_["step"].item() > 0
    continued = GRU4Rec(**settings, optimizer="adam").fit(
        cyclic_log, init=adam, keep_optimizer_state=True
    )
    # the step count went on from the saved one
    assert continued.optimizer_state_["step"].item() == 2 * adam.optimizer_state_["step"].item()
    with caplog.at_level(logging.WARNING):
        GRU4Rec(**settings, momentum=0.1).fit(cyclic_log, init=adam)
    assert "another optimiser's than adagrad" in caplog.text


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(optimizer="adam", momentum=0.2), "momentum is Adagrad's"),
        (dict(optimizer="adam", weight_decay=0.1), "weight_decay applies to optimizer=adamw"),
        (dict(optimizer="sgd"), "'optimizer' of GRU4RecConfig must be one of"),
    ],
)
def test_settings_that_do_not_go_together(settings, message):
    with pytest.raises(ConfigError, match=message):
        GRU4Rec(**settings)
