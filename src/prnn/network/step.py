"""What one training step reads besides the weights and the hidden states.

``prnn.training.step_plan`` fills these for a chunk of steps at a time; the network's
``train_step`` reads them. Both sides meet here, below them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class BatchRows:
    """The item-table rows one mini-batch touches, deduplicated.

    ``rows`` index the output tables (every subnet's output block and the shared bias); output
    column j is distinct row ``output_columns[j]``. An ID input reads ``input_rows`` of its
    input table at ``input_columns``; in constrained mode the input table is the ID subnet's
    output block, so ``rows`` also holds the inputs, ``input_rows`` is None and
    ``input_columns`` point into ``rows``. Without an ID input both are None.
    """

    rows: torch.Tensor
    output_columns: torch.Tensor
    input_rows: torch.Tensor | None
    input_columns: torch.Tensor | None
    bias_touched: torch.Tensor | None
    """Positions in ``rows`` of the outputs, whose bias the reference updates (constrained
    mode, where ``rows`` also holds input-only items); None = all."""
    input_positions: torch.Tensor | None = None
    """Constrained mode: the distinct positions in ``rows`` the inputs read, sorted."""
    input_slots: torch.Tensor | None = None
    """Constrained mode: each input's index into ``input_positions``."""

    def input_one_hot(self) -> torch.Tensor:
        """(B, distinct inputs) one-hot of each input's distinct input row.

        Its transpose sums the inputs' embedding gradients per row by a product, not a
        scatter-add, which compiled code would do with order-dependent atomics.
        """
        if self.input_positions is None:
            slots, n_distinct = self.input_columns, len(self.input_rows)
        else:
            slots, n_distinct = self.input_slots, len(self.input_positions)
        # a comparison, not an indexed write: plain arithmetic for torch.compile
        distinct = torch.arange(n_distinct, device=slots.device)
        return (slots[:, None] == distinct[None, :]).float()


@dataclass
class SparseBag:
    """A sparse feature input of one mini-batch: the non-zeros of its inputs' feature rows.

    The input's projection is an embedding bag over the rows of the distinct ``columns`` (sum
    of ``values`` times the rows at ``positions``, per input); the gradient of those rows sums
    each non-zero's share back (``prnn.network.sparse``).
    """

    columns: torch.Tensor
    """(V,) distinct feature columns of the batch's inputs, sorted."""
    positions: torch.Tensor
    """(nnz,) each non-zero's index into ``columns``; the inputs' non-zeros one after the
    other."""
    values: torch.Tensor
    """(nnz,) the non-zeros' values."""
    offsets: torch.Tensor
    """(B,) where each input's non-zeros start."""
    lanes: torch.Tensor
    """(nnz,) the input (lane) of each non-zero."""


@dataclass
class StepBatch:
    """Everything one training step reads besides the weights and the hidden states."""

    inputs: torch.Tensor
    """(B,) item index of each lane's input."""
    rows: BatchRows
    bags: dict[str, SparseBag] = field(default_factory=dict)
    """The sparse feature inputs, by feature set name."""
    masks: list[torch.Tensor | None] = field(default_factory=list)
    """Inverted-dropout multipliers, one per ``network.dropout_specs()`` entry, in order;
    None = no dropout there."""
    log_row_weight: torch.Tensor | None = None
    """(U,) ``losses.log_row_weights`` of the step's output columns (cross-entropy only)."""
    target_log_q: torch.Tensor | None = None
    """(B,) logQ correction of each lane's target (zeros without correction; cross-entropy)."""
    row_keep: torch.Tensor | None = None
    """(U,) 1.0 or 0.0 per row: whether the row's ID output part (its ID output rows and ID
    bias) enters this step, for ``output=hybrid`` with ID dropout; None = every row's does."""

    @property
    def batch(self) -> int:
        return len(self.inputs)
