"""The one interface every recommender implements, and the session state of history-based models.

A recommender is fitted on an ``EventLog`` and then scores *sessions in progress*. The
evaluator, the CLI and (later) the server only ever do four things with it:

- ``new_state(n_lanes)``: open ``n_lanes`` empty sessions side by side;
- ``advance(state, lanes, items)``: each given lane's session gets one more click;
- ``reset(state, lanes)``: the given lanes start a fresh session;
- ``score(state, lanes, candidates)``: a (len(lanes), C) tensor of next-item scores.

Advancing one event at a time is what a live service needs (keep the state, add a click, score),
and what session-parallel evaluation needs (lanes that change session independently).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Generic, Self, TypeVar

import numpy as np
import torch

from prnn.config import build_config, config_to_dict
from prnn.data import EventLog, Vocabulary
from prnn.errors import ConfigError, ModelFormatError, NotFittedError
from prnn.persistence import read_model_file, write_model_file

#: names of the optimiser's buffers in a model file saved with ``optimizer_state=True``
OPTIMIZER_PREFIX = "optimizer."

ConfigT = TypeVar("ConfigT")
StateT = TypeVar("StateT")


class SessionRecommender(ABC, Generic[ConfigT, StateT]):
    """Base class of every prnn model.

    Subclasses set ``name`` and ``config_class`` and implement ``_fit``, ``new_state``,
    ``advance``, ``reset``, ``score``, ``_tensors`` and ``_restore``.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(self, config: ConfigT | None = None, **settings: Any) -> None:
        if config is not None and settings:
            raise TypeError("pass either a config object or keyword settings, not both")
        self.config: ConfigT = (
            config if config is not None else build_config(self.config_class, settings, self.name)
        )
        self.vocabulary: Vocabulary | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # ---- training ---------------------------------------------------------------------------

    #: True for models trained by epochs (they accept ``valid``, ``patience`` and ``device``).
    trains_by_epochs: ClassVar[bool] = False
    #: True for models that read item features (they accept ``features``).
    uses_features: ClassVar[bool] = False

    def fit(self, events: EventLog, *, progress: bool = False, **options: Any) -> Self:
        """Learn from training events; returns self.

        Models trained by epochs also take ``valid`` (a function of the model returning
        metrics, such as ``prnn.evaluation.validation(events)``, run after each epoch),
        ``patience`` (early stopping), ``valid_metric``, ``device``, ``epoch_callback`` and
        ``compile`` (True: run the training step through torch.compile; False: eagerly; None,
        the default: compiled where it pays); models that read item features take
        ``features`` ({name: FeatureMatrix}).
        """
        if events.n_events == 0:
            raise ValueError(f"{events.source}: cannot fit {self.name} on an empty event log")
        init = options.get("init")
        if init is None:
            self.vocabulary = Vocabulary.from_events(events)
        else:
            if not self.trains_by_epochs:
                raise ConfigError(
                    f"init (continuing a trained model) applies to models trained by epochs; "
                    f"{self.name} is not"
                )
            if type(init) is not type(self):
                raise ConfigError(
                    f"init must be a trained {self.name} model; got a {init.name} model"
                )
            self.vocabulary = init.fitted_vocabulary.merged_with(events)
        item_index = self.vocabulary.index(events.item_ids)
        self._fit(events, item_index, progress=progress, **options)
        return self

    @abstractmethod
    def _fit(self, events: EventLog, item_index: np.ndarray, *, progress: bool) -> None:
        """Fit on events whose items are already mapped to vocabulary indices (``item_index``)."""

    def to(self, device: str | torch.device) -> Self:
        """Move the model to a device for scoring (a no-op for models without tensors to move)."""
        return self

    @property
    def n_items(self) -> int:
        return len(self.fitted_vocabulary)

    @property
    def fitted_vocabulary(self) -> Vocabulary:
        if self.vocabulary is None:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted; call fit() or load a saved model"
            )
        return self.vocabulary

    # ---- scoring sessions in progress -------------------------------------------------------

    @abstractmethod
    def new_state(self, n_lanes: int) -> StateT:
        """State for ``n_lanes`` empty sessions."""

    @abstractmethod
    def advance(self, state: StateT, lanes: np.ndarray, items: np.ndarray) -> None:
        """Give each lane in ``lanes`` (int64, (B,)) one more event: item index ``items[b]``."""

    @abstractmethod
    def reset(self, state: StateT, lanes: np.ndarray) -> None:
        """Make the given lanes empty sessions again."""

    @abstractmethod
    def add_lanes(self, state: StateT, n_lanes: int) -> None:
        """Append ``n_lanes`` empty lanes to ``state``, in place (a pool of live sessions
        grows)."""

    @abstractmethod
    def score(
        self, state: StateT, lanes: np.ndarray, candidates: np.ndarray | None = None
    ) -> torch.Tensor:
        """Next-item scores, (len(lanes), C) float32; C = all items, or ``len(candidates)``."""

    def recommend(self, item_ids: list | np.ndarray, k: int = 20) -> list[tuple[Any, float]]:
        """Item-to-session recommendation: the top ``k`` (item id, score) after these clicks.

        Clicks on items the model does not know are dropped from the session.
        """
        vocabulary = self.fitted_vocabulary
        known = vocabulary.index(np.asarray(item_ids))
        known = known[known >= 0]
        state = self.new_state(1)
        lane = np.zeros(1, dtype=np.int64)
        for item in known:
            self.advance(state, lane, np.array([item], dtype=np.int64))
        scores = self.score(state, lane)[0]
        top = torch.topk(scores, min(k, len(scores)))
        ids = vocabulary.ids(top.indices.cpu().numpy())
        return [(item, float(s)) for item, s in zip(ids.tolist(), top.values.tolist())]

    # ---- persistence ------------------------------------------------------------------------

    @abstractmethod
    def _tensors(self) -> dict[str, torch.Tensor]:
        """Everything learned, as named tensors (the vocabulary is saved separately)."""

    @abstractmethod
    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        """Inverse of ``_tensors``."""

    #: the optimiser's buffers at the end of training (kept with ``keep_optimizer_state``), so
    #: that a later ``fit(..., init=model)`` continues it; None: not kept
    optimizer_state_: dict[str, torch.Tensor] | None = None

    def save(self, path: str | os.PathLike, *, optimizer_state: bool = False) -> None:
        """Write the fitted model to one file, atomically; with ``optimizer_state``, also the
        optimiser's buffers (about twice the item tables' size), for continued training."""
        tensors = self._tensors()
        if optimizer_state:
            if self.optimizer_state_ is None:
                raise ConfigError(
                    f"{self.name} has no optimiser state to save: fit it with "
                    "keep_optimizer_state=True"
                )
            tensors.update((OPTIMIZER_PREFIX + k, v) for k, v in self.optimizer_state_.items())
        write_model_file(
            path, self.name, config_to_dict(self.config), self.fitted_vocabulary, tensors
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> SessionRecommender:
        """Load a model saved by ``save``; on a subclass, the file must hold that model."""
        from prnn.models import MODELS

        name, config, vocabulary, tensors = read_model_file(path)
        if name not in MODELS:
            raise ModelFormatError(f"{path}: unknown model kind {name!r}")
        model_class = MODELS[name]
        if cls is not SessionRecommender and not issubclass(model_class, cls):
            raise ModelFormatError(f"{path}: holds a {name!r} model, not {cls.name!r}")
        model = model_class(build_config(model_class.config_class, config, f"{path} config"))
        model.vocabulary = vocabulary
        optimizer = {
            name[len(OPTIMIZER_PREFIX) :]: tensors.pop(name)
            for name in list(tensors)
            if name.startswith(OPTIMIZER_PREFIX)
        }
        model._restore(tensors)
        model.optimizer_state_ = optimizer or None
        return model


class SessionHistories:
    """Per-lane lists of the item indices seen so far: the state of the non-neural models."""

    def __init__(self, n_lanes: int) -> None:
        self.items: list[list[int]] = [[] for _ in range(n_lanes)]

    def append(self, lanes: np.ndarray, items: np.ndarray) -> None:
        for lane, item in zip(lanes.tolist(), items.tolist()):
            self.items[lane].append(item)

    def clear(self, lanes: np.ndarray) -> None:
        for lane in lanes.tolist():
            self.items[lane] = []


class HistoryModel(SessionRecommender[ConfigT, SessionHistories]):
    """A model whose session state is just the list of clicked items."""

    def new_state(self, n_lanes: int) -> SessionHistories:
        self.fitted_vocabulary  # noqa: B018 - raises NotFittedError before any scoring
        return SessionHistories(n_lanes)

    def advance(self, state: SessionHistories, lanes: np.ndarray, items: np.ndarray) -> None:
        state.append(np.asarray(lanes), np.asarray(items))

    def reset(self, state: SessionHistories, lanes: np.ndarray) -> None:
        state.clear(np.asarray(lanes))

    def add_lanes(self, state: SessionHistories, n_lanes: int) -> None:
        state.items.extend([] for _ in range(n_lanes))


def select_candidates(scores: torch.Tensor, candidates: np.ndarray | None) -> torch.Tensor:
    """Keep only the candidate columns of a (B, I) score matrix."""
    if candidates is None:
        return scores
    return scores[:, torch.from_numpy(np.asarray(candidates, dtype=np.int64))]
