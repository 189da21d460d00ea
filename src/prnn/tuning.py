"""Hyper-parameter search with Optuna over published and p-RNN search spaces.

The GRU4Rec spaces are the reference implementation's "standard" parameter spaces
(hidasib/GRU4Rec_PyTorch_Official, ``paramspaces/gru4rec_{xe,bprmax}_standard_parspace.json``):
the same ranges and steps, transcribed. The p-RNN space adds what only the p-RNN has: the
feature subnets' size, the weight of the feature subnets' hidden states in the output, the
training method and residual training's share of epochs.

A study lives in a SQLite file, so the same command run again continues it (up to the number of
trials asked for in all), and a killed search loses only the trial in progress.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prnn.config import build_config
from prnn.data import EventLog
from prnn.errors import ConfigError, TrainingError
from prnn.evaluation import evaluate
from prnn.features import FeatureMatrix
from prnn.models import MODELS
from prnn.models.recurrent import VALID_METRICS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dimension:
    """One searched setting: ints and floats on a grid from ``low`` to ``high`` by ``step``, or
    one of ``choices``."""

    name: str
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    choices: tuple = ()
    kind: str = "float"

    def suggest(self, trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step))
        return trial.suggest_float(self.name, self.low, self.high, step=self.step)


#: the reference's standard space for cross-entropy GRU4Rec (paramspaces/gru4rec_xe_...)
GRU4REC_XE = (
    Dimension("layers", 64, 512, 32, kind="int"),
    Dimension("batch_size", 32, 256, 16, kind="int"),
    Dimension("learning_rate", 0.01, 0.25, 0.005),
    Dimension("dropout_p_embed", 0.0, 0.5, 0.05),
    Dimension("dropout_p_hidden", 0.0, 0.7, 0.05),
    Dimension("momentum", 0.0, 0.9, 0.05),
    Dimension("sample_alpha", 0.0, 1.0, 0.1),
)
#: the reference's standard space for BPR-max GRU4Rec (paramspaces/gru4rec_bprmax_...)
GRU4REC_BPRMAX = (
    *GRU4REC_XE,
    Dimension("bpreg", 0.0, 2.0, 0.05),
    Dimension("elu_param", choices=(0.5, 1.0, 0.0), kind="categorical"),
)
#: the p-RNN's own settings, over the training settings that matter most for it
PRNN = (
    Dimension("learning_rate", 0.01, 0.25, 0.005),
    Dimension("dropout_p_hidden", 0.0, 0.7, 0.05),
    Dimension("momentum", 0.0, 0.9, 0.05),
    Dimension("feature_layers", 32, 512, 32, kind="int"),
    Dimension("feature_weight", 0.1, 2.0, 0.1),
    Dimension(
        "training",
        choices=("simultaneous", "residual", "alternating", "interleaving"),
        kind="categorical",
    ),
    Dimension("residual_share", 0.1, 0.5, 0.1),
)
SPACES: dict[str, tuple[Dimension, ...]] = {
    "gru4rec-xe": GRU4REC_XE,
    "gru4rec-bpr-max": GRU4REC_BPRMAX,
    "prnn": PRNN,
}


def default_space(model: str, loss: str) -> str:
    if MODELS[model].uses_features:
        return "prnn"
    return "gru4rec-bpr-max" if loss == "bpr-max" else "gru4rec-xe"


def trial_settings(values: dict[str, Any], model: str, n_feature_subnets: int) -> dict:
    """The model settings of a trial's drawn values (sizes as layer tuples, the feature weight
    as subnet weights)."""
    # grid values as written (0.35, not 0.35000000000000003)
    settings = {k: round(v, 6) if isinstance(v, float) else v for k, v in values.items()}
    if "layers" in settings:
        settings["layers"] = (int(settings["layers"]),)
    if "feature_layers" in settings:
        settings["feature_layers"] = (int(settings["feature_layers"]),)
    if "elu_param" in settings:
        settings["loss"] = "bpr-max"
    weight = settings.pop("feature_weight", None)
    if weight is not None and model == "prnn":
        settings["subnet_weights"] = (1.0, *[float(weight)] * n_feature_subnets)
    if model != "prnn":
        for only_prnn in ("training", "residual_share", "subnet_weights"):
            settings.pop(only_prnn, None)
    return settings


def run_study(
    model: str,
    train: EventLog,
    valid: EventLog,
    *,
    base_settings: dict,
    space: str,
    trials: int,
    storage: Path,
    study_name: str,
    metric: str = "mrr@20",
    features: dict[str, FeatureMatrix] | None = None,
    seed: int = 0,
    progress: bool = False,
    on_trial: Callable[[int, dict, float], None] | None = None,
):
    """Run (or continue) the study until it holds ``trials`` finished trials; returns it."""
    import optuna

    if space not in SPACES:
        raise ConfigError(f"unknown search space {space!r}; choose from {', '.join(SPACES)}")
    if metric not in VALID_METRICS:
        raise ConfigError(f"metric must be one of {', '.join(VALID_METRICS)}; got {metric!r}")
    model_class = MODELS[model]
    n_feature_subnets = len(features or {})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name,
        storage=f"sqlite:///{storage}",
        direction="maximize",
        load_if_exists=True,
    )
    # what the study measures: a continued study must measure the same
    identity = {
        "metric": metric,
        "settings": json.dumps(_jsonable(base_settings), sort_keys=True),
        "events": f"train {train.n_events} events, valid {valid.n_events} events",
        "features": ",".join(sorted(features or {})),
    }
    if study.trials:
        differs = [
            f"{key}: study {study.user_attrs.get(key)!r}, now {value!r}"
            for key, value in identity.items()
            if study.user_attrs.get(key) != value
        ]
        if differs:
            raise ConfigError(
                f"{storage} holds a study of another search ({'; '.join(differs)}); "
                "give another --study file"
            )
    for key, value in identity.items():
        study.set_user_attr(key, value)
    # seeded by the trials so far: a continued study draws new settings, not the first ones
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    fields = model_class.config_class.__dataclass_fields__

    def objective(trial) -> float:
        values = {d.name: d.suggest(trial) for d in SPACES[space]}
        settings = trial_settings(values, model, n_feature_subnets)
        settings = {k: v for k, v in {**base_settings, **settings}.items() if k in fields}
        config = build_config(model_class.config_class, settings, f"trial {trial.number}")
        fitted = model_class(config)
        options = {"features": features} if fitted.uses_features else {}
        try:
            fitted.fit(train, progress=progress, **options)
        except TrainingError as error:  # e.g. diverged at a high learning rate: a bad draw
            log.info("trial %d: %s", trial.number, error)
            raise optuna.TrialPruned(str(error)) from None
        result = evaluate(fitted, valid, cutoffs=(5, 10, 20)).metrics
        trial.set_user_attr("settings", _jsonable(settings))
        if on_trial is not None:
            on_trial(trial.number, settings, result[metric])
        return result[metric]

    if trials > done:
        study.optimize(objective, n_trials=trials - done)
    else:
        log.info("the study already holds %d finished trials (asked: %d)", done, trials)
    return study


def _jsonable(settings: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
