"""plan_steps (the training steps' index work, in bulk) against the same work step by step."""

from __future__ import annotations

import pytest
import torch

from prnn import losses
from prnn.models.gru4rec import DropoutSpec, GRU4RecConfig, GRU4RecNetwork, dropout_mask
from prnn.step_plan import plan_steps

N_ITEMS = 12
# lanes per step: full batches, then the batch shrinks at the end of the epoch
SIZES = [4, 4, 4, 3, 2]


def _steps(with_samples: bool, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    n = sum(SIZES)
    # few items, so that steps repeat items among inputs, targets and samples
    inputs = torch.randint(0, N_ITEMS, (n,), generator=generator)
    targets = torch.randint(0, N_ITEMS, (n,), generator=generator)
    samples = torch.randint(0, N_ITEMS, (len(SIZES), 5), generator=generator)
    log_q = (torch.randn(N_ITEMS, generator=generator), torch.randn(N_ITEMS, generator=generator))
    return inputs, targets, samples if with_samples else None, log_q


@pytest.mark.parametrize("with_log_q", [True, False])
@pytest.mark.parametrize("with_samples", [True, False])
@pytest.mark.parametrize(
    "constrained, embedding",
    [(True, 0), (False, 3), (False, 0)],
    ids=["constrained", "separate", "one-hot"],
)
def test_planned_steps_equal_the_per_step_index_work(
    constrained, embedding, with_samples, with_log_q
):
    network = GRU4RecNetwork(
        N_ITEMS, GRU4RecConfig(layers=(5,), constrained_embedding=constrained, embedding=embedding)
    )
    inputs, targets, samples, log_q = _steps(with_samples)
    log_q = log_q if with_log_q else None
    planned = plan_steps(
        mode=network.mode,
        n_items=N_ITEMS,
        inputs=inputs,
        targets=targets,
        sizes=SIZES,
        samples=samples,
        log_q=log_q,
        with_row_weights=True,
        embed_dropout=None,
        layer_dropout=[None],
        generator=None,
    )
    assert len(planned) == len(SIZES)
    start = 0
    for t, (size, step) in enumerate(zip(SIZES, planned)):
        step_inputs, step_targets = inputs[start : start + size], targets[start : start + size]
        start += size
        outputs = step_targets if samples is None else torch.cat([step_targets, samples[t]])
        expected = network._batch_rows(step_inputs, outputs)
        got = step.rows
        assert step.batch == size
        for field in ("rows", "output_columns", "input_rows", "input_columns", "bias_touched"):
            want, have = getattr(expected, field), getattr(got, field)
            if want is None:
                assert have is None, field
            else:
                assert torch.equal(have, want), (t, field)
        # each input reads its own item, and the one-hot sums it into the right row
        table_rows = got.rows if constrained else got.input_rows
        assert torch.equal(table_rows[got.input_columns], step_inputs)
        if constrained:
            assert torch.equal(got.input_positions[got.input_slots], got.input_columns)
            assert torch.equal(got.input_positions, torch.unique(got.input_columns))
        one_hot = got.input_one_hot()
        assert torch.equal(one_hot.sum(dim=1), torch.ones(size))
        column_log_q = None
        if log_q is not None:
            column_log_q = log_q[0][step_targets]
            if samples is not None:
                column_log_q = torch.cat([column_log_q, log_q[1][samples[t]]])
        torch.testing.assert_close(
            step.log_row_weight,
            losses.log_row_weights(got.output_columns, len(got.rows), column_log_q),
        )
        want_target_log_q = torch.zeros(size) if log_q is None else log_q[0][step_targets]
        torch.testing.assert_close(step.target_log_q, want_target_log_q)


def test_planned_dropout_masks_follow_the_generator_and_the_probabilities():
    inputs, targets, samples, _ = _steps(with_samples=True)
    specs = dict(embed_dropout=DropoutSpec(3, 0.5), layer_dropout=[None, DropoutSpec(4, 0.25)])

    def plan(generator):
        return plan_steps(
            mode="separate",
            n_items=N_ITEMS,
            inputs=inputs,
            targets=targets,
            sizes=SIZES,
            samples=samples,
            log_q=None,
            with_row_weights=False,
            generator=generator,
            **specs,
        )

    planned = plan(torch.Generator().manual_seed(3))
    again = plan(torch.Generator().manual_seed(3))
    # drawn in bulk: each mask's rows for the whole chunk, in step order, then the next mask
    generator = torch.Generator().manual_seed(3)
    embed = dropout_mask((sum(SIZES), 3), 0.5, generator)
    layer = dropout_mask((sum(SIZES), 4), 0.25, generator)
    start = 0
    for step, repeat, size in zip(planned, again, SIZES):
        assert step.layer_masks[0] is None
        assert torch.equal(step.embed_mask, embed[start : start + size])
        assert torch.equal(step.layer_masks[1], layer[start : start + size])
        assert torch.equal(step.embed_mask, repeat.embed_mask)
        assert set(step.layer_masks[1].unique().tolist()) <= {0.0, torch.tensor(1 / 0.75).item()}
        assert step.log_row_weight is None and step.target_log_q is None
        start += size
    no_dropout = plan(None)
    assert all(step.embed_mask is None for step in no_dropout)


def test_training_does_not_depend_on_the_chunk_size(monkeypatch):
    """Chunk boundaries (and sample-store refills inside a chunk) change nothing: with a
    single dropout mask per step, even the masks come out in the same order (on the CPU, whose
    generator draws in sequence)."""
    from prnn import training
    from prnn.models import GRU4Rec

    from .test_gru4rec import SMALL, _cyclic

    settings = dict(SMALL, n_epochs=2, dropout_p_hidden=0.3, logq=1.0, sample_store_size=40)
    whole = GRU4Rec(**settings).fit(_cyclic())
    monkeypatch.setattr(training, "CHUNK_STEPS", 3)
    chunked = GRU4Rec(**settings).fit(_cyclic())
    assert [r.loss for r in chunked.history_] == [r.loss for r in whole.history_]
    for name, tensor in whole.network.state_dict().items():
        assert torch.equal(chunked.network.state_dict()[name], tensor), name
