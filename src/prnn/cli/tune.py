"""``prnn tune``: hyper-parameter search with Optuna (``prnn.tuning``); the best settings are
written as a TOML file that ``prnn train --config`` reads."""

from __future__ import annotations

import argparse
import logging
import time

from prnn.atomic import atomic_write_bytes
from prnn.cli.common import (
    check_at_least,
    parse_feature_specs,
    parse_where,
    read_events_from_args,
    read_feature_sets,
)
from prnn.cli.paths import input_events, output_file
from prnn.errors import ConfigError
from prnn.file_kinds import TUNED_CONFIG_MARKER, is_sqlite_database, is_tuned_config
from prnn.model_registry import MODEL_ENTRIES

log = logging.getLogger("prnn")


def command_tune(args: argparse.Namespace) -> int:
    out = output_file(
        args.out,
        "--out",
        previous=is_tuned_config,
        what="a settings file written by prnn tune",
        force=args.force,
    )
    study_path = output_file(
        args.study or f"{args.out}.study.sqlite",
        "--study",
        previous=is_sqlite_database,
        what="a study database (SQLite)",
        force=args.force,
    )
    check_at_least(args.trials, "--trials")
    parse_where(args)
    input_events(args.train, "", "training event file")
    input_events(args.valid, "", "validation event file")
    entry = MODEL_ENTRIES[args.model]
    if not entry.trains_by_epochs:
        raise ConfigError(f"prnn tune searches the recurrent models' settings; {args.model} is not")
    if entry.uses_features:
        parse_feature_specs(args.features)
        if not args.features:
            raise ConfigError(f"{args.model} needs item features: --features NAME=PATH")
    elif args.features:
        raise ConfigError("--features only apply to models that read item features")
    import tomli_w

    from prnn.cli.train import build_model
    from prnn.config import config_to_dict
    from prnn.tuning import SPACES, default_space, run_study

    base_model = build_model(args)
    base = config_to_dict(base_model.config)
    space = args.space or default_space(args.model, base_model.config.loss)
    if space not in SPACES:
        raise ConfigError(f"--space must be one of {', '.join(SPACES)}; got {space!r}")
    train = read_events_from_args(args.train, args)
    valid = read_events_from_args(args.valid, args, "--valid")
    features = read_feature_sets(args.features) if entry.uses_features else None
    started = time.perf_counter()

    def report(number: int, settings: dict, value: float) -> None:
        log.info("trial %d: %s %.4f (%.0f s so far)", number, args.metric, value,
                 time.perf_counter() - started)  # fmt: skip

    study = run_study(
        args.model,
        train,
        valid,
        base_settings=base,
        space=space,
        trials=args.trials,
        storage=study_path,
        study_name=f"{args.model}-{space}",
        metric=args.metric,
        features=features,
        seed=args.seed,
        progress=False,
        on_trial=report,
    )
    if not any(t.value is not None for t in study.trials):
        raise ConfigError(f"no trial of {study_path} finished (each diverged?); nothing to write")
    best = study.best_trial
    settings = best.user_attrs["settings"]
    finished = [t for t in study.trials if t.value is not None]
    header = (
        f"{TUNED_CONFIG_MARKER} {args.model}, space {space}, best of {len(finished)} trials: "
        f"{args.metric} {best.value:.4f} on {args.valid} (trial {best.number})\n"
        f"# prnn train {args.train} --model {args.model} --config {out}\n"
    )
    atomic_write_bytes(out, (header + tomli_w.dumps(settings)).encode())
    ranked = sorted(finished, key=lambda t: t.value, reverse=True)[:5]
    print(f"best {args.metric} {best.value:.4f} (trial {best.number} of {len(finished)}); top 5:")
    print(f"| trial | {args.metric} | " + " | ".join(d.name for d in SPACES[space]) + " |")
    print("|---|---|" + "---|" * len(SPACES[space]))
    for trial in ranked:
        values = " | ".join(_plain(trial.params.get(d.name)) for d in SPACES[space])
        print(f"| {trial.number} | {trial.value:.4f} | {values} |")
    print(f"wrote {out} (prnn train ... --config {out}); study: {study_path}")
    return 0


def _plain(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "–" if value is None else str(value)
