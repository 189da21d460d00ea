"""The index work of the training steps, done in bulk for a chunk of steps at a time.

Everything a training step needs besides the weights and the hidden states depends only on the
data, the negative samples and the dropout generator: the distinct item rows a mini-batch
touches and where each input and output column points, the rows whose bias the reference
updates, the sparse feature inputs' columns, the sampled softmax's per-row weights, the dropout
masks. Done step by step, that is
some forty small tensor operations per step, whose fixed costs (not their arithmetic) took about
a quarter of the training time. ``plan_steps`` does the same work for many steps with a few
large operations and hands out each step's share as views (``StepBatch``).

The results equal per-step ones (``torch.unique`` of the step's items, ``losses.log_row_weights``,
``dropout_mask``): rows come out sorted by item within each step, as ``torch.unique`` gives them.
Only the dropout masks are drawn in another order: all of a chunk's rows for one mask, then the
next mask, instead of step by step. On the CPU, whose generator draws in sequence, a single mask
per step (or a chunk of one step) gives the same masks either way; a CUDA generator ties values
to each call's shape, so there the masks also depend on the chunk size.
"""

from __future__ import annotations

import torch

from prnn.losses import log_row_weights
from prnn.network import BatchRows, DropoutSpec, FeatureLookup, SparseBag, StepBatch, dropout_mask

#: steps planned at once: large enough to spread the fixed costs, small enough to bound a
#: chunk's memory (rsc15 preset: ~530k output columns, so tens of MB of int64 keys and indices,
#: plus 3 MB per dropout mask; at batch 240 and 512 units a mask is ~125 MB)
CHUNK_STEPS = 256


