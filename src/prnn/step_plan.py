"""The index work of GRU4Rec's training steps, done in bulk for a chunk of steps at a time.

Everything a training step needs besides the weights and the hidden states depends only on the
data, the negative samples and the dropout generator: the distinct item rows a mini-batch
touches and where each input and output column points, the rows whose bias the reference
updates, the sampled softmax's per-row weights, the dropout masks. Done step by step, that is
some forty small tensor operations per step, whose fixed costs (not their arithmetic) took about
a quarter of the training time. ``plan_steps`` does the same work for many steps with a few
large operations and hands out each step's share as views (``StepBatch``).

The results equal the per-step ones (``GRU4RecNetwork._batch_rows``, ``losses.log_row_weights``,
``dropout_mask``): rows come out sorted by item within each step, as ``torch.unique`` gives them.
Only the dropout masks are drawn in another order: all of a chunk's rows for one mask, then the
next mask, instead of step by step. On the CPU, whose generator draws in sequence, a single mask
per step (or a chunk of one step) gives the same masks either way; a CUDA generator ties values
to each call's shape, so there the masks also depend on the chunk size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prnn.losses import log_row_weights
from prnn.models.gru4rec import BatchRows, DropoutSpec, dropout_mask

#: steps planned at once: large enough to spread the fixed costs, small enough to bound a
#: chunk's memory (rsc15 preset: ~530k output columns, so tens of MB of int64 keys and indices,
#: plus 3 MB per dropout mask; at batch 240 and 512 units a mask is ~125 MB)
CHUNK_STEPS = 256


@dataclass
class StepBatch:
    """Everything one training step reads besides the weights and the hidden states."""

    rows: BatchRows
    embed_mask: torch.Tensor | None
    """(B, embedding width) inverted-dropout multipliers of the input embedding; None = none."""
    layer_masks: list[torch.Tensor | None]
    """(B, layer size) multipliers on each GRU layer's output; None = no dropout there."""
    log_row_weight: torch.Tensor | None
    """(U,) ``losses.log_row_weights`` of the step's output columns (cross-entropy only)."""
    target_log_q: torch.Tensor | None
    """(B,) logQ correction of each lane's target (zeros without correction; cross-entropy)."""

    @property
    def batch(self) -> int:
        return len(self.rows.input_columns)


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


def plan_steps(
    *,
    mode: str,
    n_items: int,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    sizes: list[int],
    samples: torch.Tensor | None,
    log_q: tuple[torch.Tensor, torch.Tensor] | None,
    with_row_weights: bool,
    embed_dropout: DropoutSpec | None,
    layer_dropout: list[DropoutSpec | None],
    generator: torch.Generator | None,
) -> list[StepBatch]:
    """Plan ``len(sizes)`` consecutive training steps.

    Args:
        mode: the network's embedding mode ("constrained", "separate" or "one-hot").
        n_items: item-table rows.
        inputs, targets: (N,) item indices of the steps' inputs and targets, step after step;
            step t has ``sizes[t]`` lanes.
        samples: (steps, S) shared negative samples of each step; None = no extra samples.
        log_q: per-item logQ corrections (for targets, for samples), or None.
        with_row_weights: compute the sampled softmax's row weights (cross-entropy).
        embed_dropout, layer_dropout: the masks each step draws, in order; None = no mask.
        generator: draws the dropout masks; None = no dropout at all.
    """
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

    input_rows = input_columns = bias_touched = input_positions = input_slots = None
    if mode == "constrained":
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
        distinct_inputs, input_row_step, _, input_local = _distinct_per_step(
            inputs, input_step, n_steps, n_items
        )
        input_rows = _split(
            distinct_inputs, torch.bincount(input_row_step, minlength=n_steps).tolist()
        )
        input_columns = _split(input_local, sizes)
    row_counts = torch.bincount(row_step, minlength=n_steps).tolist()

    log_row_weight = target_log_q = None
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

    def masks(spec: DropoutSpec | None):
        if spec is None or generator is None:
            return [None] * n_steps
        return _split(dropout_mask((n_inputs, spec.width), spec.p, generator, device), sizes)

    embed_masks = masks(embed_dropout)
    layer_masks = [masks(spec) for spec in layer_dropout]

    rows_of = _split(rows, row_counts)
    output_columns_of = _split(output_columns, output_sizes)
    return [
        StepBatch(
            rows=BatchRows(
                rows_of[t],
                output_columns_of[t],
                None if input_rows is None else input_rows[t],
                input_columns[t],
                None if bias_touched is None else bias_touched[t],
                None if input_positions is None else input_positions[t],
                None if input_slots is None else input_slots[t],
            ),
            embed_mask=embed_masks[t],
            layer_masks=[layer[t] for layer in layer_masks],
            log_row_weight=None if log_row_weight is None else log_row_weight[t],
            target_log_q=None if target_log_q is None else target_log_q[t],
        )
        for t in range(n_steps)
    ]
