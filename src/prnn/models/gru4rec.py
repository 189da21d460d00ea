"""GRU4Rec: a GRU over the item IDs of a session, trained session-parallel with sampled losses.

Follows hidasib/GRU4Rec_PyTorch_Official (the reference) in behaviour and hyper-parameter
names: three embedding modes, Glorot-uniform initialisation, dropout on the input embedding and
on each hidden layer's output (the dropped-out output is also the state carried to the next
step, as in the reference), Adagrad with momentum that touches only the item rows of the
mini-batch, popularity^alpha negative samples shared by the batch, logQ correction for
cross-entropy. Deviations are listed in docs/gru4rec.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from prnn.config import check_choice, check_number
from prnn.data import EventLog
from prnn.errors import ConfigError
from prnn.losses import LOSSES
from prnn.models.recurrent import RecurrentModel

if TYPE_CHECKING:
    from prnn.step_plan import StepBatch


@dataclass(frozen=True)
class GRU4RecConfig:
    """GRU4Rec's hyper-parameters, with the reference's names and defaults."""

    loss: str = "cross-entropy"
    """One of cross-entropy, bpr-max, top1-max, bpr, top1."""
    layers: tuple[int, ...] = (100,)
    """Hidden units of each GRU layer (``100`` or ``100,100``; GRU4Rec's ``100/100`` works too)."""
    batch_size: int = 64
    """Session-parallel lanes per mini-batch."""
    dropout_p_embed: float = 0.0
    """Drop probability on the input embedding."""
    dropout_p_hidden: float = 0.0
    """Drop probability on each GRU layer's output."""
    learning_rate: float = 0.05
    momentum: float = 0.0
    """Momentum of Adagrad; 0 = plain Adagrad."""
    sample_alpha: float = 0.5
    """Negatives are drawn with probability proportional to popularity ** sample_alpha."""
    n_sample: int = 2048
    """Extra negatives shared by the mini-batch; 0 = the other lanes' targets only."""
    logq: float = 0.0
    """Weight of the logQ correction of the cross-entropy loss (1.0 = full correction)."""
    bpreg: float = 1.0
    """Score regularisation of BPR-max."""
    elu_param: float = 0.5
    """Alpha of the ELU applied to scores under BPR-max; 0 = linear."""
    constrained_embedding: bool = True
    """Input embedding = output weight rows (shared, 'constrained')."""
    embedding: int = 0
    """Size of a separate input embedding; 0 with constrained_embedding=False = one-hot input."""
    n_epochs: int = 10
    seed: int = 42
    """Seeds initialisation, negative sampling and dropout: equal seeds, equal models."""
    sample_store_size: int = 10_000_000
    """Negative samples generated at once (the reference's sample store)."""

    def __post_init__(self) -> None:
        check_choice(self, "loss", LOSSES)
        if not self.layers or min(self.layers) < 1:
            raise ConfigError(
                f"'layers' of GRU4RecConfig must be positive sizes like 100 or 100,100; "
                f"got {self.layers!r}"
            )
        check_number(self, "batch_size", minimum=1)
        check_number(self, "dropout_p_embed", minimum=0.0, maximum=0.99)
        check_number(self, "dropout_p_hidden", minimum=0.0, maximum=0.99)
        check_number(self, "learning_rate", minimum=0.0, exclusive_minimum=True)
        check_number(self, "momentum", minimum=0.0, maximum=0.999)
        check_number(self, "sample_alpha", minimum=0.0)
        check_number(self, "n_sample", minimum=0)
        check_number(self, "logq", minimum=0.0)
        check_number(self, "bpreg", minimum=0.0)
        check_number(self, "elu_param", minimum=0.0)
        check_number(self, "embedding", minimum=0)
        check_number(self, "n_epochs", minimum=1)
        check_number(self, "sample_store_size", minimum=1)
        if self.constrained_embedding and self.embedding > 0:
            raise ConfigError(
                "'embedding' of GRU4RecConfig is unused with constrained_embedding=True "
                "(the input embedding is the output weight matrix); set embedding=0 or "
                "constrained_embedding=False"
            )
        if self.n_sample == 0 and self.batch_size < 2:
            raise ConfigError(
                "n_sample=0 uses the other lanes' targets as negatives and needs batch_size >= 2"
            )

    @property
    def embedding_mode(self) -> str:
        if self.constrained_embedding:
            return "constrained"
        return "separate" if self.embedding > 0 else "one-hot"


def glorot_uniform_(tensor: torch.Tensor, fan_in: int, fan_out: int, generator) -> torch.Tensor:
    """Uniform in +-sqrt(6 / (fan_in + fan_out)), GRU4Rec's initialisation of every matrix."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


@dataclass
class GRUGates:
    """Activations of one GRU step, kept for the hand-written backward pass."""

    r: torch.Tensor
    z: torch.Tensor
    candidate: torch.Tensor
    recurrent_candidate: torch.Tensor
    """U_c h + b_c, the recurrent product the reset gate multiplies."""


class GRULayer(nn.Module):
    """One GRU layer; the reset gate multiplies the recurrent product (as in the reference).

    r = sigmoid(W_r x + U_r h), z = sigmoid(W_z x + U_z h), h' = tanh(W x + r * (U h)),
    h_new = (1 - z) * h + z * h'. Gate blocks are stacked as [r | z | candidate].
    """

    PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    """Parameter names, in registration order (``weight_ih`` is absent in one-hot mode)."""

    def __init__(self, input_size: int | None, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        # input_size None: the input projection comes precomputed from an item table (one-hot)
        self.weight_ih = (
            nn.Parameter(torch.empty(input_size, 3 * hidden_size)) if input_size else None
        )
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, 3 * hidden_size))
        self.bias_ih = nn.Parameter(torch.zeros(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(3 * hidden_size))

    def reset_parameters(self, generator: torch.Generator) -> None:
        h = self.hidden_size
        if self.weight_ih is not None:
            glorot_uniform_(self.weight_ih, self.weight_ih.shape[0], h, generator)
        glorot_uniform_(self.weight_hh, h, h, generator)
        with torch.no_grad():
            self.bias_ih.zero_()
            self.bias_hh.zero_()

    def project_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in) -> (B, 3H): the input's contribution to the three gate blocks.

        Without ``weight_ih`` (one-hot input) ``x`` is already the projection (an item table's
        rows) and only the bias is added.
        """
        if self.weight_ih is None:
            return x + self.bias_ih
        return torch.addmm(self.bias_ih, x, self.weight_ih)

    def gates(self, projected_input: torch.Tensor, h: torch.Tensor) -> GRUGates:
        """The gate activations of one step. projected_input: (B, 3H); h: (B, H)."""
        recurrent = torch.addmm(self.bias_hh, h, self.weight_hh)  # (B, 3H)
        x_r, x_z, x_c = projected_input.chunk(3, dim=1)
        h_r, h_z, h_c = recurrent.chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        return GRUGates(r, z, torch.tanh(x_c + r * h_c), h_c)

    def forward(self, projected_input: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step. projected_input: (B, 3H) from ``project_input``; h: (B, H)."""
        gates = self.gates(projected_input, h)
        return h + gates.z * (gates.candidate - h)  # = (1 - z) * h + z * candidate

    @staticmethod
    def backward(
        grad_out: torch.Tensor, h: torch.Tensor, gates: GRUGates
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients w.r.t. the projected input and the recurrent product, both (B, 3H).

        The gradient w.r.t. ``h`` itself is not needed: training truncates back-propagation
        to one step, so the carried state is a constant.
        """
        r, z, candidate = gates.r, gates.z, gates.candidate
        grad_z = grad_out * (candidate - h) * z * (1 - z)
        grad_candidate = grad_out * z * (1 - candidate * candidate)
        grad_r = grad_candidate * gates.recurrent_candidate * r * (1 - r)
        grad_projected = torch.cat([grad_r, grad_z, grad_candidate], dim=1)
        grad_recurrent = torch.cat([grad_r, grad_z, grad_candidate * r], dim=1)
        return grad_projected, grad_recurrent


@dataclass
class GatheredRows:
    """Rows of an item table used by one mini-batch, as a leaf tensor that collects their grad.

    ``touched`` (a bool mask over the gathered rows, or positions in them) limits the update to
    the rows the reference's own table for this tensor would have touched; None = all of them.
    """

    table: torch.Tensor
    rows: torch.Tensor
    leaf: torch.Tensor
    touched: torch.Tensor | None = None


@dataclass
class SampledScores:
    """Scores of one training step: distinct item rows, and where each output column points.

    Output column j (the lanes' targets first, then the shared samples) is the item of distinct
    row ``output_columns[j]``; the same item can fill several columns.
    """

    distinct: torch.Tensor  # (B, U)
    output_columns: torch.Tensor  # (B + S,)

    def per_column(self) -> torch.Tensor:
        """(B, B + S): the score of every output column, duplicates included."""
        return self.distinct.index_select(1, self.output_columns)


@dataclass
class BatchRows:
    """The item-table rows one mini-batch touches, deduplicated.

    ``rows`` index the output tables (weight and bias); output column j is distinct row
    ``output_columns[j]``. Inputs read ``input_rows`` of the input table at ``input_columns``;
    in constrained mode the input table is the output weight, so ``input_rows`` is None and
    ``input_columns`` point into ``rows``.
    """

    rows: torch.Tensor
    output_columns: torch.Tensor
    input_rows: torch.Tensor | None
    input_columns: torch.Tensor
    bias_touched: torch.Tensor | None
    """Positions in ``rows`` whose bias the reference updates (constrained: the outputs' only);
    None = all."""
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


class DistinctRows:
    """``torch.unique(items, return_inverse=True)`` for item indices, without sorting.

    Marks the items in a persistent (I,) buffer and reads the marked positions back in index
    order, so the result equals ``torch.unique``'s (sorted rows) at a fraction of its cost.
    """

    def __init__(self, n_items: int, device: torch.device) -> None:
        self.marked = torch.zeros(n_items, dtype=torch.bool, device=device)
        self.column = torch.zeros(n_items, dtype=torch.int64, device=device)

    def __call__(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.marked[items] = True
        rows = self.marked.nonzero().squeeze(1)
        self.marked[rows] = False
        self.column[rows] = torch.arange(len(rows), device=rows.device)
        return rows, self.column[items]


def _gather_rows(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    return table.index_select(0, rows).requires_grad_()


def dropout_mask(
    shape: tuple[int, ...],
    p: float,
    generator: torch.Generator | None,
    device: torch.device | str = "cpu",
) -> torch.Tensor | None:
    """Inverted-dropout multipliers (0 or 1 / (1 - p)) of ``shape``; None = no dropout.

    Drawn from an explicit generator: library code never touches the global RNG.
    """
    if p <= 0 or generator is None:
        return None
    # uniform + compare: cheaper than bernoulli_ with a generator on CPU
    uniform = torch.rand(shape, generator=generator, device=device)
    return uniform.ge_(p).float().mul_(1.0 / (1.0 - p))


@dataclass(frozen=True)
class DropoutSpec:
    """One dropout mask a training step draws: its width and drop probability (> 0)."""

    width: int
    p: float


def dropout(x: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout with an explicit generator."""
    mask = dropout_mask(x.shape, p, generator, x.device)
    return x if mask is None else x * mask


class GRU4RecNetwork(nn.Module):
    """Item tables + GRU layers of GRU4Rec.

    Item tables are buffers trained row-wise by the optimiser (only the rows a mini-batch
    touched): ``output_weight`` (I, H_last), ``output_bias`` (I, 1) and, depending on the
    embedding mode, ``input_table``: a separate embedding (I, embedding), or the first GRU
    layer's one-hot input projection (I, 3 * H_0).
    """

    def __init__(self, n_items: int, config: GRU4RecConfig) -> None:
        super().__init__()
        self.n_items = n_items
        self.mode = config.embedding_mode
        self.layer_sizes = tuple(config.layers)
        self.dropout_p_embed = config.dropout_p_embed
        self.dropout_p_hidden = config.dropout_p_hidden
        last = self.layer_sizes[-1]
        self.register_buffer("output_weight", torch.empty(n_items, last))
        self.register_buffer("output_bias", torch.zeros(n_items, 1))
        if self.mode == "separate":
            self.register_buffer("input_table", torch.empty(n_items, config.embedding))
            first_input: int | None = config.embedding
        elif self.mode == "one-hot":
            self.register_buffer("input_table", torch.empty(n_items, 3 * self.layer_sizes[0]))
            first_input = None
        else:
            self.input_table = None
            first_input = last
        sizes_in = [first_input, *self.layer_sizes[:-1]]
        self.layers = nn.ModuleList(
            GRULayer(size_in, size) for size_in, size in zip(sizes_in, self.layer_sizes)
        )
        self._distinct: DistinctRows | None = None  # training-time helper, built on first use
        self._compiled_arithmetic = None  # torch.compile of _step_arithmetic, built on first use

    def reset_parameters(self, generator: torch.Generator) -> None:
        glorot_uniform_(self.output_weight, self.n_items, self.layer_sizes[-1], generator)
        self.output_bias.zero_()
        if self.mode == "separate":
            glorot_uniform_(self.input_table, self.n_items, self.input_table.shape[1], generator)
        elif self.mode == "one-hot":
            glorot_uniform_(self.input_table, self.n_items, self.layer_sizes[0], generator)
        for layer in self.layers:
            layer.reset_parameters(generator)

    def item_tables(self) -> list[torch.Tensor]:
        tables = [self.output_weight, self.output_bias]
        return tables if self.input_table is None else [*tables, self.input_table]

    def initial_hidden(self, n_lanes: int) -> list[torch.Tensor]:
        device = self.output_weight.device
        return [torch.zeros(n_lanes, size, device=device) for size in self.layer_sizes]

    def _dropout_p(self, layer: GRULayer) -> float:
        """Drop probability on a layer's output: in one-hot mode layer 0 plays the embedding,
        so it gets the embedding's dropout."""
        return self.dropout_p_embed if layer.weight_ih is None else self.dropout_p_hidden

    def _run_layers(
        self, embedded: torch.Tensor, hidden: list[torch.Tensor], generator
    ) -> list[torch.Tensor]:
        """Feed the embedded input (or one-hot projection) through the layers; new states."""
        new_hidden = []
        x = embedded
        for index, layer in enumerate(self.layers):
            x = layer(layer.project_input(x), hidden[index])
            x = dropout(x, self._dropout_p(layer), generator)
            new_hidden.append(x)
        return new_hidden

    def _batch_rows(self, inputs: torch.Tensor, outputs: torch.Tensor) -> BatchRows:
        if self._distinct is None or self._distinct.marked.device != inputs.device:
            self._distinct = DistinctRows(self.n_items, inputs.device)
        distinct = self._distinct
        batch = len(inputs)
        if self.mode == "constrained":
            # inputs and outputs share the output table: one set of rows for both
            rows, inverse = distinct(torch.cat([inputs, outputs]))
            output_columns, input_columns = inverse[batch:], inverse[:batch]
            # the bias rows the reference touches are the outputs' only
            is_output = torch.zeros(len(rows), dtype=torch.bool, device=rows.device)
            is_output[output_columns] = True
            output_positions = is_output.nonzero().squeeze(1)
            # B values at most: a sort is cheaper than the (I,) marking pass
            input_positions, input_slots = torch.unique(input_columns, return_inverse=True)
            return BatchRows(
                rows,
                output_columns,
                None,
                input_columns,
                output_positions,
                input_positions,
                input_slots,
            )
        input_rows, input_columns = distinct(inputs)
        rows, output_columns = distinct(outputs)
        return BatchRows(rows, output_columns, input_rows, input_columns, None)

    def sampled_scores(
        self,
        inputs: torch.Tensor,
        outputs: torch.Tensor,
        hidden: list[torch.Tensor],
        generator: torch.Generator | None,
    ) -> tuple[SampledScores, list[torch.Tensor], list[GatheredRows]]:
        """Training step for autograd: scores of the output items after the inputs.

        Returns the scores, the new hidden states and the gathered item rows whose gradients
        the optimiser applies. ``generator`` drives dropout; None = no dropout. Training runs
        ``train_step``, which computes the same gradients by hand; this is its reference.
        """
        batch_rows = self._batch_rows(inputs, outputs)
        # Each table's rows are gathered once, deduplicated: the leaf's gradient then holds
        # exactly one summed row per touched item, ready for the row-wise update.
        weight = _gather_rows(self.output_weight, batch_rows.rows)
        gathered = [GatheredRows(self.output_weight, batch_rows.rows, weight)]
        if self.mode == "constrained":
            input_weight = weight
        else:
            input_weight = _gather_rows(self.input_table, batch_rows.input_rows)
            gathered.insert(0, GatheredRows(self.input_table, batch_rows.input_rows, input_weight))
        embedded = input_weight.index_select(0, batch_rows.input_columns)
        bias = _gather_rows(self.output_bias, batch_rows.rows)
        gathered.append(
            GatheredRows(self.output_bias, batch_rows.rows, bias, batch_rows.bias_touched)
        )
        if self.mode != "one-hot":
            embedded = dropout(embedded, self.dropout_p_embed, generator)
        new_hidden = self._run_layers(embedded, hidden, generator)
        # score each distinct row once; the losses see the output columns through it
        distinct_scores = torch.addmm(bias.T, new_hidden[-1], weight.T)  # (B, U)
        return SampledScores(distinct_scores, batch_rows.output_columns), new_hidden, gathered

    def dropout_specs(self) -> tuple[DropoutSpec | None, list[DropoutSpec | None]]:
        """The dropout masks a training step draws, in the order ``sampled_scores`` draws them:
        the input embedding's (not in one-hot mode), then each layer's; None = no mask."""

        def spec(width: int, p: float) -> DropoutSpec | None:
            return DropoutSpec(width, p) if p > 0 else None

        embed = None
        if self.mode != "one-hot":
            table = self.output_weight if self.mode == "constrained" else self.input_table
            embed = spec(table.shape[1], self.dropout_p_embed)
        return embed, [
            spec(size, self._dropout_p(layer)) for layer, size in zip(self.layers, self.layer_sizes)
        ]

    @torch.no_grad()
    def train_step(
        self,
        step: StepBatch,
        hidden: list[torch.Tensor],
        loss,
        optimizer,
        compiled: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One training step with a hand-written backward pass; returns (loss, new hidden).

        Same result as ``sampled_scores`` + autograd + the optimiser (a test checks that), but
        without building an autograd graph: with one-step truncated back-propagation the
        backward pass is a fixed, short sequence, and the graph's bookkeeping cost more than
        the arithmetic at GRU4Rec's sizes. ``step`` comes from ``prnn.step_plan.plan_steps``
        (the distinct rows, the dropout masks and the loss's row weights, found in bulk);
        ``loss`` is a step loss of ``prnn.training`` (``prepared`` + ``value_and_gradient``).

        ``compiled=True`` runs the arithmetic through ``torch.compile``: it is plain arithmetic
        on tensors whose shapes vary from step to step, with no scatter over repeated indices.
        """
        arithmetic = self._step_arithmetic
        if compiled and step.batch > 1:  # a lone lane would cost a recompilation for one step
            if self._compiled_arithmetic is None:
                self._compiled_arithmetic = torch.compile(self._step_arithmetic, dynamic=True)
            arithmetic = self._compiled_arithmetic
        return arithmetic(
            step.rows,
            hidden,
            step.embed_mask,
            step.layer_masks,
            loss.value_and_gradient,
            loss.prepared(step),
            optimizer,
        )

    @torch.no_grad()
    def _step_arithmetic(
        self,
        batch_rows: BatchRows,
        hidden: list[torch.Tensor],
        embed_mask: torch.Tensor | None,
        layer_masks: list[torch.Tensor | None],
        value_and_gradient,
        prepared: tuple[torch.Tensor, ...],
        optimizer,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``train_step``'s arithmetic: forward, backward and the optimiser's updates."""
        rows = batch_rows.rows
        weight = self.output_weight.index_select(0, rows)
        bias = self.output_bias.index_select(0, rows)
        if self.mode == "constrained":
            embedded = weight.index_select(0, batch_rows.input_columns)
        else:
            embedded = self.input_table.index_select(0, batch_rows.input_rows)
            embedded = embedded.index_select(0, batch_rows.input_columns)
        if embed_mask is not None:
            embedded = embedded * embed_mask

        x = embedded
        caches, new_hidden = [], []
        for index, layer in enumerate(self.layers):
            h = hidden[index]
            gates = layer.gates(layer.project_input(x), h)
            out = h + gates.z * (gates.candidate - h)
            mask = layer_masks[index]
            if mask is not None:
                out = out * mask
            caches.append((x, h, gates, mask))
            new_hidden.append(out)
            x = out

        scores = torch.addmm(bias.T, x, weight.T)  # (B, U)
        loss, grad_scores = value_and_gradient(scores, *prepared)
        grad_bias = grad_scores.sum(dim=0)[:, None]
        grad_weight = grad_scores.T @ x
        grad_x = grad_scores @ weight
        layer_grads = []
        for layer, (layer_input, h, gates, mask) in zip(reversed(self.layers), reversed(caches)):
            if mask is not None:
                grad_x = grad_x * mask
            grad_projected, grad_recurrent = layer.backward(grad_x, h, gates)
            grads = {
                "weight_hh": h.T @ grad_recurrent,
                "bias_ih": grad_projected.sum(dim=0),
                "bias_hh": grad_recurrent.sum(dim=0),
            }
            if layer.weight_ih is None:
                grad_x = grad_projected  # one-hot: the gradient of layer 0's input table rows
            else:
                grads["weight_ih"] = layer_input.T @ grad_projected
                grad_x = grad_projected @ layer.weight_ih.T
            layer_grads.insert(0, grads)
        if embed_mask is not None:
            grad_x = grad_x * embed_mask

        # in the order of self.parameters(), as the optimiser holds them
        optimizer.step_dense(
            [grads[name] for grads in layer_grads for name in GRULayer.PARAMETERS if name in grads]
        )
        grad_input = batch_rows.input_one_hot().T @ grad_x  # (distinct inputs, D): summed
        if self.mode == "constrained":
            positions = batch_rows.input_positions  # distinct
            if torch.compiler.is_compiling():
                # a copy of the summed rows: an index_add would compile to atomic additions
                # when several threads run
                summed = grad_weight.index_select(0, positions) + grad_input
                grad_weight = grad_weight.index_copy(0, positions, summed)
            else:
                grad_weight = grad_weight.index_add(0, positions, grad_input)
        else:
            optimizer.step_rows(self.input_table, batch_rows.input_rows, grad_input)
        optimizer.step_rows(self.output_weight, rows, grad_weight)
        optimizer.step_rows(self.output_bias, rows, grad_bias, batch_rows.bias_touched)
        return loss, new_hidden

    @torch.no_grad()
    def embed(self, items: torch.Tensor) -> torch.Tensor:
        table = self.output_weight if self.mode == "constrained" else self.input_table
        return table.index_select(0, items)

    @torch.no_grad()
    def step(self, items: torch.Tensor, hidden: list[torch.Tensor]) -> list[torch.Tensor]:
        """Inference step (no dropout): new hidden states after one event per row."""
        return self._run_layers(self.embed(items), hidden, None)

    @torch.no_grad()
    def scores(self, hidden: list[torch.Tensor], candidates: torch.Tensor | None) -> torch.Tensor:
        """(B, C) scores of all items or of the candidate items, from the rows' states."""
        weight, bias = self.output_weight, self.output_bias
        if candidates is not None:
            weight, bias = weight.index_select(0, candidates), bias.index_select(0, candidates)
        return torch.addmm(bias.T, hidden[-1], weight.T)


class GRU4Rec(RecurrentModel[GRU4RecConfig]):
    """GRU4Rec (Hidasi et al. 2016, 2018), faithful to the official PyTorch implementation."""

    name = "gru4rec"
    config_class = GRU4RecConfig
    compiles_training = True

    def _fit(
        self,
        events: EventLog,
        item_index: np.ndarray,
        *,
        progress: bool,
        valid: EventLog | None = None,
        patience: int = 0,
        valid_metric: str = "recall@20",
        device: str | torch.device = "cpu",
        epoch_callback=None,
        compile: bool = False,
    ) -> None:
        self._train(
            GRU4RecNetwork(self.n_items, self.config),
            events,
            item_index,
            device=device,
            progress=progress,
            valid=valid,
            patience=patience,
            valid_metric=valid_metric,
            epoch_callback=epoch_callback,
            compile=compile,
        )

    # ---- persistence: the network's state dict (RecurrentModel._tensors) --------------------

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        network = GRU4RecNetwork(len(self.fitted_vocabulary), self.config)
        network.load_state_dict(tensors)
        self.network = network.to(self.device)
