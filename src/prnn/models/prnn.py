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
import torch
from torch import nn

from prnn.config import check_choice, check_number
from prnn.data import EventLog
from prnn.errors import ConfigError, DataError
from prnn.features import FeatureMatrix, align_features
from prnn.models.gru4rec import GRU4RecConfig, network_settings
from prnn.models.recurrent import RecurrentModel
from prnn.network import ID, FeatureLookup, Network, Phase, SubnetSpec
from prnn.training import TRAINING_METHODS, n_phases, training_phase

OUTPUT_BLOCK_TRAINING = ("with_subnet", "always")


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
            **network_settings(self.config),
        )

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
