"""``prnn train`` (a model from a click log, saved as one file) and ``prnn models`` (the models
and their settings)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import textwrap
import time

from prnn.cli.common import (
    check_at_least,
    check_device,
    parse_feature_specs,
    parse_where,
    read_events_from_args,
    read_feature_sets,
)
from prnn.cli.paths import input_events, input_file, output_file
from prnn.config import (
    build_config,
    changed_settings,
    format_setting,
    parse_overrides,
    read_config_file,
    read_preset,
    setting_docs,
)
from prnn.errors import ConfigError
from prnn.file_kinds import checkpoint_path, is_prnn_model, is_training_checkpoint, model_kind
from prnn.model_registry import MODEL_ENTRIES, MODEL_NAMES, model_class

log = logging.getLogger("prnn")


def build_model(args: argparse.Namespace, base_settings: dict | None = None):
    """The model named by --model, configured by ``base_settings`` (an --init model's), then
    --preset, then --config, then --set."""
    cls = model_class(args.model)
    settings: dict = dict(base_settings or {})
    sources = ["--init"] if base_settings else []
    if args.preset:
        settings.update(read_preset(args.preset))
        sources.append(f"preset {args.preset}")
    if args.config:
        settings.update(read_config_file(args.config))
        sources.append(args.config)
    if args.set:
        settings.update(parse_overrides(args.set))
        sources.append("--set")
    config = build_config(
        cls.config_class, settings, " + ".join(sources) or "defaults", f"model {args.model}"
    )
    return cls(config)


def settings_line(model, verbose: bool = False) -> str:
    """``model NAME: key=value, ...``: the settings that differ from the defaults (every
    setting with ``verbose``)."""
    if verbose:
        shown = {f.name: getattr(model.config, f.name) for f in dataclasses.fields(model.config)}
        tail = ""
    else:
        shown = changed_settings(model.config)
        tail = " (the rest at their defaults; -v lists all)"
    if not shown:
        return f"model {model.name}: default settings"
    listing = ", ".join(f"{key}={format_setting(value)}" for key, value in shown.items())
    return f"model {model.name}: {listing}{tail}"


def check_training_flags(args: argparse.Namespace) -> None:
    """The training flags apply to ``--model`` and have valid values; their input files exist.
    Imports no model: the registry says what each model takes."""
    entry = MODEL_ENTRIES[args.model]
    if entry.uses_features:
        parse_feature_specs(args.features)
    elif args.features:
        raise ConfigError(
            f"--features only apply to models that read item features; {args.model} does not"
        )
    asked = [
        flag
        for flag, given in (
            ("--valid", args.valid is not None),
            ("--patience", args.patience is not None),
            ("--device", args.device is not None),
            ("--compile" if args.compile else "--no-compile", args.compile is not None),
            ("--resume", args.resume),
            ("--init", args.init is not None),
            ("--updatable", args.updatable),
            ("--checkpoint-minutes", args.checkpoint_minutes is not None),
            ("--distributed", args.distributed),
            ("--mixed-precision", args.mixed_precision),
        )
        if given
    ]
    if asked and not entry.trains_by_epochs:
        raise ConfigError(
            f"{', '.join(asked)} only apply to models trained by epochs; {args.model} is not"
        )
    check_at_least(args.patience, "--patience", 0)
    if args.distributed and (args.resume or args.checkpoint_minutes is not None):
        raise ConfigError(
            "--distributed writes no checkpoints: --resume and --checkpoint-minutes do not apply"
        )
    if args.checkpoint_minutes is not None and not args.checkpoint_minutes > 0:
        raise ConfigError(f"--checkpoint-minutes must be > 0; got {args.checkpoint_minutes}")
    if args.valid is not None:
        input_events(args.valid, "--valid", "event file")


def training_options(args: argparse.Namespace, model) -> dict:
    """The fit options of the flags: --features for models that read item features; --valid,
    --patience, --device and --compile / --no-compile for models trained by epochs."""
    check_training_flags(args)
    options: dict = {}
    if model.uses_features:
        options["features"] = read_feature_sets(args.features)
    if not model.trains_by_epochs:
        return options
    options.update(
        device=args.device or "cpu", patience=args.patience or 0, valid_metric=args.valid_metric
    )
    if args.mixed_precision:
        options["mixed_precision"] = True
    if args.compile is not None:  # otherwise the library's default: compiled where it pays
        options["compile"] = args.compile
    if args.valid:
        from prnn.evaluation import validation

        options["valid"] = validation(read_events_from_args(args.valid, args, "--valid"))
    return options


def command_train(args: argparse.Namespace) -> int:
    # everything that can be checked without reading data or building the model, first
    out = output_file(
        args.out, "--out", previous=is_prnn_model, what="a prnn model", force=args.force
    )
    checkpoint_file = output_file(
        checkpoint_path(out),
        "--out",
        previous=is_training_checkpoint,
        what="a prnn training checkpoint",
        force=args.force,
    )
    parse_where(args)
    input_events(args.train, "", "event file")
    if args.init is not None:
        input_file(args.init, "--init", "model file")
        if args.model is None:
            args.model = model_kind(args.init)
            if args.model is None:
                raise ConfigError(f"--init {args.init}: not a prnn model file")
    if args.model is None:
        raise ConfigError("--model is required (or --init MODEL to continue a trained one)")
    check_training_flags(args)
    init = None
    if args.init is not None:
        from prnn.config import config_to_dict
        from prnn.models import SessionRecommender

        init = SessionRecommender.load(args.init)
        if init.name != args.model:
            raise ConfigError(
                f"--init {args.init} holds a {init.name} model; --model says {args.model}"
            )
    model = build_model(args, None if init is None else config_to_dict(init.config))
    check_device(args.device)
    distributed = None
    if args.distributed:
        from prnn.training import DistributedTraining

        distributed, args.device = DistributedTraining.from_environment(args.device)
        if not distributed.is_main:  # one log and one progress bar: process 0's
            logging.getLogger().setLevel(logging.ERROR)
            args.quiet = True
    log.info(settings_line(model, args.verbose))
    events = read_events_from_args(args.train, args)
    options = training_options(args, model)
    checkpoint = None
    if distributed is not None:
        options["distributed"] = distributed
        log.info(
            "distributed training: %d processes, each on one session in %d",
            distributed.world_size,
            distributed.world_size,
        )
    elif model.trains_by_epochs:
        from prnn.training import Checkpointing

        checkpoint = Checkpointing(
            checkpoint_file, every_minutes=args.checkpoint_minutes, resume=args.resume
        )
        options["checkpoint"] = checkpoint
        if checkpoint_file.exists() and not args.resume:
            log.warning(
                "%s: the checkpoint of an interrupted training; training from the start "
                "replaces it (add --resume to continue it instead)",
                checkpoint_file,
            )
    if init is not None:
        options["init"] = init
    if args.updatable:
        options["keep_optimizer_state"] = True
    started = time.perf_counter()
    try:
        model.fit(events, progress=not args.quiet, **options)
    finally:
        if distributed is not None:
            import torch.distributed

            torch.distributed.destroy_process_group()
    seconds = time.perf_counter() - started
    if distributed is not None and not distributed.is_main:
        return 0  # the same model as process 0's: it writes it
    model.save(out, optimizer_state=args.updatable)
    if checkpoint is not None:
        checkpoint_file.unlink(missing_ok=True)  # the model is written: nothing to resume
    print(f"trained {model.name} on {events.n_events} events in {seconds:.1f} s; saved {out}")
    return 0


def command_add_items(args: argparse.Namespace) -> int:
    out = output_file(
        args.out, "--out", previous=is_prnn_model, what="a prnn model", force=args.force
    )
    input_file(args.model, "", "model file")
    parse_feature_specs(args.features)
    check_at_least(args.neighbours, "--neighbours", 0)
    from prnn.models import SessionRecommender

    model = SessionRecommender.load(args.model)
    if not hasattr(model, "add_items"):
        raise ConfigError(
            f"{args.model} holds a {model.name} model; items can be added to feature-only, "
            "concat and prnn models trained with --set output=hybrid (or features)"
        )
    features = read_feature_sets(args.features)
    before = model.n_items
    added = model.add_items(features, neighbours=args.neighbours)
    model.save(out, optimizer_state=model.optimizer_state_ is not None)
    offered = len({i for f in features.values() for i in f.item_ids.tolist()})
    print(
        f"added {len(added)} items ({offered - len(added)} of the {offered} in the feature "
        f"files were known): {before} -> {model.n_items} items; saved {out}"
    )
    return 0


def model_settings_table(name: str) -> str:
    """Every setting of model ``name``: its type, default and meaning."""
    config_class = model_class(name).config_class
    docs = setting_docs(config_class)
    defaults = config_class()
    fields = dataclasses.fields(config_class)
    if not fields:
        return f"{name}: {MODEL_ENTRIES[name].summary}\n\nno settings"
    lines = [
        f"{name}: {MODEL_ENTRIES[name].summary}",
        "",
        f"settings (prnn train --model {name} --set KEY=VALUE), with their defaults:",
    ]
    for field in fields:
        lines.append(f"  {field.name} = {format_setting(getattr(defaults, field.name))}")
        meaning = docs.get(field.name, "").replace("``", "")
        if meaning:
            lines += textwrap.wrap(
                meaning, width=92, initial_indent=" " * 6, subsequent_indent=" " * 6
            )
    return "\n".join(lines)


def command_models(args: argparse.Namespace) -> int:
    if args.model is None:
        width = max(map(len, MODEL_NAMES))
        for name, entry in MODEL_ENTRIES.items():
            print(f"{name:<{width}}  {entry.summary}")
        print("\nprnn models MODEL lists a model's settings.")
        return 0
    print(model_settings_table(args.model))
    return 0
