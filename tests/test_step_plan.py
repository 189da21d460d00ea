"""plan_steps (the training steps' index work, in bulk) against the same work step by step."""

from __future__ import annotations

import pytest
import torch

from prnn import losses
from prnn.network import DropoutSpec, FeatureLookup, dropout_mask
from prnn.network.sparse import bag_projection
from prnn.training.step_plan import plan_steps

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


def _rows_by_hand(id_mode, step_inputs, outputs) -> dict:
    """One step's rows the plain way: ``torch.unique`` of its items."""
    batch = len(step_inputs)
    if id_mode == "constrained":
        rows, inverse = torch.unique(torch.cat([step_inputs, outputs]), return_inverse=True)
        output_columns = inverse[batch:]
        return dict(
            rows=rows,
            output_columns=output_columns,
            input_rows=None,
            input_columns=inverse[:batch],
            bias_touched=torch.unique(output_columns),
        )
    rows, output_columns = torch.unique(outputs, return_inverse=True)
    input_rows = input_columns = None
    if id_mode is not None:
        input_rows, input_columns = torch.unique(step_inputs, return_inverse=True)
    return dict(
        rows=rows,
        output_columns=output_columns,
        input_rows=input_rows,
        input_columns=input_columns,
        bias_touched=None,
    )


@pytest.mark.parametrize("with_log_q", [True, False])
@pytest.mark.parametrize("with_samples", [True, False])
@pytest.mark.parametrize("id_mode", ["constrained", "separate", "one-hot", None])
def test_planned_steps_equal_the_per_step_index_work(id_mode, with_samples, with_log_q):
    inputs, targets, samples, log_q = _steps(with_samples)
    log_q = log_q if with_log_q else None
    planned = plan_steps(
        id_mode=id_mode,
        n_items=N_ITEMS,
        inputs=inputs,
        targets=targets,
        sizes=SIZES,
        samples=samples,
        log_q=log_q,
        with_row_weights=True,
        dropout=[None, None],
        generator=None,
    )
    assert len(planned) == len(SIZES)
    start = 0
    for t, (size, step) in enumerate(zip(SIZES, planned)):
        step_inputs, step_targets = inputs[start : start + size], targets[start : start + size]
        start += size
        outputs = step_targets if samples is None else torch.cat([step_targets, samples[t]])
        expected = _rows_by_hand(id_mode, step_inputs, outputs)
        got = step.rows
        assert step.batch == size and torch.equal(step.inputs, step_inputs)
        for field, want in expected.items():
            have = getattr(got, field)
            if want is None:
                assert have is None, field
            else:
                assert torch.equal(have, want), (t, field)
        assert step.masks == [None, None]
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
        if id_mode is None:
            continue
        # each input reads its own item, and the one-hot sums it into the right row
        table_rows = got.rows if id_mode == "constrained" else got.input_rows
        assert torch.equal(table_rows[got.input_columns], step_inputs)
        if id_mode == "constrained":
            assert torch.equal(got.input_positions[got.input_slots], got.input_columns)
            assert torch.equal(got.input_positions, torch.unique(got.input_columns))
        one_hot = got.input_one_hot()
        assert torch.equal(one_hot.sum(dim=1), torch.ones(size))


