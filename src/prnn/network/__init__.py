"""The recurrent network: GRU subnets over item inputs (ID, dense and sparse features), one output
layer over their hidden states, and its hand-written training step."""

from prnn.network.history import BackpropWindow
from prnn.network.inputs import FeatureLookup
from prnn.network.layers import DropoutSpec, GRUGates, GRULayer, dropout_mask, glorot_uniform_
from prnn.network.network import EMBEDDING_MODES, ID, Network, Phase, Subnet, SubnetSpec
from prnn.network.step import BatchRows, SparseBag, StepBatch

__all__ = [
    "EMBEDDING_MODES",
    "ID",
    "BackpropWindow",
    "BatchRows",
    "DropoutSpec",
    "FeatureLookup",
    "GRUGates",
    "GRULayer",
    "Network",
    "Phase",
    "SparseBag",
    "StepBatch",
    "Subnet",
    "SubnetSpec",
    "dropout_mask",
    "glorot_uniform_",
]
