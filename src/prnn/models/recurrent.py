"""What every recurrent model shares: lanes of hidden states and the scoring interface on them.

A recurrent model holds a ``prnn.network.Network`` that provides ``initial_hidden(n)``,
``step(items, hidden)`` (one event per row, no dropout) and ``scores(hidden, candidates)``
(next-item scores from the rows' hidden states); this module turns that into ``new_state`` /
``advance`` / ``reset`` / ``score`` on lanes, device placement, training through
``prnn.training`` and persistence of the network's tensors.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from prnn.config import config_to_dict
from prnn.errors import ConfigError
from prnn.models.base import ConfigT, SessionRecommender
from prnn.threads import resolve_threads, using_threads
from prnn.training import Checkpointing, session_start_order, train_session_parallel
from prnn.training.checkpoint import events_fingerprint

log = logging.getLogger(__name__)

#: the metrics ``valid`` may be asked to improve
VALID_METRICS = tuple(
    f"{m}@{k}" for m in ("recall", "mrr", "coverage", "popularity") for k in (5, 10, 20)
)


class GRUState:
    """Hidden states of ``n`` lanes, one (n, H_l) tensor per layer (of every subnet)."""

    def __init__(self, hidden: list[torch.Tensor]) -> None:
        self.hidden = hidden


class RecurrentModel(SessionRecommender[ConfigT, GRUState]):
    """Base of the models trained by epochs (GRU4Rec and the feature-rich architectures)."""

    trains_by_epochs = True

    def __init__(self, config: ConfigT | None = None, **settings: Any) -> None:
        super().__init__(config, **settings)
        self.network: Any = None
        self.device = torch.device("cpu")
        self.history_: list = []  # per-epoch training reports

    def to(self, device: str | torch.device) -> RecurrentModel:
        """Move the model (for scoring) to a device; returns self."""
        self.device = torch.device(device)
        if self.network is not None:
            self.network.to(self.device)
        return self

    def _train(
        self,
        network,
        events,
        item_index,
        *,
        device,
        progress: bool,
        valid: Callable[[SessionRecommender], dict[str, float]] | None = None,
        patience: int = 0,
        valid_metric: str = "recall@20",
        epoch_callback=None,
        compile: bool | None = None,
        threads: int | None = None,
        checkpoint: Checkpointing | None = None,
        **schedule,
    ) -> None:
        """Initialise ``network`` from the config's seed, put it on ``device`` and train it.

        ``valid(model) -> metrics`` (e.g. ``prnn.evaluation.validation(events)``) runs after
        each epoch; ``compile``: see ``prnn.training.train_session_parallel``; ``threads``:
        intra-op threads (None: ``PRNN_THREADS``, the user's ``OMP_NUM_THREADS`` or the thread
        policy of ``prnn.threads``); ``checkpoint``: a ``prnn.training.Checkpointing`` (save the
        training state every epoch, resume from it);
        ``schedule``: the p-RNN's ``phase``, ``n_phases`` and ``n_epochs``.
        """
        if valid is not None and not callable(valid):
            raise ConfigError(
                "valid must be a function of the model returning metrics, such as "
                "prnn.evaluation.validation(events); got "
                f"{type(valid).__name__}"
            )
        if valid_metric not in VALID_METRICS:
            raise ConfigError(
                f"valid_metric must be one of {', '.join(VALID_METRICS)}; got {valid_metric!r}"
            )
        self.device = torch.device(device)
        generator = torch.Generator().manual_seed(self.config.seed)
        network.reset_parameters(generator)
        self.network = network.to(self.device)
        if checkpoint is not None:
            if not isinstance(checkpoint, Checkpointing):
                raise ConfigError(
                    "checkpoint must be a prnn.training.Checkpointing; got "
                    f"{type(checkpoint).__name__}"
                )
            checkpoint = dataclasses.replace(
                checkpoint,
                identity={
                    "model": self.name,
                    "settings": config_to_dict(self.config),
                    "data": events_fingerprint(
                        events.session_offsets, item_index, session_start_order(events)
                    ),
                    "tensors": {n: list(t.shape) for n, t in network.state_dict().items()},
                },
            )
        choice = resolve_threads(
            threads,
            "train",
            work_per_step=network.work_per_step(self.config.batch_size, self.config.n_sample),
            source="threads=",
        )
        log.info("training with %s", choice.describe())
        with using_threads(choice):
            self.history_ = train_session_parallel(
                network,
                self.config,
                events,
                item_index,
                self.fitted_vocabulary.counts,
                generator=generator,
                device=self.device,
                progress=progress,
                validate=None if valid is None else lambda: valid(self),
                patience=patience,
                valid_metric=valid_metric,
                epoch_callback=epoch_callback,
                compile=compile,
                checkpoint=checkpoint,
                **schedule,
            )

    def _fitted_network(self):
        self.fitted_vocabulary  # noqa: B018 - raises NotFittedError
        assert self.network is not None
        return self.network

    def _index(self, values: np.ndarray | None) -> torch.Tensor | None:
        if values is None:
            return None
        return torch.as_tensor(np.asarray(values, dtype=np.int64), device=self.device)

    def new_state(self, n_lanes: int) -> GRUState:
        return GRUState(self._fitted_network().initial_hidden(n_lanes))

    def advance(self, state: GRUState, lanes: np.ndarray, items: np.ndarray) -> None:
        network = self._fitted_network()
        lanes_t = self._index(lanes)
        hidden = [h.index_select(0, lanes_t) for h in state.hidden]
        for layer_state, new in zip(state.hidden, network.step(self._index(items), hidden)):
            layer_state.index_copy_(0, lanes_t, new)

    def reset(self, state: GRUState, lanes: np.ndarray) -> None:
        lanes_t = self._index(lanes)
        for layer_state in state.hidden:
            layer_state.index_fill_(0, lanes_t, 0.0)

    def add_lanes(self, state: GRUState, n_lanes: int) -> None:
        state.hidden = [torch.cat([h, h.new_zeros(n_lanes, h.shape[1])]) for h in state.hidden]

    def score(
        self, state: GRUState, lanes: np.ndarray, candidates: np.ndarray | None = None
    ) -> torch.Tensor:
        lanes_t = self._index(lanes)
        hidden = [h.index_select(0, lanes_t) for h in state.hidden]
        return self._fitted_network().scores(hidden, self._index(candidates))

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self._fitted_network().state_dict().items()}
