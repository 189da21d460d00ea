"""Feature-rich session models: feature-only, concat, and parallel RNNs (p-RNN).

Hidasi, Quadrana, Karatzoglou, Tikk (RecSys 2016). Every architecture is a set of GRU
*subnets* of ``prnn.network.Network`` (GRU4Rec is the same network with one ID subnet), sharing
GRU4Rec's training (session-parallel mini-batches, sampled losses, row-wise Adagrad):

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
import scipy.sparse as sp
import torch
from torch import nn

from prnn.config import check_choice, check_number
from prnn.data import EventLog, Vocabulary
from prnn.errors import ConfigError, DataError
from prnn.features import FeatureMatrix, align_features
from prnn.models.gru4rec import GRU4RecConfig, network_settings
from prnn.models.recurrent import RecurrentModel, adapt_optimizer_state
from prnn.network import ID, FeatureLookup, Network, Phase, SubnetSpec
from prnn.training import TRAINING_METHODS, n_phases, training_phase

OUTPUT_BLOCK_TRAINING = ("with_subnet", "always")
OUTPUT_SOURCES = ("id", "features", "hybrid")


@dataclass(frozen=True)
class FeatureModelConfig(GRU4RecConfig):
    """GRU4Rec's settings plus the feature and subnet settings of the p-RNN family."""

    features: tuple[str, ...] = ()
    """Feature sets to use, by the names given with --features; () = all of them."""
    normalize_features: bool = True
    """Scale dense feature vectors to unit L2 norm (the paper's image vectors are)."""
    sparse_embedding: int = 0
    """Sparse inputs (e.g. TF-IDF text): 0 = projected straight into the first GRU layer's
    gates (the paper's input weights, 3 x hidden columns per feature column); > 0 = embedded
    in this many columns first, which then join the dense input."""
    feature_layers: tuple[int, ...] = (100,)
    """p-RNN: hidden units of each feature subnet's GRU layers."""
    training: str = "residual"
    """p-RNN training method: simultaneous, residual, alternating or interleaving (the default,
    residual, beat ID only with image and with text features on every split seed tried, where
    simultaneous lost to it: docs/prnn.md)."""
    subnet_order: tuple[str, ...] = ()
    """p-RNN: order of the subnets for residual/alternating/interleaving; () = id, then the
    feature sets in the order given."""
    subnet_weights: tuple[float, ...] = ()
    """p-RNN: multiplier of each subnet's hidden state (subnet_order order); () = all 1."""
    learn_subnet_weights: bool = False
    """p-RNN: learn the subnet weights (starting from subnet_weights)."""
    residual_epochs: tuple[int, ...] = ()
    """p-RNN residual: epochs per subnet (subnet_order order); () = n_epochs in all: the
    subnets after the first share ``residual_share`` of them (at least one epoch each) and the
    first trains the rest."""
    residual_share: float = 0.2
    """p-RNN residual with residual_epochs=(): the share of n_epochs for the later subnets."""
    output_blocks: str = "with_subnet"
    """p-RNN residual/alternating/interleaving: a subnet's output block trains only with its
    subnet (with_subnet), or in every step while the subnet is in the output (always: only the
    GRU subnets take turns, the output layer over their concatenated states trains throughout)."""

    output: str = "id"
    """Where items' output vectors (and biases) come from: id (each item's own rows, as in the
    paper), features (a learned projection of its dense feature vectors, so an item never
    clicked in training gets a score: docs/cold_start.md) or hybrid (the two added). With
    output=features an ID input needs its own embedding: constrained_embedding=False and
    embedding > 0 (or one-hot)."""
    output_features: tuple[str, ...] = ()
    """output=features/hybrid: the dense feature sets projected; () = every dense one used."""
    output_id_dropout: float = 0.5
    """output=hybrid: the probability that an item's ID output part is left out of a training
    step, so that its features learn to score it alone, as they must for items added later
    (0.5 beat 0 and 0.2 on amazon_toys_mm for warm and cold items alike: docs/cold_start.md)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "training", TRAINING_METHODS)
        check_choice(self, "output", OUTPUT_SOURCES)
        check_number(self, "output_id_dropout", minimum=0.0, maximum=1.0)
        check_choice(self, "output_blocks", OUTPUT_BLOCK_TRAINING)
        if not self.feature_layers or min(self.feature_layers) < 1:
            raise ConfigError(
                f"'feature_layers' must be positive sizes like 100; got {self.feature_layers!r}"
            )
        if any(w < 0 for w in self.subnet_weights):
            raise ConfigError(f"'subnet_weights' must be >= 0; got {self.subnet_weights!r}")
        check_number(self, "sparse_embedding", minimum=0)
        check_number(self, "residual_share", minimum=0.0, maximum=1.0)
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
# Models
# --------------------------------------------------------------------------------------------


def _most_alike(
    vectors: torch.Tensor, old_rows: torch.Tensor, new_rows: torch.Tensor, k: int
) -> torch.Tensor:
    """(len(new_rows), k): for each new item, the positions among ``old_rows`` of the k items
    whose ``vectors`` have the highest cosine with its own (in chunks: bounded memory)."""
    unit = torch.nn.functional.normalize(vectors, dim=1)
    known = unit[old_rows]
    k = min(k, len(old_rows))
    chunks = [
        torch.topk(unit[new_rows[start : start + 1024]] @ known.T, k, dim=1).indices
        for start in range(0, len(new_rows), 1024)
    ]
    return torch.cat(chunks) if chunks else torch.zeros(0, k, dtype=torch.int64)


def residual_split(n_epochs: int, n_subnets: int, share: float) -> tuple[int, ...]:
    """Residual training's epochs per subnet within ``n_epochs``: the subnets after the first
    share ``share`` of them, at least one epoch each, and the first trains the rest (at least
    one). E.g. 10 epochs, 2 subnets, 0.2: (8, 2)."""
    if n_subnets == 1:
        return (n_epochs,)
    later = max(1, round(n_epochs * share / (n_subnets - 1)))
    first = max(1, n_epochs - later * (n_subnets - 1))
    return (first, *(later,) * (n_subnets - 1))


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

    def _network(
        self, specs: list[SubnetSpec], lookups: dict[str, FeatureLookup], weights: list[float]
    ) -> Network:
        return Network(
            self.n_items,
            specs,
            lookups,
            subnet_weights=weights,
            learn_subnet_weights=self.config.learn_subnet_weights,
            output_blocks_always=self.config.output_blocks == "always",
            sparse_embedding=self.config.sparse_embedding,
            output=self.config.output,
            output_features=self._output_features(specs, lookups),
            output_id_dropout=self.config.output_id_dropout,
            **network_settings(self.config),
        )

    def _output_features(
        self, specs: list[SubnetSpec], lookups: dict[str, FeatureLookup]
    ) -> tuple[str, ...]:
        """The feature sets the output projection reads (output=features/hybrid)."""
        if self.config.output == "id":
            return ()
        names = list(self.config.output_features) or [n for n in lookups if not lookups[n].sparse]
        unknown = [n for n in names if n not in lookups]
        sparse = [n for n in names if n in lookups and lookups[n].sparse]
        if unknown or sparse or not names:
            dense = [n for n in lookups if not lookups[n].sparse]
            problems = [f"{', '.join(unknown)} not given"] if unknown else []
            problems += [f"{', '.join(sparse)} sparse"] if sparse else []
            raise ConfigError(
                f"output={self.config.output} projects dense feature sets"
                + (f" ({'; '.join(problems)})" if problems else "")
                + f"; dense ones given: {', '.join(dense) or 'none'}"
            )
        reads_id = any(ID in spec.inputs for spec in specs)
        if self.config.output == "features" and reads_id and self.config.constrained_embedding:
            raise ConfigError(
                "output=features replaces the ID output rows that a constrained ID embedding "
                "reads as its input: set constrained_embedding=false (and embedding=100 for a "
                "separate embedding, or 0 for one-hot)"
            )
        return tuple(names)

    def _fit(
        self,
        events: EventLog,
        item_index: np.ndarray,
        *,
        progress: bool,
        features: dict[str, FeatureMatrix] | None = None,
        patience: int = 0,
        device: str | torch.device = "cpu",
        **training_options,
    ) -> None:
        """Train; ``training_options``: ``valid``, ``valid_metric``, ``epoch_callback``,
        ``compile`` (see ``RecurrentModel._train``)."""
        features = features or {}
        names = self._feature_names(list(features))
        init = training_options.get("init")
        if init is not None:
            # the subnets in the trained model's order, whatever the order given now
            trained = list(init._fitted_network().features)
            if sorted(trained) != sorted(names):
                raise ConfigError(
                    f"init: the trained model reads the feature sets {', '.join(trained)}; "
                    f"this training reads {', '.join(names)}"
                )
            names = trained
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
        residual = tuple(self.config.residual_epochs) or residual_split(
            self.config.n_epochs, len(order), self.config.residual_share
        )
        if len(residual) != len(order):
            raise ConfigError(f"'residual_epochs' needs one value per subnet ({len(order)})")
        method = self.config.training
        staged = method == "residual" and len(order) > 1

        def phase(epoch: int, step: int) -> Phase:
            return training_phase(method, order, epoch, step, residual)

        n_epochs = sum(residual) if staged else None
        self._train(
            self._network(specs, lookups, self._subnet_weights(specs)),
            events,
            item_index,
            device=device,
            progress=progress,
            patience=patience,
            phase=phase,
            n_phases=n_phases(method, len(order)),
            n_epochs=n_epochs,
            # early stopping picks among the last stage's epochs, when every subnet is in
            early_stopping_from=sum(residual[:-1]) if staged else 0,
            **training_options,
        )
        self.network.set_phase(None)

    # ---- new items from their features (item cold start) ------------------------------------

    def add_items(self, features: dict[str, FeatureMatrix], *, neighbours: int = 10) -> np.ndarray:
        """Add every item of ``features`` that the model lacks, without retraining; returns
        their ids.

        Needs a model trained with ``output=features`` or ``hybrid``: a new item's output
        vector and bias come from the learned projection of its feature vectors. Its ID rows
        (the hybrid output's ID part and bias, an ID input's embedding) are the mean of those
        of the ``neighbours`` known items whose output feature vectors are most alike (cosine);
        0 leaves them at zero. Its feature rows also feed the feature subnets when a session
        clicks it. ``features``: feature sets by the names the model was trained with (any
        subset; a new item missing from a set gets a zero row there).
        """
        network = self._fitted_network()
        if network.output == "id":
            raise ConfigError(
                f"{self.name} was trained with output=id: an item it never saw clicked has no "
                "output vector. Train with --set output=hybrid (or features) to add items later"
            )
        unknown = [name for name in features if name not in network.features]
        if unknown:
            raise ConfigError(
                f"feature set(s) {', '.join(unknown)} are not the model's; it reads "
                f"{', '.join(network.features)}"
            )
        vocabulary = self.fitted_vocabulary
        new_ids = []
        for matrix in features.values():
            converted, convertible = vocabulary._as_id_dtype(matrix.item_ids)
            if not convertible.all():
                example = matrix.item_ids[~convertible][0]
                raise DataError(
                    f"{matrix.source}: item id {example!r} cannot be an id of this model, whose "
                    "ids are integers"
                )
            new_ids.append(converted[vocabulary.index(converted) < 0])
        added = np.unique(np.concatenate(new_ids)) if new_ids else vocabulary.item_ids[:0]
        if not len(added):
            return added
        merged = Vocabulary(
            item_ids=np.union1d(vocabulary.item_ids, added),
            counts=np.zeros(len(vocabulary) + len(added), dtype=np.int64),
        )
        old_rows = torch.from_numpy(merged.index(vocabulary.item_ids))
        merged.counts[old_rows.numpy()] = vocabulary.counts
        lookups = {
            name: self._merged_lookup(name, lookup, vocabulary, merged, features.get(name))
            for name, lookup in network.features.items()
        }
        specs = self.subnet_specs(list(network.features))
        self.vocabulary = merged  # the network is built for the merged catalogue
        try:
            grown = self._network(specs, lookups, [float(s.weight) for s in network.subnets])
        except BaseException:
            self.vocabulary = vocabulary
            raise
        old_state = network.state_dict(keep_vars=True)  # the tensors themselves, for their ids
        item_tables = {id(t) for t in network.item_tables()}
        item_table_names = {
            name
            for name, tensor in old_state.items()
            if id(tensor) in item_tables and ".bag_" not in name
        }
        new_rows = torch.from_numpy(merged.index(added))
        vectors = grown.output_inputs(None)
        # new items without output features have no neighbours: their ID rows stay zero
        described = new_rows[vectors[new_rows].abs().sum(dim=1) > 0]
        similar = _most_alike(vectors, old_rows, described, neighbours) if neighbours > 0 else None
        with torch.no_grad():
            for name, tensor in grown.state_dict().items():
                if name.startswith("features."):
                    continue  # built from the merged feature rows above
                if name in item_table_names:
                    old = old_state[name].detach().cpu()
                    tensor.zero_()
                    tensor[old_rows] = old
                    if similar is not None:
                        tensor[described] = old[similar].mean(dim=1)
                else:
                    tensor.copy_(old_state[name].detach())
        grown.set_phase(None)
        self.network = grown.to(self.device)
        if self.optimizer_state_ is not None:  # kept for continued training: grown alike
            self.optimizer_state_ = adapt_optimizer_state(
                self.optimizer_state_,
                grown,
                old_rows,
                len(merged),
                momentum=self.config.momentum > 0,
                optimizer=self.config.optimizer,
            )
        return added

    def _merged_lookup(
        self,
        name: str,
        lookup: FeatureLookup,
        vocabulary: Vocabulary,
        merged: Vocabulary,
        given: FeatureMatrix | None,
    ) -> FeatureLookup:
        """Feature set ``name`` addressed by ``merged``: the model's rows for its items, the
        ``given`` rows for the new ones (zero rows for new items it lacks)."""
        if lookup.sparse:
            indptr, indices = lookup.indptr.cpu().numpy(), lookup.indices.cpu().numpy()
            rows = sp.csr_matrix(
                (lookup.values.cpu().numpy(), indices, indptr), shape=(len(vocabulary), lookup.dim)
            )
        else:
            rows = lookup.matrix.cpu().numpy()
        ids = vocabulary.item_ids
        if given is not None:
            if given.dim != lookup.dim:
                raise DataError(
                    f"{given.source}: feature set {name!r} has {given.dim} columns; the model's "
                    f"has {lookup.dim}"
                )
            converted, _ = vocabulary._as_id_dtype(given.item_ids)
            fresh = np.flatnonzero(vocabulary.index(converted) < 0)
            extra = given.values[fresh]
            if lookup.sparse:
                rows = sp.vstack([rows, sp.csr_matrix(extra, dtype=np.float32)]).tocsr()
            else:
                rows = np.vstack([rows, np.asarray(extra, dtype=np.float32)])
            ids = np.concatenate([ids, converted[fresh]])
        aligned = align_features(
            FeatureMatrix(ids, rows, source=f"feature set {name!r}"),
            merged,
            name=name,
            normalize=self.config.normalize_features and not lookup.sparse,
        )
        return FeatureLookup(aligned)

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
        network = self._network(specs, lookups, weights)
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
