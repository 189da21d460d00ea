"""GRU4Rec: a GRU over the item IDs of a session, trained session-parallel with sampled losses.

Follows hidasib/GRU4Rec_PyTorch_Official (the reference) in behaviour and hyper-parameter
names: three embedding modes, Glorot-uniform initialisation, dropout on the input embedding and
on each hidden layer's output (the dropped-out output is also the state carried to the next
step, as in the reference), Adagrad with momentum that touches only the item rows of the
mini-batch, popularity^alpha negative samples shared by the batch, logQ correction for
cross-entropy. Deviations are listed in docs/gru4rec.md.

The network is ``prnn.network.Network`` with one subnet reading the item ID: the p-RNN family's
network with nothing else in it, trained by the same step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from prnn.config import check_choice, check_number
from prnn.data import EventLog
from prnn.errors import ConfigError
from prnn.losses import LOSSES
from prnn.models.recurrent import RecurrentModel
from prnn.network import ID, Network, SubnetSpec

OPTIMIZERS = ("adagrad", "adam", "adamw")


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
    """Step size of the optimiser."""
    momentum: float = 0.0
    """Momentum of Adagrad; 0 = plain Adagrad."""
    optimizer: str = "adagrad"
    """adagrad (with momentum: the reference's), adam or adamw (PyTorch's Adam / AdamW with
    betas 0.9, 0.999; item tables updated lazily on the touched rows, as SparseAdam)."""
    weight_decay: float = 0.0
    """AdamW's decoupled weight decay (optimizer=adamw only)."""
    sample_alpha: float = 0.5
    """Negatives are drawn with probability proportional to popularity ** sample_alpha."""
    n_sample: int = 2048
    """Extra negatives shared by the mini-batch; 0 = the other lanes' targets only."""
    logq: float = 0.0
    """Weight of the logQ correction of the cross-entropy loss (1.0 = full correction)."""
    full_softmax: bool = False
    """Score every item at every step (the full softmax, cross-entropy only) instead of the
    batch's targets and n_sample sampled items; n_sample, sample_alpha and logq then do not
    apply. Costs items x hidden per lane and step: for catalogues of thousands of items."""
    bptt: int = 1
    """Truncated back-propagation through time: each step's loss back-propagates through the
    last bptt steps of its lane (within its session); 1 = the reference's one-step truncation.
    Training runs eagerly when > 1; each extra step costs about one more GRU backward pass."""
    bpreg: float = 1.0
    """Score regularisation of BPR-max."""
    elu_param: float = 0.5
    """Alpha of the ELU applied to scores under BPR-max; 0 = linear."""
    constrained_embedding: bool = True
    """Input embedding = output weight rows (shared, 'constrained')."""
    embedding: int = 0
    """Size of a separate input embedding; 0 with constrained_embedding=False = one-hot input."""
    n_epochs: int = 10
    """Passes over the training events."""
    seed: int = 42
    """Seeds initialisation, negative sampling and dropout: equal seeds, equal models."""
    sample_store_size: int = 10_000_000
    """Negative samples generated at once (the reference's sample store)."""

    def __post_init__(self) -> None:
        check_choice(self, "loss", LOSSES)
        check_choice(self, "optimizer", OPTIMIZERS)
        check_number(self, "weight_decay", minimum=0.0)
        if self.optimizer != "adagrad" and self.momentum > 0:
            raise ConfigError(
                f"momentum is Adagrad's; optimizer={self.optimizer} keeps its own moments "
                "(set momentum=0)"
            )
        if self.weight_decay > 0 and self.optimizer != "adamw":
            raise ConfigError(
                f"weight_decay applies to optimizer=adamw; got optimizer={self.optimizer}"
            )
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
        check_number(self, "bptt", minimum=1)
        check_number(self, "sample_store_size", minimum=1)
        if self.constrained_embedding and self.embedding > 0:
            raise ConfigError(
                "'embedding' of GRU4RecConfig is unused with constrained_embedding=True "
                "(the input embedding is the output weight matrix); set embedding=0 or "
                "constrained_embedding=False"
            )
        if self.full_softmax and self.loss != "cross-entropy":
            raise ConfigError(
                f"full_softmax=true scores every item with cross-entropy; loss={self.loss} "
                "takes sampled items (set loss=cross-entropy, or full_softmax=false)"
            )
        if self.n_sample == 0 and self.batch_size < 2 and not self.full_softmax:
            raise ConfigError(
                "n_sample=0 uses the other lanes' targets as negatives and needs batch_size >= 2"
            )

    @property
    def embedding_mode(self) -> str:
        if self.constrained_embedding:
            return "constrained"
        return "separate" if self.embedding > 0 else "one-hot"


def network_settings(config: GRU4RecConfig) -> dict:
    """The ``Network`` keyword arguments a GRU4Rec-style config sets."""
    return dict(
        embedding_mode=config.embedding_mode,
        embedding=config.embedding,
        dropout_p_embed=config.dropout_p_embed,
        dropout_p_hidden=config.dropout_p_hidden,
    )


def gru4rec_network(n_items: int, config: GRU4RecConfig) -> Network:
    """GRU4Rec's network: one subnet over the item ID."""
    return Network(
        n_items, [SubnetSpec(ID, (ID,), tuple(config.layers))], **network_settings(config)
    )


#: tensor names of GRU4Rec model files written before the one-network engine (format 1)
_LEGACY_NAMES = {"output_weight": "subnets.0.output_weight", "input_table": "subnets.0.id_table"}


class GRU4Rec(RecurrentModel[GRU4RecConfig]):
    """GRU4Rec (Hidasi et al. 2016, 2018), faithful to the official PyTorch implementation."""

    name = "gru4rec"
    config_class = GRU4RecConfig

    def _fit(
        self,
        events: EventLog,
        item_index: np.ndarray,
        *,
        progress: bool,
        device: str | torch.device = "cpu",
        **training_options,
    ) -> None:
        """Train; ``training_options``: ``valid``, ``patience``, ``valid_metric``,
        ``epoch_callback``, ``compile`` (see ``RecurrentModel._train``)."""
        self._train(
            gru4rec_network(self.n_items, self.config),
            events,
            item_index,
            device=device,
            progress=progress,
            **training_options,
        )

    # ---- persistence: the network's state dict (RecurrentModel._tensors) --------------------

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        if "subnets.0.output_weight" not in tensors:  # a file of the two-network days
            renamed = {}
            for name, tensor in tensors.items():
                if name.startswith("layers."):
                    name = "subnets.0." + name
                renamed[_LEGACY_NAMES.get(name, name)] = tensor
            renamed["subnets.0.weight"] = torch.tensor(1.0)
            tensors = renamed
        network = gru4rec_network(len(self.fitted_vocabulary), self.config)
        network.load_state_dict(tensors)
        self.network = network.to(self.device)
