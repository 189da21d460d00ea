"""Feature-rich session models: feature-only, concat, and parallel RNNs (p-RNN).

Hidasi, Quadrana, Karatzoglou, Tikk (RecSys 2016). Every architecture is a set of GRU
*subnets* sharing GRU4Rec's training (session-parallel mini-batches, sampled losses, row-wise
Adagrad):

- ``feature-only``: one subnet reading the item's feature vector instead of its ID;
- ``concat``: one subnet reading the ID input and the feature vector side by side;
- ``prnn``: an ID subnet plus one subnet per feature set. Each subnet has its own output block
  (a per-item weight table); the item score is the shared bias plus the sum over subnets of
  ``subnet_weight * <hidden state, output row>``, i.e. the output layer applied to the
  concatenated (weighted) hidden states.

Inputs: the ID as in GRU4Rec (constrained, separate embedding, or one-hot); a dense feature
vector (L2-normalised by default), projected into the GRU by its input weights; a sparse
feature vector (e.g. 1M-dimensional TF-IDF), projected as an embedding bag with per-value
weights over only the rows of its non-zero columns, so no dense row is ever built.

p-RNN training methods (``training``): ``simultaneous`` (all at once), ``residual`` (subnets in
order, each trained for its epochs with the earlier ones frozen and the later ones not yet in
the output), ``alternating`` (one subnet per epoch, round-robin), ``interleaving`` (one subnet
per mini-batch). A frozen subnet's weights, output block and optimiser state do not change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from prnn.config import check_choice
from prnn.data import EventLog
from prnn.errors import ConfigError, DataError
from prnn.features import AlignedFeatures, FeatureMatrix, align_features
from prnn.models.gru4rec import (
    DistinctRows,
    GatheredRows,
    GRU4RecConfig,
    GRULayer,
    SampledScores,
    dropout,
    glorot_uniform_,
)
from prnn.models.recurrent import RecurrentModel

TRAINING_METHODS = ("simultaneous", "residual", "alternating", "interleaving")
OUTPUT_BLOCK_TRAINING = ("with_subnet", "always")
ID = "id"


@dataclass(frozen=True)
class FeatureModelConfig(GRU4RecConfig):
    """GRU4Rec's settings plus the feature and subnet settings of the p-RNN family."""

    features: tuple[str, ...] = ()
    """Feature sets to use, by the names given with --features; () = all of them."""
    normalize_features: bool = True
    """Scale dense feature vectors to unit L2 norm (the paper's image vectors are)."""
    feature_layers: tuple[int, ...] = (100,)
    """p-RNN: hidden units of each feature subnet's GRU layers."""
    training: str = "simultaneous"
    """p-RNN training method: simultaneous, residual, alternating or interleaving."""
    subnet_order: tuple[str, ...] = ()
    """p-RNN: order of the subnets for residual/alternating/interleaving; () = id, then the
    feature sets in the order given."""
    subnet_weights: tuple[float, ...] = ()
    """p-RNN: multiplier of each subnet's hidden state (subnet_order order); () = all 1."""
    learn_subnet_weights: bool = False
    """p-RNN: learn the subnet weights (starting from subnet_weights)."""
    residual_epochs: tuple[int, ...] = ()
    """p-RNN residual: epochs per subnet (subnet_order order); () = n_epochs each."""
    output_blocks: str = "with_subnet"
    """p-RNN residual/alternating/interleaving: a subnet's output block trains only with its
    subnet (with_subnet), or in every step while the subnet is in the output (always: only the
    GRU subnets take turns, the output layer over their concatenated states trains throughout)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "training", TRAINING_METHODS)
        check_choice(self, "output_blocks", OUTPUT_BLOCK_TRAINING)
        if not self.feature_layers or min(self.feature_layers) < 1:
            raise ConfigError(
                f"'feature_layers' must be positive sizes like 100; got {self.feature_layers!r}"
            )
        if any(w < 0 for w in self.subnet_weights):
            raise ConfigError(f"'subnet_weights' must be >= 0; got {self.subnet_weights!r}")
        if any(e < 1 for e in self.residual_epochs):
            raise ConfigError(f"'residual_epochs' must be >= 1; got {self.residual_epochs!r}")


def check_feature_set_name(name: str) -> None:
    """Feature set names become subnet and module names: letters, digits, '_' or '-', not 'id'."""
    if (
        not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name)
        or name == ID
        or hasattr(nn.ModuleDict(), name)
    ):
        raise ConfigError(
            f"feature set name {name!r} is not allowed: use letters, digits, '_' or '-', "
            f"starting with a letter, and not {ID!r} or a Python container method name"
        )


# --------------------------------------------------------------------------------------------
# Subnet schedule
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    active: frozenset[str]
    """Subnets whose output enters the scores."""
    trainable: frozenset[str]
    """Subnets whose weights (and output block) are updated."""


def training_phase(
    method: str, order: tuple[str, ...], epoch: int, step: int, residual_epochs: tuple[int, ...]
) -> Phase:
    """Which subnets are active and trainable at mini-batch ``step`` of (0-based) ``epoch``.

    Interleaving shifts the round-robin by one every epoch: every epoch has the same
    mini-batches, so without the shift a subnet would only ever learn from the same share of
    them (with two subnets, the same half of the transitions).
    """
    everything = frozenset(order)
    if method == "simultaneous" or len(order) == 1:
        return Phase(everything, everything)
    if method == "alternating":
        return Phase(everything, frozenset({order[epoch % len(order)]}))
    if method == "interleaving":
        return Phase(everything, frozenset({order[(step + epoch) % len(order)]}))
    if method == "residual":
        boundaries = np.cumsum(residual_epochs)
        current = int(np.searchsorted(boundaries, epoch, side="right"))
        current = min(current, len(order) - 1)
        return Phase(frozenset(order[: current + 1]), frozenset({order[current]}))
    raise ConfigError(f"unknown training method {method!r}")


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------


@dataclass
class SubnetSpec:
    name: str
    inputs: tuple[str, ...]  # "id" and/or feature set names
    layers: tuple[int, ...]


class FeatureLookup(nn.Module):
    """Feature rows of items as tensors: a dense (I, D) buffer, or a CSR held as three buffers."""

    def __init__(
        self,
        aligned: AlignedFeatures | None = None,
        *,
        dim: int = 0,
        sparse: bool = False,
        n_items: int = 0,
        nnz: int = 0,
    ) -> None:
        super().__init__()
        if aligned is not None:
            sparse, dim = aligned.is_sparse, aligned.dim
        self.sparse = sparse
        self.dim = dim
        if aligned is None:  # shapes only; values come from a saved state dict
            if sparse:
                self.register_buffer("indptr", torch.zeros(n_items + 1, dtype=torch.int64))
                self.register_buffer("indices", torch.zeros(nnz, dtype=torch.int64))
                self.register_buffer("values", torch.zeros(nnz))
            else:
                self.register_buffer("matrix", torch.zeros(n_items, dim))
            return
        items = np.arange(len(aligned.source_row))
        if sparse:
            rows = aligned.sparse_rows(items).astype(np.float32)
            self.register_buffer("indptr", torch.from_numpy(rows.indptr.astype(np.int64)))
            self.register_buffer("indices", torch.from_numpy(rows.indices.astype(np.int64)))
            self.register_buffer("values", torch.from_numpy(rows.data.astype(np.float32)))
        else:
            self.register_buffer("matrix", torch.from_numpy(aligned.dense_rows(items)))

    def dense(self, items: torch.Tensor) -> torch.Tensor:
        return self.matrix.index_select(0, items)

    def bag(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flattened non-zeros of the items' rows: (columns, values, offsets per item)."""
        starts, ends = self.indptr[items], self.indptr[items + 1]
        lengths = ends - starts
        offsets = torch.cumsum(lengths, 0) - lengths
        flat = torch.repeat_interleave(starts - offsets, lengths) + torch.arange(
            int(lengths.sum()), device=items.device
        )
        return self.indices[flat], self.values[flat], offsets


