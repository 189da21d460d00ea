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
from prnn.training.distributed import DistributedTraining

log = logging.getLogger(__name__)

#: the metrics ``valid`` may be asked to improve
VALID_METRICS = tuple(
    f"{m}@{k}" for m in ("recall", "mrr", "coverage", "popularity") for k in (5, 10, 20)
)


class GRUState:
    """Hidden states of ``n`` lanes, one (n, H_l) tensor per layer (of every subnet)."""

    def __init__(self, hidden: list[torch.Tensor]) -> None:
        self.hidden = hidden


def _item_table_names(network) -> list[str]:
    """The state-dict names of ``network.item_tables()``, in that order."""
    names = {id(t): n for n, t in network.state_dict(keep_vars=True).items()}
    return [names[id(t)] for t in network.item_tables()]


def adapt_optimizer_state(
    state: dict[str, torch.Tensor],
    network,
    rows: torch.Tensor,
    n_items: int,
    *,
    momentum: bool,
    optimizer: str = "adagrad",
) -> dict[str, torch.Tensor] | None:
    """An optimiser state saved for an earlier catalogue, for ``network`` (same architecture):
    the buffers of the item-indexed tables moved to ``rows`` of ``n_items`` (new items start at
    zero, as a fresh optimiser's), momentum buffers added (zero) or dropped as ``momentum``
    says. None, with a warning, when the dense parameters differ (e.g. learned subnet weights
    switched on) or the state is another ``optimizer``'s: the optimiser then starts afresh."""
    dense = list(network.parameters())
    dense_kind = "dense_accumulator" if optimizer == "adagrad" else "dense_second_moment"
    if dense and f"{dense_kind}.0" not in state:
        log.warning(
            "the saved optimiser state is another optimiser's than %s: it starts afresh", optimizer
        )
        return None
    n_dense = sum(1 for name in state if name.startswith(f"{dense_kind}."))
    if n_dense != len(dense) or any(
        tuple(state[f"{dense_kind}.{i}"].shape) != tuple(p.shape) for i, p in enumerate(dense)
    ):
        log.warning("the saved optimiser state does not fit this network: it starts afresh")
        return None
    by_rows = [".bag_" not in name for name in _item_table_names(network)]
    adapted = {}
    for name, buffer in state.items():
        if "." not in name:  # a scalar of the optimiser's (Adam's step count)
            adapted[name] = buffer
            continue
        kind, index = name.rsplit(".", 1)
        if kind.endswith("momentum") and not momentum:
            continue
        if kind.startswith("table_") and by_rows[int(index)]:
            grown = buffer.new_zeros((n_items, *buffer.shape[1:]))
            grown[rows] = buffer.to(grown.device)
            buffer = grown
        adapted[name] = buffer
    if momentum and optimizer == "adagrad":  # saved without momentum, continued with it
        for name in [n for n in adapted if "_accumulator." in n]:
            twin = name.replace("_accumulator.", "_momentum.")
            adapted.setdefault(twin, torch.zeros_like(adapted[name]))
    return adapted


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
        init: RecurrentModel | None = None,
        keep_optimizer_state: bool = False,
        distributed: DistributedTraining | None = None,
        mixed_precision: bool = False,
        **schedule,
    ) -> None:
        """Initialise ``network`` from the config's seed, put it on ``device`` and train it.

        ``valid(model) -> metrics`` (e.g. ``prnn.evaluation.validation(events)``) runs after
        each epoch; ``compile``: see ``prnn.training.train_session_parallel``; ``threads``:
        intra-op threads (None: ``PRNN_THREADS``, the user's ``OMP_NUM_THREADS`` or the thread
        policy of ``prnn.threads``); ``checkpoint``: a ``prnn.training.Checkpointing`` (save the
        training state every epoch, resume from it); ``init``: a trained model of the same kind
        and shape to continue from (its weights; its optimiser state when it kept one; new
        items get fresh rows); ``keep_optimizer_state``: keep the optimiser's buffers in
        ``optimizer_state_`` (for ``save(..., optimizer_state=True)``); ``distributed``: this
        process's place in a data-parallel training (``prnn.training.distributed``; the process
        group set up, e.g. by ``DistributedTraining.from_environment()`` under torchrun);
        ``mixed_precision``: the output layer's training products in bfloat16 (for GPUs; see
        ``prnn.training.train_session_parallel``);
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
        optimizer_state = None
        if init is not None:
            optimizer_state = self._carry_over(init, network)
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
                    # a generator's state is device-specific: resume on the same kind
                    "device": self.device.type,
                },
            )
        choice = resolve_threads(
            threads,
            "train",
            work_per_step=network.work_per_step(
                self.config.batch_size,
                len(self.fitted_vocabulary)
                if getattr(self.config, "full_softmax", False)
                else self.config.n_sample,
            ),
            source="threads=",
        )
        log.info("training with %s", choice.describe())
        optimizer_out: dict | None = {} if keep_optimizer_state else None
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
                optimizer_state=optimizer_state,
                optimizer_out=optimizer_out,
                distributed=distributed,
                mixed_precision=mixed_precision,
                **schedule,
            )
        self.optimizer_state_ = optimizer_out or None

    def _carry_over(self, init: RecurrentModel, network) -> dict[str, torch.Tensor] | None:
        """Copy ``init``'s weights into ``network`` (rows of its items moved to their places in
        this model's vocabulary; new items keep their fresh rows); returns its optimiser state
        addressed the same way, or None when it kept none."""
        old = init._fitted_network()
        rows = torch.from_numpy(self.fitted_vocabulary.index(init.fitted_vocabulary.item_ids))
        old_state = old.state_dict(keep_vars=True)
        new_state = network.state_dict()
        item_tables = {id(t) for t in old.item_tables()}
        by_rows = {n for n, t in old_state.items() if id(t) in item_tables and ".bag_" not in n}
        differences = sorted(
            set(old_state) ^ set(new_state)
            | {
                n
                for n in set(old_state) & set(new_state)
                if not n.startswith("features.")
                and n not in by_rows
                and old_state[n].shape != new_state[n].shape
            }
        )
        if differences:
            raise ConfigError(
                f"init: the trained {init.name} model's network differs from this one's in "
                f"{', '.join(differences[:5])}; continue with the same architecture settings "
                "(layers, embedding, features)"
            )
        with torch.no_grad():
            for name, tensor in new_state.items():
                if name.startswith("features."):
                    continue  # this fit's feature rows, for the grown catalogue
                if name in by_rows:
                    tensor[rows] = old_state[name].detach()
                else:
                    tensor.copy_(old_state[name].detach())
        if init.optimizer_state_ is None:
            log.warning(
                "init: the trained model has no optimiser state (save it with "
                "optimizer_state=True, or train with --updatable): the optimiser starts afresh"
            )
            return None
        return adapt_optimizer_state(
            init.optimizer_state_,
            network,
            rows,
            len(self.fitted_vocabulary),
            momentum=self.config.momentum > 0,
            optimizer=self.config.optimizer,
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
