"""The one recurrent network of prnn: GRU subnets over item inputs, one output layer over them.

GRU4Rec is this network with a single subnet reading the item ID; the p-RNN family (Hidasi,
Quadrana, Karatzoglou, Tikk, RecSys 2016) uses other subnets:

- an ID input: constrained (the input embedding is the subnet's output block), a separate
  embedding, or one-hot (the first layer's input projection is an item table);
- a dense feature input (e.g. image vectors), projected by the first layer's input weights;
- a sparse feature input (e.g. TF-IDF text), projected as an embedding bag with per-value
  weights over the rows of its non-zero columns only.

Each subnet has its own output block (a per-item weight table); an item's score is the shared
bias plus the sum over subnets of ``subnet_weight * <hidden state, output row>``, i.e. the
output layer applied to the concatenated (weighted) hidden states. A ``Phase`` says which
subnets are in the output (active) and which train; the p-RNN training methods are schedules
of phases (``prnn.training.schedules``).

Training runs ``train_step``: a hand-written forward and backward pass over the rows a
mini-batch touches, with one-step truncated back-propagation as in GRU4Rec, or through the last
k steps of each lane (``bptt=k``, ``prnn.network.history``). Subnets that do not train in the
current phase cost only their forward pass. The network holds no optimiser: the step takes one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from prnn.eager import disable_compilation
from prnn.network.history import BackpropWindow
from prnn.network.inputs import FeatureLookup
from prnn.network.layers import BackwardFactors, DropoutSpec, GRULayer, glorot_uniform_
from prnn.network.sparse import bag_gradient, bag_projection
from prnn.network.step import StepBatch
from prnn.threads import recurrent_step_work

ID = "id"
EMBEDDING_MODES = ("constrained", "separate", "one-hot")
#: the key of the output projection's input in the training step's caches (not a subnet name)
_FEATURE_OUTPUT = "\0output"
#: the key, among a step's row gradients, of the past steps' input rows (``bptt`` > 1)
PAST_INPUTS = "\0past inputs"
#: where an item's output vector comes from: its ID rows (the paper), a learned projection of
#: its features (so an item never clicked in training gets a score), or both added
OUTPUT_MODES = ("id", "features", "hybrid")


@dataclass(frozen=True)
class SubnetSpec:
    name: str
    inputs: tuple[str, ...]
    """"id" and/or feature set names."""
    layers: tuple[int, ...]


@dataclass(frozen=True)
class Phase:
    active: frozenset[str]
    """Subnets whose output enters the scores."""
    trainable: frozenset[str]
    """Subnets whose weights (and output block) are updated."""


class Subnet(nn.Module):
    """A GRU over one or more inputs of the items (ID, dense and sparse feature vectors)."""

    def __init__(
        self,
        spec: SubnetSpec,
        n_items: int,
        features: dict[str, FeatureLookup],
        *,
        weight: float,
        learn_weight: bool,
        embedding_mode: str,
        embedding: int,
        sparse_embedding: int = 0,
    ) -> None:
        super().__init__()
        self.name = spec.name
        # multiplier of this subnet's hidden state in the output; a parameter of the subnet when
        # learned, so freezing the subnet freezes it too
        if learn_weight:
            self.weight = nn.Parameter(torch.tensor(float(weight)))
        else:
            self.register_buffer("weight", torch.tensor(float(weight)))
        self.inputs = spec.inputs
        self.layer_sizes = tuple(spec.layers)
        first = self.layer_sizes[0]
        self.id_mode = embedding_mode if ID in spec.inputs else None
        self.dense_inputs = [n for n in spec.inputs if n != ID and not features[n].sparse]
        self.sparse_inputs = [n for n in spec.inputs if n != ID and features[n].sparse]
        # output block of this subnet: one row of hidden size per item, trained row-wise
        self.register_buffer("output_weight", torch.empty(n_items, self.layer_sizes[-1]))
        # the dense input is [ID embedding | dense features | embedded sparse inputs], in that order
        self.id_width = 0
        if self.id_mode == "constrained":
            self.id_width = self.layer_sizes[-1]
        elif self.id_mode == "separate":
            self.register_buffer("id_table", torch.empty(n_items, embedding))
            self.id_width = embedding
        elif self.id_mode == "one-hot":
            self.register_buffer("id_table", torch.empty(n_items, 3 * first))
        # a sparse input's table, one row per feature column (an embedding bag): the input's
        # projection into the gates (3H wide), or with sparse_embedding > 0 an embedding of that
        # width, which joins the dense input
        self.sparse_embedding = sparse_embedding
        self.sparse_start = self.id_width + sum(features[n].dim for n in self.dense_inputs)
        self.dense_width = self.sparse_start + sparse_embedding * len(self.sparse_inputs)
        for name in self.sparse_inputs:
            width = sparse_embedding or 3 * first
            self.register_buffer(f"bag_{name}", torch.empty(features[name].dim, width))
        sizes_in = [self.dense_width or None, *self.layer_sizes[:-1]]
        self.layers = nn.ModuleList(GRULayer(i, o) for i, o in zip(sizes_in, self.layer_sizes))

    def reset_parameters(self, generator: torch.Generator) -> None:
        n_items = self.output_weight.shape[0]
        glorot_uniform_(self.output_weight, n_items, self.layer_sizes[-1], generator)
        first = self.layer_sizes[0]
        if self.id_mode == "separate":
            glorot_uniform_(self.id_table, n_items, self.id_table.shape[1], generator)
        elif self.id_mode == "one-hot":
            glorot_uniform_(self.id_table, n_items, first, generator)
        for name in self.sparse_inputs:
            table = self.bag_table(name)
            glorot_uniform_(table, table.shape[0], self.sparse_embedding or first, generator)
        for layer in self.layers:
            layer.reset_parameters(generator)

    def bag_table(self, feature: str) -> torch.Tensor:
        return getattr(self, f"bag_{feature}")

    def sparse_columns(self, position: int) -> slice:
        """Where the ``position``-th sparse input's embedding sits in the dense input
        (``sparse_embedding`` > 0)."""
        start = self.sparse_start + position * self.sparse_embedding
        return slice(start, start + self.sparse_embedding)

    @property
    def embeds_inputs(self) -> bool:
        """Whether layer 0's dense input holds item-table rows that train (so backward needs
        its gradient): an ID embedding or embedded sparse inputs."""
        return bool(self.id_width or (self.sparse_embedding and self.sparse_inputs))

    def item_tables(self) -> list[torch.Tensor]:
        tables = [self.output_weight]
        if self.id_mode in ("separate", "one-hot"):
            tables.append(self.id_table)
        return tables + [self.bag_table(n) for n in self.sparse_inputs]

    def dropout_specs(self, p_embed: float, p_hidden: float) -> list[DropoutSpec | None]:
        """[the dense input's mask, each layer's output mask]; None = no mask there.

        Without a dense input, layer 0 plays the embedding and gets its dropout (as GRU4Rec's
        one-hot mode).
        """

        def spec(width: int, p: float) -> DropoutSpec | None:
            return DropoutSpec(width, p) if p > 0 and width > 0 else None

        specs = [spec(self.dense_width, p_embed)]
        for index, size in enumerate(self.layer_sizes):
            specs.append(spec(size, p_embed if index == 0 and not self.dense_width else p_hidden))
        return specs


@dataclass
class _LayerCache:
    layer_input: torch.Tensor | None
    h: torch.Tensor
    gates: object
    mask: torch.Tensor | None


class Network(nn.Module):
    """GRU subnets + a shared output bias (I, 1), trained row-wise on item tables.

    Args:
        n_items: catalogue size.
        specs: the subnets, in order.
        features: feature lookups by feature set name (those the subnets read).
        subnet_weights: multiplier of each subnet's hidden state in the output; default 1.
        learn_subnet_weights: train those multipliers.
        embedding_mode: how an ID input reads the item: constrained, separate or one-hot.
        embedding: width of a separate ID embedding.
        sparse_embedding: 0 = a sparse input's table projects into the first layer's gates
            directly (3H wide, as the paper's input weights); > 0 = an embedding of this width
            that joins the dense input (3x fewer table columns at 3H = 300 and width 100).
        dropout_p_embed, dropout_p_hidden: drop probabilities on the input and layer outputs.
        output_blocks_always: a frozen subnet's output block still trains while the subnet
            is active (the p-RNN option output_blocks=always).
        output: where items' output vectors (and biases) come from: "id" (the per-item rows),
            "features" (a learned projection of the ``output_features`` vectors: an item's
            output row for subnet s is ``features @ P_s``, a parameter of the subnet, its bias
            ``features @ p``) or "hybrid" (the two added).
        output_features: the dense feature sets the output projection reads, concatenated.
        output_id_dropout: output=hybrid: the probability that an output row's ID part (its
            ID output rows and bias) is left out of a training step, so that the feature
            projection learns to score items alone, as it must for items added later.
    """

    def __init__(
        self,
        n_items: int,
        specs: list[SubnetSpec],
        features: dict[str, FeatureLookup] | None = None,
        *,
        subnet_weights: list[float] | None = None,
        learn_subnet_weights: bool = False,
        embedding_mode: str = "constrained",
        embedding: int = 0,
        sparse_embedding: int = 0,
        dropout_p_embed: float = 0.0,
        dropout_p_hidden: float = 0.0,
        output_blocks_always: bool = False,
        output: str = "id",
        output_features: tuple[str, ...] = (),
        output_id_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if embedding_mode not in EMBEDDING_MODES:
            raise ValueError(f"embedding_mode must be one of {EMBEDDING_MODES}")
        if output not in OUTPUT_MODES:
            raise ValueError(f"output must be one of {OUTPUT_MODES}; got {output!r}")
        features = features or {}
        weights = subnet_weights or [1.0] * len(specs)
        self.n_items = n_items
        self.dropout_p_embed = dropout_p_embed
        self.dropout_p_hidden = dropout_p_hidden
        self.output_blocks_always = output_blocks_always
        self.features = nn.ModuleDict(features)
        self.subnets = nn.ModuleList(
            Subnet(
                spec,
                n_items,
                features,
                weight=weight,
                learn_weight=learn_subnet_weights,
                embedding_mode=embedding_mode,
                embedding=embedding,
                sparse_embedding=sparse_embedding,
            )
            for spec, weight in zip(specs, weights)
        )
        self.register_buffer("output_bias", torch.zeros(n_items, 1))
        self.output = output
        self.output_features = tuple(output_features) if output != "id" else ()
        self.output_id_dropout = output_id_dropout if output == "hybrid" else 0.0
        if output != "id":
            _check_output_features(output, self.output_features, features, self.subnets)
            width = sum(features[n].dim for n in self.output_features)
            # each subnet's share of the projection is its own parameter, so that it freezes
            # with the subnet (a frozen subnet's parameters get no update, momentum included)
            for subnet in self.subnets:
                subnet.output_projection = nn.Parameter(torch.empty(width, subnet.layer_sizes[-1]))
            self.output_projection_bias = nn.Parameter(torch.empty(width, 1))
        self._output_tables_cache: tuple | None = None
        id_modes = {s.id_mode for s in self.subnets if s.id_mode is not None}
        self.id_mode: str | None = id_modes.pop() if id_modes else None
        """How the ID input reads items (None: no subnet reads the ID); the step planner's
        view of the network."""
        self.parameter_names = tuple(name for name, _ in self.named_parameters())
        self._hidden_slices = []
        start = 0
        for subnet in self.subnets:
            self._hidden_slices.append(slice(start, start + len(subnet.layer_sizes)))
            start += len(subnet.layer_sizes)
        self._compiled_arithmetic = None  # torch.compile of _step_arithmetic, built on first use
        #: training's output-layer products in this lower precision (mixed precision); None:
        #: float32 throughout. Scoring outside training always runs in float32.
        self.output_dtype: torch.dtype | None = None
        self.set_phase(None)

    # ---- structure --------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.subnets]

    @property
    def subnet_weight(self) -> torch.Tensor:
        """The subnets' output multipliers, in subnet order (read-only view for reports)."""
        return torch.stack([s.weight.detach() for s in self.subnets])

    def _output_product(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a @ b`` for the output layer's training products (B x U x H each): in
        ``output_dtype`` (bfloat16: float32's range, so no loss scaling) with a float32 result,
        when mixed precision is on."""
        if self.output_dtype is None:
            return a @ b
        return (a.to(self.output_dtype) @ b.to(self.output_dtype)).float()

    def set_phase(self, phase: Phase | None) -> None:
        """Choose the active and trainable subnets (None = all of both)."""
        names = frozenset(self.names)
        self.active = names if phase is None else phase.active
        self.trainable = names if phase is None else phase.trainable

    def reset_parameters(self, generator: torch.Generator) -> None:
        for subnet in self.subnets:
            subnet.reset_parameters(generator)
        self.output_bias.zero_()
        if self.output != "id":
            with torch.no_grad():
                for projection in self._projections():
                    glorot_uniform_(projection, *projection.shape, generator)

    def _projections(self) -> list[torch.Tensor]:
        """output=features/hybrid: each subnet's projection, then the bias's."""
        return [s.output_projection for s in self.subnets] + [self.output_projection_bias]

    # ---- the output layer -------------------------------------------------------------------

    def output_inputs(self, items: torch.Tensor | None) -> torch.Tensor:
        """(N, D): the items' output feature vectors, concatenated (None: every item)."""
        parts = [
            self.features[n].matrix if items is None else self.features[n].dense(items)
            for n in self.output_features
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)

    def output_tables(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(bias (I, 1), each subnet's output block (I, H_s)) as scoring sees them: the ID rows,
        or the feature projection's rows (added to them in hybrid). Computed once per change of
        the weights (PyTorch counts each tensor's in-place changes)."""
        blocks = [s.output_weight for s in self.subnets]
        if self.output == "id":
            return self.output_bias, blocks
        sources = [*self._projections(), self.output_bias, *blocks]
        sources += [self.features[n].matrix for n in self.output_features]
        key = tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in sources)
        if self._output_tables_cache is None or self._output_tables_cache[0] != key:
            with torch.no_grad():
                item_features = self.output_inputs(None)
                bias = item_features @ self.output_projection_bias
                parts = [item_features @ s.output_projection for s in self.subnets]
                if self.output == "hybrid":
                    bias = bias + self.output_bias
                    parts = [part + block for part, block in zip(parts, blocks)]
            self._output_tables_cache = (key, bias.contiguous(), [p.contiguous() for p in parts])
        return self._output_tables_cache[1], self._output_tables_cache[2]

    def item_tables(self) -> list[torch.Tensor]:
        """The tables trained row-wise (only the rows a mini-batch touched)."""
        return [self.output_bias] + [t for s in self.subnets for t in s.item_tables()]

    def sparse_features(self) -> dict[str, FeatureLookup]:
        """The sparse feature inputs some subnet reads, by name (the step planner bags them)."""
        return {n: self.features[n] for s in self.subnets for n in s.sparse_inputs}

    def dropout_specs(self) -> list[DropoutSpec | None]:
        """The dropout masks a training step reads, in order: per subnet, its dense input's,
        then each layer's; None = no mask there."""
        return [
            spec
            for subnet in self.subnets
            for spec in subnet.dropout_specs(self.dropout_p_embed, self.dropout_p_hidden)
        ]

    def work_per_step(self, batch_size: int, n_sample: int) -> float:
        """Multiply-adds of one training step's matrix products (the thread policy's input):
        each subnet's GRU layers, and its share of the sampled output layer."""
        return sum(
            recurrent_step_work(
                batch_size,
                n_sample,
                subnet.layer_sizes,
                input_size=subnet.dense_width or subnet.layer_sizes[0],
                n_items=self.n_items,
            )
            for subnet in self.subnets
        )

    def scoring_work(self) -> float:
        """Multiply-adds of scoring one session against every item (the serving thread
        policy's input): each active subnet's output block."""
        return float(sum(s.output_weight.numel() for s in self.subnets if s.name in self.active))

    def initial_hidden(self, n_lanes: int) -> list[torch.Tensor]:
        device = self.output_bias.device
        return [torch.zeros(n_lanes, h, device=device) for s in self.subnets for h in s.layer_sizes]

    # ---- the recurrent step, shared by inference and training --------------------------------

    @staticmethod
    def _run_layers(
        subnet: Subnet,
        dense_input: torch.Tensor | None,
        projections: list[torch.Tensor],
        hidden: list[torch.Tensor],
        masks: list[torch.Tensor | None],
    ) -> tuple[list[torch.Tensor], list[_LayerCache]]:
        """The subnet's layers after its inputs; (new hidden states, what backward needs).

        ``dense_input``: [ID embedding | dense features] (B, dense width) or None;
        ``projections``: inputs that arrive already projected to (B, 3H) (one-hot ID, sparse
        features); ``masks``: the subnet's dropout masks (``Subnet.dropout_specs`` order).
        """
        layer0 = subnet.layers[0]
        if dense_input is not None:
            if masks[0] is not None:
                dense_input = dense_input * masks[0]
            projected = layer0.project_input(dense_input)
        else:
            projected = layer0.bias_ih
        for extra in projections:
            projected = projected + extra
        x = dense_input
        new_hidden, caches = [], []
        for index, layer in enumerate(subnet.layers):
            if index > 0:
                projected = layer.project_input(x)
            h = hidden[index]
            gates = layer.gates(projected, h)
            out = layer.output(h, gates)
            mask = masks[index + 1]
            if mask is not None:
                out = out * mask
            caches.append(_LayerCache(x, h, gates, mask))
            new_hidden.append(out)
            x = out
        return new_hidden, caches

    @torch.no_grad()
    def step(self, items: torch.Tensor, hidden: list[torch.Tensor]) -> list[torch.Tensor]:
        """Inference step (no dropout): new hidden states after one event per row."""
        new_hidden = list(hidden)
        for subnet, part in zip(self.subnets, self._hidden_slices):
            if subnet.name not in self.active:
                continue
            dense_parts, projections = [], []
            if subnet.id_mode == "constrained":
                dense_parts.append(subnet.output_weight.index_select(0, items))
            elif subnet.id_mode == "separate":
                dense_parts.append(subnet.id_table.index_select(0, items))
            elif subnet.id_mode == "one-hot":
                projections.append(subnet.id_table.index_select(0, items))
            dense_parts += [self.features[n].dense(items) for n in subnet.dense_inputs]
            for name in subnet.sparse_inputs:
                columns, values, offsets = self.features[name].bag(items)
                bagged = nn.functional.embedding_bag(
                    columns, subnet.bag_table(name), offsets, mode="sum", per_sample_weights=values
                )
                (dense_parts if subnet.sparse_embedding else projections).append(bagged)
            dense_input = None
            if dense_parts:
                dense_input = dense_parts[0] if len(dense_parts) == 1 else torch.cat(dense_parts, 1)
            no_masks = [None] * (len(subnet.layers) + 1)
            new_hidden[part], _ = self._run_layers(
                subnet, dense_input, projections, hidden[part], no_masks
            )
        return new_hidden

    @torch.no_grad()
    def scores(self, hidden: list[torch.Tensor], candidates: torch.Tensor | None) -> torch.Tensor:
        """(B, C) scores of all items or of the candidate items, from the rows' states."""
        bias, blocks = self.output_tables()
        if candidates is not None:
            bias = bias[candidates]
        scores = None
        for subnet, part, block in zip(self.subnets, self._hidden_slices, blocks):
            if subnet.name not in self.active:
                continue
            if candidates is not None:
                block = block.index_select(0, candidates)
            base = bias.T if scores is None else scores
            scores = torch.addmm(base, hidden[part][-1] * subnet.weight, block.T)
        return scores

    # ---- training ---------------------------------------------------------------------------

    def gather_rows(self, step: StepBatch) -> dict[str, torch.Tensor]:
        """The item-table rows one step reads, by key: ``bias``, ``block:<subnet>`` (output
        block), ``id:<subnet>`` (a separate or one-hot ID table), ``bag:<subnet>:<feature>``
        (a sparse input's projection table)."""
        rows = step.rows.rows
        gathered = {"bias": self.output_bias.index_select(0, rows)}
        for subnet in self.subnets:
            if subnet.name not in self.active:
                continue
            gathered[f"block:{subnet.name}"] = subnet.output_weight.index_select(0, rows)
            if subnet.id_mode in ("separate", "one-hot"):
                gathered[f"id:{subnet.name}"] = subnet.id_table.index_select(
                    0, step.rows.input_rows
                )
            for name in subnet.sparse_inputs:
                gathered[f"bag:{subnet.name}:{name}"] = subnet.bag_table(name).index_select(
                    0, step.bags[name].columns
                )
        return gathered

    def _subnet_masks(self, step: StepBatch) -> list[list[torch.Tensor | None]]:
        masks, start = [], 0
        for subnet in self.subnets:
            count = len(subnet.layers) + 1
            masks.append(step.masks[start : start + count] if step.masks else [None] * count)
            start += count
        return masks

    def forward_train(
        self, step: StepBatch, hidden: list[torch.Tensor], gathered: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor], dict]:
        """Training forward pass: (distinct-row scores (B, U), new hidden states, caches).

        Reads the item tables only through ``gathered`` (``gather_rows``), so a test can make
        those rows autograd leaves and check ``backward`` against autograd.
        """
        rows = step.rows
        new_hidden = list(hidden)
        caches = {}
        bias = gathered["bias"]
        keep = None if step.row_keep is None else step.row_keep[:, None]
        if keep is not None:
            bias = bias * keep
        item_features, query = None, None
        if self.output != "id":
            # the rows' output vectors are their features times the projection; the scores
            # take (hidden @ projection.T) @ features.T, which costs B x U x D, not the
            # U x D x H of projecting every row (B = 32 lanes, U = 2k rows, H = 200 units)
            item_features = self.output_inputs(rows.rows)
            caches[_FEATURE_OUTPUT] = item_features
            from_features = item_features @ self.output_projection_bias
            bias = from_features if self.output == "features" else bias + from_features
        scores = bias.T
        for subnet, part, masks in zip(self.subnets, self._hidden_slices, self._subnet_masks(step)):
            if subnet.name not in self.active:
                continue
            dense_parts, projections = [], []
            if subnet.id_mode == "constrained":
                block = gathered[f"block:{subnet.name}"]
                dense_parts.append(block.index_select(0, rows.input_columns))
            elif subnet.id_mode == "separate":
                dense_parts.append(
                    gathered[f"id:{subnet.name}"].index_select(0, rows.input_columns)
                )
            elif subnet.id_mode == "one-hot":
                projections.append(
                    gathered[f"id:{subnet.name}"].index_select(0, rows.input_columns)
                )
            dense_parts += [self.features[n].dense(step.inputs) for n in subnet.dense_inputs]
            for name in subnet.sparse_inputs:
                bagged = bag_projection(gathered[f"bag:{subnet.name}:{name}"], step.bags[name])
                (dense_parts if subnet.sparse_embedding else projections).append(bagged)
            dense_input = None
            if dense_parts:
                dense_input = dense_parts[0] if len(dense_parts) == 1 else torch.cat(dense_parts, 1)
            new_hidden[part], layer_caches = self._run_layers(
                subnet, dense_input, projections, hidden[part], masks
            )
            last = new_hidden[part][-1]
            weighted = last * subnet.weight
            if self.output != "features":
                id_block = gathered[f"block:{subnet.name}"]
                if keep is not None:
                    id_block = id_block * keep
                if self.output_dtype is None:
                    scores = torch.addmm(scores, weighted, id_block.T)
                else:
                    scores = scores + self._output_product(weighted, id_block.T)
            if item_features is not None:
                share = weighted @ subnet.output_projection.T
                query = share if query is None else query + share
            caches[subnet.name] = (layer_caches, last, weighted, masks[0])
        if query is not None:
            scores = torch.addmm(scores, query, item_features.T)
        return scores, new_hidden, caches

    def backward(
        self,
        step: StepBatch,
        gathered: dict[str, torch.Tensor],
        caches: dict,
        grad_scores: torch.Tensor,
        window: BackpropWindow | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Gradients of the loss, given its gradient w.r.t. the scores.

        Returns (dense parameter gradients by parameter name, gathered-row gradients by
        ``gather_rows`` key); frozen subnets get none, so they cost nothing here. With a
        ``window`` of past steps the loss also back-propagates through them (``bptt`` > 1):
        their dense gradients add to the step's, and the item-table rows their inputs read
        come as (table, rows, gradient) triples under the key ``PAST_INPUTS``.
        """
        rows = step.rows
        dense: dict[str, torch.Tensor] = {}
        grad_bias = grad_scores.sum(dim=0)[:, None]
        from_ids = self.output != "features"
        keep = None if step.row_keep is None else step.row_keep[:, None]
        row_grads = {"bias": grad_bias if keep is None else grad_bias * keep} if from_ids else {}
        past_inputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        grad_query = None
        if self.output != "id":
            item_features = caches[_FEATURE_OUTPUT]
            grad_query = grad_scores @ item_features  # (B, D)
            dense["output_projection_bias"] = item_features.T @ grad_bias
        for index, subnet in enumerate(self.subnets):
            if subnet.name not in self.active:
                continue
            block_key = f"block:{subnet.name}"
            layer_caches, last, weighted, input_mask = caches[subnet.name]
            trains = subnet.name in self.trainable
            prefix = f"subnets.{index}."
            if trains or self.output_blocks_always:
                if from_ids:
                    grad_block = self._output_product(grad_scores.T, weighted)
                    row_grads[block_key] = grad_block if keep is None else grad_block * keep
                if grad_query is not None:
                    dense[prefix + "output_projection"] = grad_query.T @ weighted
            if not trains:
                continue
            grad_weighted = None
            if from_ids:
                id_block = gathered[block_key] if keep is None else gathered[block_key] * keep
                grad_weighted = self._output_product(grad_scores, id_block)
            if grad_query is not None:
                share = grad_query @ subnet.output_projection
                grad_weighted = share if grad_weighted is None else grad_weighted + share
            if isinstance(subnet.weight, nn.Parameter):
                dense[prefix + "weight"] = (grad_weighted * last).sum()
            through_time = window is not None and bool(window.past)
            grad_outputs = [None] * (len(subnet.layers) - 1) + [grad_weighted * subnet.weight]
            grad_x, grad_projected, grad_hidden = _layers_backward(
                subnet, prefix, layer_caches, grad_outputs, dense, through_time
            )
            for key, grad in _input_gradients(subnet, step, grad_x, grad_projected, input_mask):
                if key == block_key:  # constrained: the inputs' rows are among the step's rows
                    row_grads[key] = _add_rows(row_grads[key], rows.input_positions, grad)
                else:
                    row_grads[key] = grad
            if through_time:
                past_inputs += _backward_through_time(subnet, prefix, window, grad_hidden, dense)
        if past_inputs:
            row_grads[PAST_INPUTS] = past_inputs
        return dense, row_grads

    def _row_updates(
        self, step: StepBatch, row_grads: dict[str, torch.Tensor]
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(item table, distinct rows, their gradient) of every table the step updates."""
        rows = step.rows
        updates = []

        def add(table, table_rows, grad, touched=None):
            if touched is not None:
                table_rows, grad = table_rows[touched], grad[touched]
            updates.append((table, table_rows, grad))

        for subnet in self.subnets:
            block_key = f"block:{subnet.name}"
            if f"id:{subnet.name}" in row_grads:
                add(subnet.id_table, rows.input_rows, row_grads[f"id:{subnet.name}"])
            for name in subnet.sparse_inputs:
                key = f"bag:{subnet.name}:{name}"
                if key in row_grads:
                    add(subnet.bag_table(name), step.bags[name].columns, row_grads[key])
            if block_key in row_grads:
                # a trained constrained ID block is also the input table: every row it read
                # moves; otherwise only the outputs' rows, as the reference's tables
                reads_inputs = subnet.id_mode == "constrained" and subnet.name in self.trainable
                touched = None if reads_inputs else rows.bias_touched
                add(subnet.output_weight, rows.rows, row_grads[block_key], touched)
        if "bias" in row_grads:
            add(self.output_bias, rows.rows, row_grads["bias"], rows.bias_touched)
        past_inputs: dict[int, list] = {}
        for table, table_rows, grad in row_grads.get(PAST_INPUTS, ()):
            past_inputs.setdefault(id(table), []).append((table, table_rows, grad))
        for triples in past_inputs.values():
            _merge_update(
                updates,
                triples[0][0],
                torch.cat([t[1] for t in triples]),
                torch.cat([t[2] for t in triples]),
            )
        return updates

    def _apply_updates(
        self,
        optimizer,
        step: StepBatch,
        dense: dict[str, torch.Tensor],
        row_grads: dict[str, torch.Tensor],
        exchange=None,
    ) -> None:
        dense_grads = [dense.get(name) for name in self.parameter_names]
        row_updates = self._row_updates(step, row_grads)
        if exchange is not None:  # data-parallel: the gradients averaged over the processes
            dense_grads, row_updates = exchange(dense_grads, row_updates)
        optimizer.step_dense(dense_grads)
        for table, rows, grad in row_updates:
            optimizer.step_rows(table, rows, grad)

    def _step_arithmetic(
        self,
        step: StepBatch,
        hidden: list[torch.Tensor],
        value_and_gradient,
        prepared: tuple[torch.Tensor, ...],
        optimizer,
        exchange=None,
        window: BackpropWindow | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``train_step``'s arithmetic: forward, backward and the optimiser's updates."""
        gathered = self.gather_rows(step)
        scores, new_hidden, caches = self.forward_train(step, hidden, gathered)
        loss, grad_scores = value_and_gradient(scores, *prepared)
        dense, row_grads = self.backward(step, gathered, caches, grad_scores, window)
        self._apply_updates(optimizer, step, dense, row_grads, exchange)
        if window is not None:
            window.push(step, _past_caches(self, caches))
        return loss, new_hidden

    @torch.no_grad()
    def train_step(
        self,
        step: StepBatch,
        hidden: list[torch.Tensor],
        loss,
        optimizer,
        compiled: bool = False,
        exchange=None,
        window: BackpropWindow | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One training step with a hand-written backward pass; returns (loss, new hidden).

        With one-step truncated back-propagation the backward pass is a fixed, short sequence,
        and autograd's bookkeeping cost more than the arithmetic at these sizes. ``step`` comes
        from ``prnn.training.step_plan``; ``loss`` is a step loss of ``prnn.training``
        (``prepared`` + ``value_and_gradient``). ``compiled=True`` runs the arithmetic through
        ``torch.compile``: plain arithmetic on tensors whose shapes vary from step to step,
        with no scatter over repeated indices. ``exchange(dense grads, row updates)``: returns
        the gradients to apply instead (data-parallel training averages them over the
        processes, ``prnn.training.distributed``); eager only. ``window``: the past steps to
        back-propagate through as well (``bptt`` > 1; this step joins it); eager only.
        """
        if exchange is not None or window is not None:
            return self._step_arithmetic(
                step,
                hidden,
                loss.value_and_gradient,
                loss.prepared(step),
                optimizer,
                exchange,
                window,
            )
        arithmetic = self._step_arithmetic
        if compiled and step.batch > 1:  # a lone lane would cost a recompilation for one step
            if self._compiled_arithmetic is None:
                disable_compilation()  # of the eager-only parts (sparse bags, some losses)
                self._compiled_arithmetic = torch.compile(self._step_arithmetic, dynamic=True)
            arithmetic = self._compiled_arithmetic
        return arithmetic(step, hidden, loss.value_and_gradient, loss.prepared(step), optimizer)


def _check_output_features(
    output: str, names: tuple[str, ...], features: dict[str, FeatureLookup], subnets
) -> None:
    if not names:
        raise ValueError(f"output={output} needs the feature sets to project (output_features)")
    for name in names:
        if name not in features:
            raise ValueError(f"output feature set {name!r} is not among {sorted(features)}")
        if features[name].sparse:
            raise ValueError(
                f"output feature set {name!r} is sparse; the output projection reads dense "
                "feature vectors (e.g. image or text embeddings)"
            )
    if output == "features" and any(s.id_mode == "constrained" for s in subnets):
        raise ValueError(
            "output=features with an ID input needs a separate or one-hot ID embedding: a "
            "constrained embedding is the ID output block that output=features replaces"
        )


def _layers_backward(
    subnet: Subnet,
    prefix: str,
    layer_caches: list[_LayerCache],
    grad_outputs: list[torch.Tensor | None],
    dense: dict[str, torch.Tensor],
    through_time: bool,
) -> tuple[torch.Tensor | None, torch.Tensor, list[torch.Tensor | None]]:
    """Back-propagates one step through a subnet's layers, top to bottom.

    ``grad_outputs``: per layer, the gradient w.r.t. its (dropped-out) output from outside the
    step's layers: the loss's for the top layer of the step being trained, the next step's for
    a past step's states; None = none. Adds the weights' gradients to ``dense``. Returns (the
    gradient w.r.t. layer 0's dense input when it holds trained item-table rows, else None;
    layer 0's gradient w.r.t. its projected input; per layer, with ``through_time``, the
    gradient w.r.t. the state the step started from).
    """
    grad_x, grad_projected = None, None
    grad_hidden: list[torch.Tensor | None] = [None] * len(subnet.layers)
    for layer_index in reversed(range(len(subnet.layers))):
        layer = subnet.layers[layer_index]
        cache = layer_caches[layer_index]
        grad_out = grad_outputs[layer_index]
        if grad_x is not None:
            grad_out = grad_x if grad_out is None else grad_out + grad_x
        if cache.mask is not None:
            grad_out = grad_out * cache.mask
        grad_projected, grad_recurrent = layer.backward(grad_out, cache.h, cache.gates)
        name = f"{prefix}layers.{layer_index}."
        _accumulate(dense, name + "weight_hh", cache.h.T @ grad_recurrent)
        _accumulate(dense, name + "bias_ih", grad_projected.sum(dim=0))
        _accumulate(dense, name + "bias_hh", grad_recurrent.sum(dim=0))
        grad_x = None
        if layer.weight_ih is not None:
            _accumulate(dense, name + "weight_ih", cache.layer_input.T @ grad_projected)
            if layer_index > 0 or subnet.embeds_inputs:
                grad_x = grad_projected @ layer.weight_ih.T
        if through_time:
            grad_hidden[layer_index] = layer.hidden_gradient(grad_out, cache.gates, grad_recurrent)
    return grad_x, grad_projected, grad_hidden


def _input_gradients(
    subnet: Subnet,
    step: StepBatch,
    grad_x: torch.Tensor | None,
    grad_projected: torch.Tensor,
    input_mask: torch.Tensor | None,
) -> list[tuple[str, torch.Tensor]]:
    """The gradients of the item-table rows layer 0 read, by ``gather_rows`` key, summed per
    distinct row: ``block:`` (constrained ID: rows ``step.rows.input_positions`` of the step's
    rows), ``id:`` (rows ``input_rows``), ``bag:`` (the bag's ``columns``)."""
    rows = step.rows
    grads = []
    if subnet.id_mode in ("constrained", "separate"):
        grad_id = grad_x[:, : subnet.id_width]
        if input_mask is not None:
            grad_id = grad_id * input_mask[:, : subnet.id_width]
        summed = rows.input_one_hot().T @ grad_id  # (distinct inputs, width)
        kind = "block" if subnet.id_mode == "constrained" else "id"
        grads.append((f"{kind}:{subnet.name}", summed))
    elif subnet.id_mode == "one-hot":
        grads.append((f"id:{subnet.name}", rows.input_one_hot().T @ grad_projected))
    for position, name in enumerate(subnet.sparse_inputs):
        if subnet.sparse_embedding:
            columns = subnet.sparse_columns(position)
            grad_bag = grad_x[:, columns]
            if input_mask is not None:
                grad_bag = grad_bag * input_mask[:, columns]
        else:
            grad_bag = grad_projected
        grads.append((f"bag:{subnet.name}:{name}", bag_gradient(grad_bag, step.bags[name])))
    return grads


def _past_caches(network: Network, caches: dict) -> dict:
    """What a step leaves in the back-propagation window, by subnet: per layer its input,
    starting state and ``GRULayer.backward_factors``; its dense input's dropout mask. Only for
    the subnets that trained (the others' chains are not followed back)."""
    kept = {}
    for subnet in network.subnets:
        if subnet.name not in caches or subnet.name not in network.trainable:
            continue
        layer_caches, _, _, input_mask = caches[subnet.name]
        layers = [
            _PastLayer(c.layer_input, c.h, GRULayer.backward_factors(c.h, c.gates, c.mask))
            for c in layer_caches
        ]
        kept[subnet.name] = (layers, input_mask)
    return kept


@dataclass
class _PastLayer:
    layer_input: torch.Tensor | None
    h: torch.Tensor
    factors: BackwardFactors


def _backward_through_time(
    subnet: Subnet,
    prefix: str,
    window: BackpropWindow,
    grad_hidden: list[torch.Tensor | None],
    dense: dict[str, torch.Tensor],
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Carries the gradient w.r.t. the states the current step started from back through the
    window's past steps, newest first; adds their weight gradients to ``dense`` and returns
    their inputs' (item table, rows, gradient) triples (rows may repeat).

    Only the chain from step to step runs step by step, on each past step's precomputed
    ``backward_factors``; the weight and input gradients, sums of per-lane products, are then
    taken once over all the past steps' lanes together.
    """
    n_layers = len(subnet.layers)
    # per past step reached: (step, its _PastLayer per layer, input mask, per layer: gradients
    # w.r.t. the projected input and the recurrent product)
    visited = []
    lanes = window.lanes
    for depth, past in enumerate(reversed(window.past)):
        cached = past.caches.get(subnet.name)
        if cached is None:  # the subnet did not train at that step: its chain stops
            break
        past_layers, input_mask = cached
        n_lanes = past_layers[0].h.shape[0]
        from_next = [lanes.to_previous(grad, n_lanes) for grad in grad_hidden]
        further = depth < len(window.past) - 1
        projected, recurrent = [None] * n_layers, [None] * n_layers
        from_above = None
        for index in reversed(range(n_layers)):
            layer = subnet.layers[index]
            grad = from_next[index] if from_above is None else from_next[index] + from_above
            projected[index], recurrent[index], grad_hidden[index] = layer.backward_through(
                grad, past_layers[index].factors, further
            )
            if index > 0:
                from_above = projected[index] @ layer.weight_ih.T
        visited.append((past.step, past_layers, input_mask, projected, recurrent))
        lanes = past.lanes
    if not visited:
        return []

    for index, layer in enumerate(subnet.layers):
        name = f"{prefix}layers.{index}."
        grad_projected = _cat([v[3][index] for v in visited])
        grad_recurrent = _cat([v[4][index] for v in visited])
        states = _cat([v[1][index].h for v in visited])
        _accumulate(dense, name + "weight_hh", states.T @ grad_recurrent)
        _accumulate(dense, name + "bias_ih", grad_projected.sum(dim=0))
        _accumulate(dense, name + "bias_hh", grad_recurrent.sum(dim=0))
        if layer.weight_ih is not None:
            layer_input = _cat([v[1][index].layer_input for v in visited])
            _accumulate(dense, name + "weight_ih", layer_input.T @ grad_projected)

    # the item-table rows layer 0 read, per lane (the caller sums repeated rows)
    grad_projected = _cat([v[3][0] for v in visited])
    inputs = _cat([v[0].inputs for v in visited])
    grad_x = None
    if subnet.embeds_inputs:
        grad_x = grad_projected @ subnet.layers[0].weight_ih.T
        if visited[0][2] is not None:  # the dense input's dropout
            grad_x = grad_x * _cat([v[2] for v in visited])
    found = []
    if subnet.id_mode in ("constrained", "separate"):
        table = subnet.output_weight if subnet.id_mode == "constrained" else subnet.id_table
        found.append((table, inputs, grad_x[:, : subnet.id_width]))
    elif subnet.id_mode == "one-hot":
        found.append((subnet.id_table, inputs, grad_projected))
    for position, name in enumerate(subnet.sparse_inputs):
        grad_bag = grad_projected
        if subnet.sparse_embedding:
            grad_bag = grad_x[:, subnet.sparse_columns(position)]
        first = 0
        for step, *_ in visited:
            bag, lanes_here = step.bags[name], len(step.inputs)
            grad = bag_gradient(grad_bag[first : first + lanes_here], bag)
            found.append((subnet.bag_table(name), bag.columns, grad))
            first += lanes_here
    return found


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _accumulate(grads: dict[str, torch.Tensor], name: str, grad: torch.Tensor) -> None:
    grads[name] = grad if name not in grads else grads[name] + grad


def _merge_update(
    updates: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    table: torch.Tensor,
    rows: torch.Tensor,
    grad: torch.Tensor,
) -> None:
    """Adds the gradient of ``rows`` (which may repeat) of ``table`` to ``updates``, summed into
    the table's update if it has one, so that every table is updated once per step, over
    distinct rows."""
    for position, (known, known_rows, known_grad) in enumerate(updates):
        if known is table:
            rows, grad = torch.cat([known_rows, rows]), torch.cat([known_grad, grad])
            del updates[position]
            break
    distinct, slots = torch.unique(rows, return_inverse=True)
    summed = grad.new_zeros(len(distinct), grad.shape[1]).index_add_(0, slots, grad)
    updates.append((table, distinct, summed))


def _add_rows(table: torch.Tensor, positions: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``table`` with ``rows`` added at the distinct ``positions``."""
    if torch.compiler.is_compiling():
        # a copy of the summed rows: an index_add would compile to atomic additions when
        # several threads run
        return table.index_copy(0, positions, table.index_select(0, positions) + rows)
    return table.index_add(0, positions, rows)