def _distinct_per_step(
    items: torch.Tensor, step_of: torch.Tensor, n_steps: int, n_items: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per step, the distinct values of ``items`` (sorted) and each item's index among them.

    Returns (distinct values of all steps, flat; the step of each; the flat index where each
    step's run starts; each item's index within its step's run).
    """
    keys = step_of * n_items + items
    unique_keys, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    distinct_step = torch.div(unique_keys, n_items, rounding_mode="floor")
    counts = torch.bincount(distinct_step, minlength=n_steps)
    starts = torch.cumsum(counts, 0) - counts
    return unique_keys - distinct_step * n_items, distinct_step, starts, inverse - starts[step_of]


def _split(flat: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, ...]:
    return torch.split(flat, sizes)


def _bags(
    lookup: FeatureLookup,
    inputs: torch.Tensor,
    input_step: torch.Tensor,
    input_start: torch.Tensor,
    n_steps: int,
) -> list[SparseBag]:
    """Each step's ``SparseBag`` of one sparse feature: its inputs' non-zeros, and the
    distinct columns they use."""
    device = inputs.device
    starts = lookup.indptr[inputs]
    lengths = lookup.indptr[inputs + 1] - starts
    offsets = torch.cumsum(lengths, 0) - lengths
    n_nonzeros = int(lengths.sum())
    flat = torch.repeat_interleave(starts - offsets, lengths) + torch.arange(
        n_nonzeros, device=device
    )
    columns, values = lookup.indices[flat], lookup.values[flat]
    nonzero_input = torch.repeat_interleave(torch.arange(len(inputs), device=device), lengths)
    nonzero_step = input_step[nonzero_input]
    distinct, column_step, _, positions = _distinct_per_step(
        columns, nonzero_step, n_steps, lookup.dim
    )
    # offsets and lanes within each step
    step_nonzeros = torch.bincount(nonzero_step, minlength=n_steps)
    step_first = torch.cumsum(step_nonzeros, 0) - step_nonzeros
    local_offsets = offsets - step_first[input_step]
    lanes = nonzero_input - input_start[nonzero_step]
    column_counts = torch.bincount(column_step, minlength=n_steps).tolist()
    nonzero_counts = step_nonzeros.tolist()
    sizes = torch.bincount(input_step, minlength=n_steps).tolist()
    return [
        SparseBag(*parts)
        for parts in zip(
            _split(distinct, column_counts),
            _split(positions, nonzero_counts),
            _split(values, nonzero_counts),
            _split(local_offsets, sizes),
            _split(lanes, nonzero_counts),
        )
    ]


def plan_steps(
    *,
    id_mode: str | None,
    n_items: int,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    sizes: list[int],
    samples: torch.Tensor | None,
    log_q: tuple[torch.Tensor, torch.Tensor] | None,
    with_row_weights: bool,
    dropout: list[DropoutSpec | None],
    generator: torch.Generator | None,
    sparse_features: dict[str, FeatureLookup] | None = None,
    row_dropout: float = 0.0,
    all_items: bool = False,
) -> list[StepBatch]:
    """Plan ``len(sizes)`` consecutive training steps.

    Args:
        id_mode: how the network's ID input reads items ("constrained", "separate", "one-hot";
            None = no ID input).
        n_items: item-table rows.
        inputs, targets: (N,) item indices of the steps' inputs and targets, step after step;
            step t has ``sizes[t]`` lanes.
        samples: (steps, S) shared negative samples of each step; None = no extra samples.
        log_q: per-item logQ corrections (for targets, for samples), or None.
        with_row_weights: compute the sampled softmax's row weights (cross-entropy).
        dropout: the masks each step reads, in order (``network.dropout_specs()``); None = no
            mask there.
        generator: draws the dropout masks; None = no dropout at all.
        sparse_features: the sparse feature inputs to bag, by name.
        row_dropout: the probability that a row's ID output part is left out of a step
            (``StepBatch.row_keep``; drawn after the dropout masks), 0 = never.
        all_items: the full softmax: every step's rows are all items (each once, weight 1,
            no logQ), its output columns the targets; ``samples`` and ``log_q`` are unused.
    """
    if all_items:
        return _plan_all_items(
            id_mode=id_mode,
            n_items=n_items,
            inputs=inputs,
            targets=targets,
            sizes=sizes,
            with_row_weights=with_row_weights,
            dropout=dropout,
            generator=generator,
            sparse_features=sparse_features,
            row_dropout=row_dropout,
        )
    device = inputs.device
    n_steps, n_inputs = len(sizes), len(inputs)
    size_t = torch.tensor(sizes, device=device)
    n_samples = 0 if samples is None else samples.shape[1]
    step_ids = torch.arange(n_steps, device=device)
    input_step = torch.repeat_interleave(step_ids, size_t)

    # the steps' output columns, step after step: its lanes' targets, then its samples
    output_sizes = [size + n_samples for size in sizes]
    output_start = torch.cumsum(size_t + n_samples, 0) - (size_t + n_samples)
    input_start = torch.cumsum(size_t, 0) - size_t
    target_position = output_start[input_step] + torch.arange(n_inputs, device=device)
    target_position -= input_start[input_step]
    outputs = torch.empty(n_inputs + n_steps * n_samples, dtype=torch.int64, device=device)
    outputs[target_position] = targets
    if samples is not None:
        sample_position = (output_start + size_t)[:, None] + torch.arange(n_samples, device=device)
        outputs[sample_position.reshape(-1)] = samples.reshape(-1)
    output_step = torch.repeat_interleave(step_ids, size_t + n_samples)

    none = [None] * n_steps
    input_rows = input_columns = bias_touched = input_positions = input_slots = none
    if id_mode == "constrained":
        # inputs and outputs share the output table: one set of rows for both
        rows, row_step, row_start, columns = _distinct_per_step(
            torch.cat([inputs, outputs]), torch.cat([input_step, output_step]), n_steps, n_items
        )
        input_local, output_columns = columns[:n_inputs], columns[n_inputs:]
        # the bias rows the reference touches are the outputs' only
        is_output = torch.zeros(len(rows), dtype=torch.bool, device=device)
        is_output[row_start[output_step] + output_columns] = True
        output_rows = is_output.nonzero().squeeze(1)
        output_row_step = row_step[output_rows]
        bias_touched = _split(
            output_rows - row_start[output_row_step],
            torch.bincount(output_row_step, minlength=n_steps).tolist(),
        )
        positions, position_step, _, slots = _distinct_per_step(
            input_local, input_step, n_steps, n_items
        )
        input_positions = _split(
            positions, torch.bincount(position_step, minlength=n_steps).tolist()
        )
        input_slots = _split(slots, sizes)
        input_columns = _split(input_local, sizes)
    else:
        rows, row_step, row_start, output_columns = _distinct_per_step(
            outputs, output_step, n_steps, n_items
        )
        if id_mode is not None:
            distinct_inputs, input_row_step, _, input_local = _distinct_per_step(
                inputs, input_step, n_steps, n_items
            )
            input_rows = _split(
                distinct_inputs, torch.bincount(input_row_step, minlength=n_steps).tolist()
            )
            input_columns = _split(input_local, sizes)
    row_counts = torch.bincount(row_step, minlength=n_steps).tolist()

    log_row_weight = target_log_q = none
    if with_row_weights:
        column_log_q = None
        target_correction = torch.zeros(n_inputs, device=device)
        if log_q is not None:
            target_correction = log_q[0][targets]
            column_log_q = torch.empty(len(outputs), device=device)
            column_log_q[target_position] = target_correction
            if samples is not None:
                column_log_q[sample_position.reshape(-1)] = log_q[1][samples.reshape(-1)]
        # all steps' rows at once: each output column points at its step's run of rows
        all_row_weights = log_row_weights(
            row_start[output_step] + output_columns, len(rows), column_log_q
        )
        log_row_weight = _split(all_row_weights, row_counts)
        target_log_q = _split(target_correction, sizes)

    return _assemble(
        inputs=inputs,
        sizes=sizes,
        input_step=input_step,
        input_start=input_start,
        row_counts=row_counts,
        rows=_split(rows, row_counts),
        output_columns=_split(output_columns, output_sizes),
        input_rows=input_rows,
        input_columns=input_columns,
        bias_touched=bias_touched,
        input_positions=input_positions,
        input_slots=input_slots,
        log_row_weight=log_row_weight,
        target_log_q=target_log_q,
        dropout=dropout,
        generator=generator,
        sparse_features=sparse_features,
        row_dropout=row_dropout,
    )


def _assemble(
    *,
    inputs: torch.Tensor,
    sizes: list[int],
    input_step: torch.Tensor,
    input_start: torch.Tensor,
    row_counts: list[int],
    rows,
    output_columns,
    input_rows,
    input_columns,
    bias_touched,
    input_positions,
    input_slots,
    log_row_weight,
    target_log_q,
    dropout: list[DropoutSpec | None],
    generator: torch.Generator | None,
    sparse_features: dict[str, FeatureLookup] | None,
    row_dropout: float,
) -> list[StepBatch]:
    """The planned steps from their per-step row parts (sequences, one entry per step): draws
    the dropout masks, then the row dropout, bags the sparse inputs, and builds each step."""
    device = inputs.device
    n_steps, n_inputs = len(sizes), len(inputs)
    none = [None] * n_steps

    def masks(spec: DropoutSpec | None):
        if spec is None or generator is None:
            return none
        return _split(dropout_mask((n_inputs, spec.width), spec.p, generator, device), sizes)

    # drawn mask by mask, each for the whole chunk
    step_masks = [masks(spec) for spec in dropout]
    row_keep = none
    if row_dropout > 0 and generator is not None:
        keep = torch.rand(sum(row_counts), generator=generator, device=device) >= row_dropout
        row_keep = _split(keep.float(), row_counts)
    bags = {
        name: _bags(lookup, inputs, input_step, input_start, n_steps)
        for name, lookup in (sparse_features or {}).items()
    }
    step_inputs = _split(inputs, sizes)
    return [
        StepBatch(
            inputs=step_inputs[t],
            rows=BatchRows(
                rows[t],
                output_columns[t],
                input_rows[t],
                input_columns[t],
                bias_touched[t],
                input_positions[t],
                input_slots[t],
            ),
            bags={name: bag[t] for name, bag in bags.items()},
            masks=[mask[t] for mask in step_masks],
            log_row_weight=log_row_weight[t],
            target_log_q=target_log_q[t],
            row_keep=row_keep[t],
        )
        for t in range(n_steps)
    ]


def _plan_all_items(
    *,
    id_mode: str | None,
    n_items: int,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    sizes: list[int],
    with_row_weights: bool,
    dropout: list[DropoutSpec | None],
    generator: torch.Generator | None,
    sparse_features: dict[str, FeatureLookup] | None,
    row_dropout: float,
) -> list[StepBatch]:
    """``plan_steps`` for the full softmax: the rows are the whole item table, in order, so an
    item's row is its index and a target's output column is the target itself."""
    device = inputs.device
    n_steps, n_inputs = len(sizes), len(inputs)
    size_t = torch.tensor(sizes, device=device)
    input_step = torch.repeat_interleave(torch.arange(n_steps, device=device), size_t)
    input_start = torch.cumsum(size_t, 0) - size_t
    every_item = torch.arange(n_items, device=device)
    none = [None] * n_steps
    input_rows = input_positions = input_slots = none
    input_columns = _split(inputs, sizes)
    if id_mode is not None:
        distinct, distinct_step, _, local = _distinct_per_step(inputs, input_step, n_steps, n_items)
        per_step = _split(distinct, torch.bincount(distinct_step, minlength=n_steps).tolist())
        if id_mode == "constrained":  # the inputs' rows are among all items: positions = ids
            input_positions, input_slots = per_step, _split(local, sizes)
        else:
            input_rows, input_columns = per_step, _split(local, sizes)
    log_row_weight = target_log_q = none
    if with_row_weights:  # every item once, uncorrected: the softmax over all items
        log_row_weight = [torch.zeros(n_items, device=device)] * n_steps
        target_log_q = _split(torch.zeros(n_inputs, device=device), sizes)

    return _assemble(
        inputs=inputs,
        sizes=sizes,
        input_step=input_step,
        input_start=input_start,
        row_counts=[n_items] * n_steps,
        rows=[every_item] * n_steps,
        output_columns=_split(targets, sizes),
        input_rows=input_rows,
        input_columns=input_columns if id_mode is not None else none,
        bias_touched=none,
        input_positions=input_positions,
        input_slots=input_slots,
        log_row_weight=log_row_weight,
        target_log_q=target_log_q,
        dropout=dropout,
        generator=generator,
        sparse_features=sparse_features,
        row_dropout=row_dropout,
    )
