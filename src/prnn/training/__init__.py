"""Session-parallel training of the recurrent network: the loop, the planned steps, the step
losses, the p-RNN schedules and compiling the step.

Knows the network's step interface (``prnn.network.Network``), not any recommender."""

from prnn.training.checkpoint import Checkpointing, checkpoint_path, read_checkpoint
from prnn.training.distributed import DistributedTraining
from prnn.training.loop import EpochReport, session_start_order, train_session_parallel
from prnn.training.schedules import TRAINING_METHODS, n_phases, training_phase
from prnn.training.step_loss import (
    AutogradStepLoss,
    CrossEntropyStepLoss,
    make_step_loss,
    sampled_loss,
)

__all__ = [
    "TRAINING_METHODS",
    "AutogradStepLoss",
    "Checkpointing",
    "CrossEntropyStepLoss",
    "DistributedTraining",
    "EpochReport",
    "checkpoint_path",
    "make_step_loss",
    "n_phases",
    "read_checkpoint",
    "sampled_loss",
    "session_start_order",
    "train_session_parallel",
    "training_phase",
]