class Subnet(nn.Module):
    """A GRU over one or more inputs of the items (ID embedding, feature vectors)."""

    def __init__(
        self,
        spec: SubnetSpec,
        n_items: int,
        config: FeatureModelConfig,
        features: dict[str, FeatureLookup],
        weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.name = spec.name
        # multiplier of this subnet's hidden state in the output; a parameter of the subnet when
        # learned, so freezing the subnet freezes it too
        if config.learn_subnet_weights:
            self.weight = nn.Parameter(torch.tensor(float(weight)))
        else:
            self.register_buffer("weight", torch.tensor(float(weight)))
        self.inputs = spec.inputs
        self.layer_sizes = tuple(spec.layers)
        first = self.layer_sizes[0]
        self.id_mode = config.embedding_mode if ID in spec.inputs else None
        self.dense_inputs = [n for n in spec.inputs if n != ID and not features[n].sparse]
        self.sparse_inputs = [n for n in spec.inputs if n != ID and features[n].sparse]
        # output block of this subnet: one row of hidden size per item, trained row-wise
        self.register_buffer("output_weight", torch.empty(n_items, self.layer_sizes[-1]))
        dense_width = sum(features[n].dim for n in self.dense_inputs)
        if self.id_mode == "constrained":
            dense_width += self.layer_sizes[-1]
        elif self.id_mode == "separate":
            self.register_buffer("id_table", torch.empty(n_items, config.embedding))
            dense_width += config.embedding
        elif self.id_mode == "one-hot":
            self.register_buffer("id_table", torch.empty(n_items, 3 * first))
        # a sparse input's projection table: one (3H) row per feature column (embedding bag)
        for name in self.sparse_inputs:
            self.register_buffer(f"bag_{name}", torch.empty(features[name].dim, 3 * first))
        sizes_in = [dense_width or None, *self.layer_sizes[:-1]]
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
            table = getattr(self, f"bag_{name}")
            glorot_uniform_(table, table.shape[0], first, generator)
        for layer in self.layers:
            layer.reset_parameters(generator)

    def item_tables(self) -> list[torch.Tensor]:
        tables = [self.output_weight]
        if self.id_mode in ("separate", "one-hot"):
            tables.append(self.id_table)
        return tables + [getattr(self, f"bag_{n}") for n in self.sparse_inputs]


class FeatureNetwork(nn.Module):
    """Subnets + a shared output bias; the trainer's network interface (as GRU4RecNetwork)."""

    def __init__(
        self,
        n_items: int,
        config: FeatureModelConfig,
        specs: list[SubnetSpec],
        features: dict[str, FeatureLookup],
        subnet_weights: list[float],
    ) -> None:
        super().__init__()
        self.n_items = n_items
        self.dropout_p_embed = config.dropout_p_embed
        self.dropout_p_hidden = config.dropout_p_hidden
        self.output_blocks_always = config.output_blocks == "always"
        self.features = nn.ModuleDict(features)
        self.subnets = nn.ModuleList(
            Subnet(spec, n_items, config, features, weight)
            for spec, weight in zip(specs, subnet_weights)
        )
        self.register_buffer("output_bias", torch.zeros(n_items, 1))
        self._distinct: dict[int, DistinctRows] = {}
        self.set_phase(None)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.subnets]

    @property
    def subnet_weight(self) -> torch.Tensor:
        """The subnets' output multipliers, in subnet order (read-only view for reports)."""
        return torch.stack([s.weight.detach() for s in self.subnets])

    def set_phase(self, phase: Phase | None) -> None:
        """Choose the active and trainable subnets (None = all of both)."""
        names = frozenset(self.names)
        self.active = names if phase is None else phase.active
        self.trainable = names if phase is None else phase.trainable
        for subnet in self.subnets:
            subnet.requires_grad_(subnet.name in self.trainable)

    def reset_parameters(self, generator: torch.Generator) -> None:
        for subnet in self.subnets:
            subnet.reset_parameters(generator)
        self.output_bias.zero_()

    def item_tables(self) -> list[torch.Tensor]:
        return [self.output_bias] + [t for s in self.subnets for t in s.item_tables()]

    def initial_hidden(self, n_lanes: int) -> list[torch.Tensor]:
        device = self.output_bias.device
        return [torch.zeros(n_lanes, h, device=device) for s in self.subnets for h in s.layer_sizes]

    def _hidden_slices(self) -> list[slice]:
        slices, start = [], 0
        for subnet in self.subnets:
            slices.append(slice(start, start + len(subnet.layer_sizes)))
            start += len(subnet.layer_sizes)
        return slices

    def _distinct_for(self, size: int, device) -> DistinctRows:
        finder = self._distinct.get(size)
        if finder is None or finder.marked.device != device:
            finder = self._distinct[size] = DistinctRows(size, device)
        return finder

    def _distinct_rows(
        self,
        table: torch.Tensor,
        items: torch.Tensor,
        train: bool,
        gathered: list[GatheredRows] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, positions): ``rows[positions]`` are the rows of ``items``.

        When training this table, ``rows`` is a leaf holding each distinct item's row once, so
        its gradient is ready for the row-wise update; otherwise the table itself.
        """
        if not train:
            return table, items
        distinct, positions = self._distinct_for(table.shape[0], items.device)(items)
        leaf = table.index_select(0, distinct).requires_grad_()
        gathered.append(GatheredRows(table, distinct, leaf))
        return leaf, positions

    def _lookup(self, table, items, train, gathered) -> torch.Tensor:
        rows, positions = self._distinct_rows(table, items, train, gathered)
        return rows.index_select(0, positions)

    def _subnet_step(
        self,
        subnet: Subnet,
        items: torch.Tensor,
        hidden: list[torch.Tensor],
        generator,
        gathered: list[GatheredRows] | None,
        output_rows: dict | None = None,
    ) -> list[torch.Tensor]:
        train = gathered is not None and subnet.name in self.trainable
        dense_parts, projections = [], []
        if subnet.id_mode == "constrained":
            if output_rows is None:  # inference: plain lookup of the output rows
                dense_parts.append(subnet.output_weight.index_select(0, items))
            else:  # training: the rows gathered once for input and output (as GRU4Rec)
                block, input_columns = output_rows[subnet.name], output_rows["inputs"]
                dense_parts.append(block.index_select(0, input_columns))
        elif subnet.id_mode == "separate":
            dense_parts.append(self._lookup(subnet.id_table, items, train, gathered))
        elif subnet.id_mode == "one-hot":
            projections.append(self._lookup(subnet.id_table, items, train, gathered))
        for name in subnet.dense_inputs:
            dense_parts.append(self.features[name].dense(items))
        for name in subnet.sparse_inputs:
            columns, values, offsets = self.features[name].bag(items)
            table = getattr(subnet, f"bag_{name}")
            rows, positions = self._distinct_rows(table, columns, train, gathered)
            projections.append(
                F.embedding_bag(positions, rows, offsets, mode="sum", per_sample_weights=values)
            )
        layer0 = subnet.layers[0]
        if dense_parts:
            x = dense_parts[0] if len(dense_parts) == 1 else torch.cat(dense_parts, dim=1)
            x = dropout(x, self.dropout_p_embed, generator)
            projected = layer0.project_input(x)
        else:
            projected = layer0.bias_ih
        for extra in projections:  # one-hot ID and sparse inputs arrive projected
            projected = projected + extra
        new_hidden = []
        for index, layer in enumerate(subnet.layers):
            if index > 0:
                projected = layer.project_input(x)
            # without a dense input, layer 0 acts as the embedding and gets its dropout (as
            # GRU4Rec's one-hot mode)
            p = self.dropout_p_embed if index == 0 and not dense_parts else self.dropout_p_hidden
            x = dropout(layer(projected, hidden[index]), p, generator)
            new_hidden.append(x)
        return new_hidden

    def _run(self, items, hidden, generator, gathered, output_rows=None):
        new_hidden = list(hidden)
        for subnet, part in zip(self.subnets, self._hidden_slices()):
            if subnet.name in self.active:
                new_hidden[part] = self._subnet_step(
                    subnet, items, hidden[part], generator, gathered, output_rows
                )
        return new_hidden

    def sampled_scores(self, inputs, outputs, hidden, generator):
        """Training step; same contract as ``GRU4RecNetwork.sampled_scores``."""
        gathered: list[GatheredRows] = []
        active = [s for s in self.subnets if s.name in self.active]
        distinct = self._distinct_for(self.n_items, outputs.device)
        if any(s.id_mode == "constrained" for s in active):
            # a constrained ID input reads the output rows: gather input and output items once,
            # as GRU4Rec does, so each touched row gets one update from its summed gradient
            batch = len(inputs)
            rows, inverse = distinct(torch.cat([inputs, outputs]))
            input_columns, output_columns = inverse[:batch], inverse[batch:]
            is_output = torch.zeros(len(rows), dtype=torch.bool, device=rows.device)
            is_output[output_columns] = True
            outputs_only = is_output  # for tables the reference touches on output rows only
        else:
            rows, output_columns = distinct(outputs)
            input_columns, outputs_only = None, None
        output_rows: dict = {"inputs": input_columns}  # what the subnets' inputs read
        blocks = {}  # what the scores read
        for subnet in active:
            block = subnet.output_weight.index_select(0, rows)
            trains_subnet = subnet.name in self.trainable
            if trains_subnet or self.output_blocks_always:
                block.requires_grad_()
                # a constrained ID table is also the ID input, which trains with its subnet only
                constrained_input = subnet.id_mode == "constrained" and trains_subnet
                touched = None if constrained_input else outputs_only
                gathered.append(GatheredRows(subnet.output_weight, rows, block, touched))
            blocks[subnet.name] = block
            output_rows[subnet.name] = block if trains_subnet else block.detach()
        new_hidden = self._run(inputs, hidden, generator, gathered, output_rows)
        bias = self.output_bias.index_select(0, rows).requires_grad_()
        gathered.append(GatheredRows(self.output_bias, rows, bias, outputs_only))
        scores = bias.T
        for subnet, part in zip(self.subnets, self._hidden_slices()):
            if subnet.name in self.active:
                block = blocks[subnet.name]
                scores = torch.addmm(scores, new_hidden[part][-1] * subnet.weight, block.T)
        return SampledScores(scores, output_columns), new_hidden, gathered

    @torch.no_grad()
    def step(self, items: torch.Tensor, hidden: list[torch.Tensor]) -> list[torch.Tensor]:
        return self._run(items, hidden, None, None)

    @torch.no_grad()
    def scores(self, hidden: list[torch.Tensor], candidates: torch.Tensor | None) -> torch.Tensor:
        """(B, C) scores of all items or of the candidate items, from the rows' states."""
        bias = self.output_bias if candidates is None else self.output_bias[candidates]
        scores = bias.T.expand(len(hidden[0]), -1).clone()
        for subnet, part in zip(self.subnets, self._hidden_slices()):
            block = subnet.output_weight
            if candidates is not None:
                block = block.index_select(0, candidates)
            scores.addmm_(hidden[part][-1] * subnet.weight, block.T)
        return scores


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class FeatureModel(RecurrentModel[FeatureModelConfig]):
    """Shared fitting, scoring and persistence of the feature-rich architectures."""

    config_class = FeatureModelConfig
    uses_features = True

    # -- what differs between the architectures
    def subnet_specs(self, feature_names: list[str]) -> list[SubnetSpec]:
        raise NotImplementedError

    def _feature_names(self, available: list[str]) -> list[str]:
        for name in available:
            check_feature_set_name(name)
        wanted = list(self.config.features) or available
        unknown = [n for n in wanted if n not in available]
        if unknown:
            raise ConfigError(
                f"{self.name}: feature set(s) {', '.join(unknown)} not given; "
                f"available: {', '.join(available) or 'none (use --features NAME=PATH)'}"
            )
        if not wanted:
            raise ConfigError(f"{self.name} needs item features: pass --features NAME=PATH")
        return wanted

    def _subnet_weights(self, specs: list[SubnetSpec]) -> list[float]:
        weights = list(self.config.subnet_weights) or [1.0] * len(specs)
        if len(weights) != len(specs):
            raise ConfigError(
                f"'subnet_weights' needs one value per subnet ({len(specs)}: "
                f"{', '.join(s.name for s in specs)}); got {len(weights)}"
            )
        order = self._order(specs)
        by_name = dict(zip(order, weights))
        return [by_name[s.name] for s in specs]

    def _order(self, specs: list[SubnetSpec]) -> tuple[str, ...]:
        names = [s.name for s in specs]
        order = tuple(self.config.subnet_order) or tuple(names)
        if sorted(order) != sorted(names):
            raise ConfigError(
                f"'subnet_order' must list the subnets {', '.join(names)} once each; got {order}"
            )
        return order

    def _fit(
        self,
        events: EventLog,
        item_index: np.ndarray,
        *,
        progress: bool,
        features: dict[str, FeatureMatrix] | None = None,
        valid: EventLog | None = None,
        patience: int = 0,
        valid_metric: str = "recall@20",
        device: str | torch.device = "cpu",
        epoch_callback=None,
    ) -> None:

        features = features or {}
        names = self._feature_names(list(features))
        lookups = {}
        self.feature_report_ = {}
        for name in names:
            aligned = align_features(
                features[name],
                self.fitted_vocabulary,
                name=name,
                normalize=self.config.normalize_features and not features[name].is_sparse,
            )
            self.feature_report_[name] = {"missing": aligned.n_missing, "unused": aligned.n_unused}
            lookups[name] = FeatureLookup(aligned)
        specs = self.subnet_specs(names)
        order = self._order(specs)
        residual = tuple(self.config.residual_epochs) or (self.config.n_epochs,) * len(order)
        if len(residual) != len(order):
            raise ConfigError(f"'residual_epochs' needs one value per subnet ({len(order)})")
        method = self.config.training
        if method == "residual" and len(order) > 1 and patience > 0:
            raise ConfigError(
                "early stopping (patience) is not available with training=residual: each subnet "
                "trains for its residual_epochs; validation still reports every epoch"
            )

        def phase(epoch: int, step: int) -> Phase:
            return training_phase(method, order, epoch, step, residual)

        n_epochs = sum(residual) if method == "residual" and len(order) > 1 else None
        self._train(
            FeatureNetwork(self.n_items, self.config, specs, lookups, self._subnet_weights(specs)),
            events,
            item_index,
            device=device,
            progress=progress,
            valid=valid,
            patience=patience,
            valid_metric=valid_metric,
            phase=phase,
            n_epochs=n_epochs,
            epoch_callback=epoch_callback,
        )
        self.network.set_phase(None)

    def _tensors(self) -> dict[str, torch.Tensor]:
        network = self._fitted_network()
        tensors = super()._tensors()
        # enough to rebuild the network's shapes on load
        tensors["meta.feature_names"] = torch.tensor(
            list(b"\0".join(n.encode() for n in network.features)), dtype=torch.uint8
        )
        return tensors

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        raw = bytes(tensors.pop("meta.feature_names").tolist())
        names = [n.decode() for n in raw.split(b"\0")] if raw else []
        lookups = {}
        for name in names:
            prefix = f"features.{name}."
            if prefix + "matrix" in tensors:
                n_items, dim = tensors[prefix + "matrix"].shape
                lookups[name] = FeatureLookup(dim=dim, sparse=False, n_items=n_items)
            else:
                dim = int(tensors[f"subnets.{self._subnet_with(names, name)}.bag_{name}"].shape[0])
                lookups[name] = FeatureLookup(
                    dim=dim,
                    sparse=True,
                    n_items=len(tensors[prefix + "indptr"]) - 1,
                    nnz=len(tensors[prefix + "indices"]),
                )
        specs = self.subnet_specs(names)
        weights = [float(tensors[f"subnets.{i}.weight"]) for i in range(len(specs))]
        network = FeatureNetwork(self.n_items, self.config, specs, lookups, weights)
        network.load_state_dict(tensors)
        network.set_phase(None)
        self.network = network.to(self.device)

    def _subnet_with(self, names: list[str], feature: str) -> int:
        for index, spec in enumerate(self.subnet_specs(names)):
            if feature in spec.inputs:
                return index
        raise DataError(f"saved model has feature set {feature!r} but no subnet reads it")


class FeatureOnly(FeatureModel):
    """One GRU over the item's feature vector(s) instead of its ID; scores item IDs."""

    name = "feature-only"

    def subnet_specs(self, feature_names: list[str]) -> list[SubnetSpec]:
        return [SubnetSpec("features", tuple(feature_names), tuple(self.config.layers))]


class Concat(FeatureModel):
    """One GRU whose input is the ID input and the feature vector(s) side by side."""

    name = "concat"

    def subnet_specs(self, feature_names: list[str]) -> list[SubnetSpec]:
        return [SubnetSpec("concat", (ID, *feature_names), tuple(self.config.layers))]


class PRNN(FeatureModel):
    """Parallel RNN: an ID subnet and one subnet per feature set, outputs combined."""

    name = "prnn"

    def subnet_specs(self, feature_names: list[str]) -> list[SubnetSpec]:
        specs = [SubnetSpec(ID, (ID,), tuple(self.config.layers))]
        return specs + [
            SubnetSpec(name, (name,), tuple(self.config.feature_layers)) for name in feature_names
        ]