def test_planned_sparse_bags_equal_an_embedding_bag_of_each_step():
    generator = torch.Generator().manual_seed(7)
    dim = 30
    # each item: a few distinct columns, some shared between items
    rows = [torch.randperm(dim, generator=generator)[: 1 + i % 4].sort().values for i in range(12)]
    lengths = torch.tensor([len(r) for r in rows])
    lookup = FeatureLookup(dim=dim, sparse=True, n_items=N_ITEMS, nnz=int(lengths.sum()))
    lookup.indptr.copy_(torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)]))
    lookup.indices.copy_(torch.cat(rows))
    lookup.values.uniform_(0.1, 1.0, generator=generator)
    table = torch.randn(dim, 6, generator=generator)
    inputs, targets, samples, _ = _steps(with_samples=True)
    planned = plan_steps(
        id_mode=None,
        n_items=N_ITEMS,
        inputs=inputs,
        targets=targets,
        sizes=SIZES,
        samples=samples,
        log_q=None,
        with_row_weights=False,
        dropout=[],
        generator=None,
        sparse_features={"txt": lookup},
    )
    start = 0
    for size, step in zip(SIZES, planned):
        step_inputs = inputs[start : start + size]
        start += size
        columns, values, offsets = lookup.bag(step_inputs)
        bag = step.bags["txt"]
        assert torch.equal(bag.columns, torch.unique(columns))
        assert torch.equal(bag.columns[bag.positions], columns)
        assert torch.equal(bag.values, values) and torch.equal(bag.offsets, offsets)
        assert torch.equal(
            bag.lanes,
            torch.repeat_interleave(
                torch.arange(size), offsets.diff(append=torch.tensor([len(columns)]))
            ),
        )
        expected = torch.nn.functional.embedding_bag(
            columns, table, offsets, mode="sum", per_sample_weights=values
        )
        torch.testing.assert_close(bag_projection(table[bag.columns], bag), expected)


def test_planned_dropout_masks_follow_the_generator_and_the_probabilities():
    inputs, targets, samples, _ = _steps(with_samples=True)
    specs = dict(dropout=[DropoutSpec(3, 0.5), None, DropoutSpec(4, 0.25)])

    def plan(generator):
        return plan_steps(
            id_mode="separate",
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
        assert step.masks[1] is None
        assert torch.equal(step.masks[0], embed[start : start + size])
        assert torch.equal(step.masks[2], layer[start : start + size])
        assert torch.equal(step.masks[0], repeat.masks[0])
        assert set(step.masks[2].unique().tolist()) <= {0.0, torch.tensor(1 / 0.75).item()}
        assert step.log_row_weight is None and step.target_log_q is None
        start += size
    no_dropout = plan(None)
    assert all(step.masks == [None, None, None] for step in no_dropout)


def test_training_does_not_depend_on_the_chunk_size(monkeypatch):
    """Chunk boundaries (and sample-store refills inside a chunk) change nothing: with a
    single dropout mask per step, even the masks come out in the same order (on the CPU, whose
    generator draws in sequence)."""
    from prnn.models import GRU4Rec
    from prnn.training import loop

    from .test_gru4rec import SMALL, _cyclic

    settings = dict(SMALL, n_epochs=2, dropout_p_hidden=0.3, logq=1.0, sample_store_size=40)
    whole = GRU4Rec(**settings).fit(_cyclic())
    monkeypatch.setattr(loop, "CHUNK_STEPS", 3)
    chunked = GRU4Rec(**settings).fit(_cyclic())
    assert [r.loss for r in chunked.history_] == [r.loss for r in whole.history_]
    for name, tensor in whole.network.state_dict().items():
        assert torch.equal(chunked.network.state_dict()[name], tensor), name


def test_planning_ahead_in_a_worker_thread_changes_nothing(monkeypatch):
    """The next chunk is planned while the current one trains: same draws, same order, so the
    same model as planning each chunk when it is needed (several epochs of small chunks)."""
    from prnn.models import GRU4Rec
    from prnn.training import loop

    from .test_gru4rec import SMALL, _cyclic

    settings = dict(SMALL, n_epochs=3, dropout_p_hidden=0.3, dropout_p_embed=0.2, logq=1.0)
    monkeypatch.setattr(loop, "CHUNK_STEPS", 4)
    models = []
    for ahead in (False, True):
        monkeypatch.setattr(loop, "PLAN_AHEAD", ahead)
        models.append(GRU4Rec(**settings).fit(_cyclic()))
    inline, ahead = models
    assert [r.loss for r in ahead.history_] == [r.loss for r in inline.history_]
    for name, tensor in inline.network.state_dict().items():
        assert torch.equal(ahead.network.state_dict()[name], tensor), name
