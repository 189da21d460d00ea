"""The official GRU4Rec (hidasib/GRU4Rec_PyTorch_Official), run from a checkout by the benchmarks.

``train_speed.py`` times it and ``gru4rec_parity.py`` scores it, each beside prnn in the same
process, on the same events and with the same settings. The checkout's ``gru4rec_pytorch.py``
and ``evaluation.py`` are imported unchanged; they need pandas.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from prnn.data import EventLog
from prnn.models import GRU4RecConfig

REPOSITORY = "hidasib/GRU4Rec_PyTorch_Official"
#: prnn setting -> the reference's constructor argument (same names; layers is a list there)
REFERENCE_PARAMETERS = (
    "loss",
    "batch_size",
    "dropout_p_embed",
    "dropout_p_hidden",
    "learning_rate",
    "momentum",
    "sample_alpha",
    "n_sample",
    "embedding",
    "constrained_embedding",
    "bpreg",
    "elu_param",
    "logq",
)
EPOCH_LINE = re.compile(r"Epoch(\d+) --> loss: ([\d.]+) \t\(([\d.]+)s\) .*\| (\d+) e/s\]")


def import_reference(reference_dir: str, module: str) -> ModuleType:
    """``module`` (``gru4rec_pytorch`` or ``evaluation``) of the checkout in ``reference_dir``."""
    if not (Path(reference_dir) / f"{module}.py").is_file():
        raise SystemExit(f"{reference_dir}: no {module}.py; expected a checkout of {REPOSITORY}")
    sys.path.insert(0, reference_dir)
    try:
        return importlib.import_module(module)
    finally:
        sys.path.pop(0)


def item_codes(train: EventLog) -> np.ndarray:
    """The training item ids in order of first appearance: item ``codes[i]`` gets code ``i``.

    The reference numbers items in this order and builds its logQ popularities with
    ``torch.tensor(series)`` of a pandas Series indexed by item id, which torch reads as
    ``series[0], series[1], ...``: by label. Item ids recoded to 0..n-1 in that order make label
    and position agree (with the original ids it fails: "could not determine the shape").
    """
    import pandas as pd

    return pd.unique(train.item_ids)


def events_frame(events: EventLog, codes: np.ndarray):
    """The events as the reference reads them: a pandas frame of SessionId, ItemId (recoded by
    ``codes``; -1 for items outside them, which the reference drops) and Time."""
    import pandas as pd

    return pd.DataFrame(
        {
            "SessionId": events.session_ids,
            "ItemId": pd.Index(codes).get_indexer(events.item_ids),
            "Time": events.timestamps,
        }
    )


@dataclass
class ReferenceRun:
    model: Any
    """The reference's fitted ``GRU4Rec``."""
    codes: np.ndarray
    """The training item ids, by the code the reference knows them by (``item_codes``)."""
    epochs: list[dict]
    """Per epoch: ``epoch``, ``loss``, ``seconds`` and ``rate`` (training events/s)."""


def train_reference(
    reference_dir: str,
    config: GRU4RecConfig,
    train: EventLog,
    device: torch.device,
    seed: int | None = None,
) -> ReferenceRun:
    """Train the reference GRU4Rec with ``config`` on ``train``.

    The reference draws initialisation, negative samples and dropout from PyTorch's global
    generator; ``seed`` seeds it first (prnn's seeds then do not give the same draws).
    """
    reference = import_reference(reference_dir, "gru4rec_pytorch")
    codes = item_codes(train)
    frame = events_frame(train, codes)
    model = reference.GRU4Rec(device=device)
    model.layers = list(config.layers)
    for name in REFERENCE_PARAMETERS:
        setattr(model, name, getattr(config, name))
    model.n_epochs = config.n_epochs
    model.set_loss_function(config.loss)
    if seed is not None:
        torch.manual_seed(seed)
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        # NumPy 2 promotes the compatibility-mode init to float64, which the reference then
        # rejects; torch's own init is its other option and does not change the speed
        model.fit(frame, compatibility_mode=False)
    if model.error_during_train:
        raise SystemExit(f"the reference's training diverged (NaN loss):\n{captured.getvalue()}")
    epochs = [
        {"epoch": int(m[1]), "loss": float(m[2]), "seconds": float(m[3]), "rate": float(m[4])}
        for m in EPOCH_LINE.finditer(captured.getvalue())
    ]
    if len(epochs) != config.n_epochs:
        raise SystemExit(f"could not read the reference's epoch lines:\n{captured.getvalue()}")
    return ReferenceRun(model, codes, epochs)


def evaluate_reference(
    reference_dir: str, run: ReferenceRun, test: EventLog, cutoff: int = 20
) -> tuple[float, float]:
    """(Recall@cutoff, MRR@cutoff) of a trained reference on ``test`` by the reference's own
    ``batch_eval``: every next event, all training items ranked, conservative ties (prnn's
    protocol; the reference drops test events on unknown items where prnn skips their pairs)."""
    evaluation = import_reference(reference_dir, "evaluation")
    with contextlib.redirect_stdout(io.StringIO()):
        recall, mrr = evaluation.batch_eval(
            run.model, events_frame(test, run.codes), cutoff=[cutoff], mode="conservative"
        )
    return float(recall[cutoff]), float(mrr[cutoff])
