"""``prnn experiment paper`` (the p-RNN paper's comparison) and ``prnn experiment baselines``
(POP, item-kNN, V-SKNN on one log): a results table printed and written as a report."""

from __future__ import annotations

import argparse
import json
import logging
import time

from prnn.atomic import atomic_write_bytes
from prnn.bundled import example_events_path, example_toys_folder
from prnn.cli.common import (
    parse_cutoffs,
    parse_feature_specs,
    parse_where,
    read_events_from_args,
    read_feature_sets,
)
from prnn.cli.evaluate import protocol_line, result_table
from prnn.cli.paths import input_events, output_folder
from prnn.config import build_config, parse_overrides
from prnn.errors import ConfigError
from prnn.file_kinds import is_experiment_report
from prnn.model_registry import MODEL_NAMES

log = logging.getLogger("prnn")

#: the files the reports write, and the one that shows an earlier report wrote them
PAPER_REPORT_FILES = ("results.md", "results.csv", "results.json", "results.png")
BASELINES_REPORT_FILES = ("results.md", "results.json")
COLD_START_REPORT_FILES = ("results.md", "results.json")
REPORT_MARKER = ("results.json", is_experiment_report)


def command_experiment_paper(args: argparse.Namespace) -> int:
    out_dir = output_folder(
        args.out_dir,
        "--out-dir",
        outputs=PAPER_REPORT_FILES,
        marker=REPORT_MARKER,
        what="part of an earlier prnn experiment report",
        force=args.force,
    )
    parse_where(args)
    parse_feature_specs(args.features)
    parse_feature_specs(args.extra_features)
    if args.events is not None:
        input_events(args.events, "--events", "event file")
    from prnn.data import read_events, split_by_time, split_sessions_randomly
    from prnn.experiment import (
        PAPER_BASE_SETTINGS,
        paper_methods,
        run_paper_experiment,
        select_methods,
        write_report,
    )
    from prnn.models import MODELS

    bundled = args.events is None
    if bundled:
        folder = example_toys_folder()
        events = read_events(folder / "sequences.csv.gz", session_col="seq_id", time_col="none")
        feature_specs = args.features or [f"image={folder / 'clip_image.npz'}"]
        source = "the bundled Amazon Toys sample (4,000 user histories, 1,997 items)"
    else:
        events = read_events_from_args(args.events, args)
        feature_specs = args.features
        source = args.events
    features = read_feature_sets(feature_specs)
    if len(features) != 1:
        raise ConfigError(
            "experiment paper compares one feature set at a time: give one --features (and "
            "the others with --extra-features)"
        )
    feature_name = next(iter(features))
    extra = read_feature_sets(args.extra_features)
    clash = set(extra) & set(features)
    if clash:
        raise ConfigError(f"--extra-features repeats the --features set {', '.join(clash)}")
    features.update(extra)
    if args.test_days:
        train, test, report = split_by_time(events, args.test_days)
        split_note = f"time split: sessions ending in the last {args.test_days:g} day(s) are test"
    else:
        train, test, report = split_sessions_randomly(events, args.test_fraction, seed=args.seed)
        split_note = (
            f"no usable timestamps: {args.test_fraction:.0%} of the sequences drawn at random "
            f"(seed {args.seed}) are test; every next event of a test sequence is evaluated"
        )
    for line in report.lines():
        log.info(line)
    base = build_config(
        MODELS["prnn"].config_class,
        {**PAPER_BASE_SETTINGS, "n_epochs": args.epochs, **parse_overrides(args.set)},
        "--set",
        "the neural models",
    )
    base_settings = {k: getattr(base, k) for k in base.__dataclass_fields__}
    for key in ("layers", "feature_layers", "training"):
        base_settings.pop(key)
    methods = select_methods(paper_methods(args.hidden, feature_name, tuple(extra)), args.only)
    rows = run_paper_experiment(
        train,
        test,
        features,
        methods=methods,
        hidden=args.hidden,
        base_settings=base_settings,
        trials=args.trials,
        tune_epochs=args.tune_epochs,
        seed=args.seed,
        progress=not args.quiet,
    )
    title = f"p-RNN paper comparison: {' + '.join(features)} features, {source}"
    notes = [
        split_note,
        f"train: {report.train_events} events in {report.train_sessions} sessions; test: "
        f"{report.test_events} events in {report.test_sessions} sessions "
        f"({report.dropped_test_events_unseen_items} test events on unseen items removed)",
        "all items ranked, conservative ties, Recall@20 and MRR@20 over every evaluated event",
        f"{args.epochs} epochs per neural model, base settings "
        + ", ".join(
            f"{k}={v}" for k, v in {**PAPER_BASE_SETTINGS, **parse_overrides(args.set)}.items()
        )
        + "; tuning: "
        + (
            f"{args.trials} settings per neural method, {args.tune_epochs} epochs each, chosen "
            "by MRR@20 on 10% of the training sequences"
            if args.trials
            else "none (defaults)"
        ),
        f"command: prnn {' '.join(args.argv)}",
    ]
    write_report(out_dir, rows, hidden=args.hidden, title=title, notes=notes)
    print((out_dir / "results.md").read_text())
    print(f"wrote {out_dir}/results.md, results.csv, results.json and results.png")
    return 0


def command_experiment_baselines(args: argparse.Namespace) -> int:
    out_dir = None
    if args.out_dir:
        out_dir = output_folder(
            args.out_dir,
            "--out-dir",
            outputs=BASELINES_REPORT_FILES,
            marker=REPORT_MARKER,
            what="part of an earlier prnn experiment report",
            force=args.force,
        )
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    for name in names:
        if name not in MODEL_NAMES:
            raise ConfigError(
                f"--models: unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}"
            )
    if not names:
        raise ConfigError(f"--models expects model names, e.g. pop,item-knn; got {args.models!r}")
    cutoffs = parse_cutoffs(args.cutoffs)
    parse_where(args)
    if args.events is not None:
        input_events(args.events, "--events", "event file")
    from prnn.data import split_by_time
    from prnn.evaluation import evaluate
    from prnn.models import MODELS

    path = args.events or str(example_events_path())
    events = read_events_from_args(path, args)
    train, test, report = split_by_time(events, args.test_days)
    for line in report.lines():
        log.info(line)
    rows = []
    timings: dict[str, float] = {}
    for name in names:
        started = time.perf_counter()
        model = MODELS[name]().fit(train)
        timings[name] = time.perf_counter() - started
        result = evaluate(model, test, cutoffs=cutoffs, progress=not args.quiet)
        rows.append((name, result))
    table = result_table(rows, cutoffs)
    print(f"Baselines on {path}: last {args.test_days:g} day(s) as test")
    print(table)
    print(protocol_line(rows[0][1]))
    if out_dir is not None:
        results = {
            name: {**result.to_dict(), "fit_seconds": round(timings[name], 3)}
            for name, result in rows
        }
        atomic_write_bytes(out_dir / "results.json", json.dumps(results, indent=2).encode())
        atomic_write_bytes(out_dir / "results.md", (table + "\n").encode())
        print(f"wrote {out_dir / 'results.md'} and {out_dir / 'results.json'}")
    return 0


def command_experiment_cold_start(args: argparse.Namespace) -> int:
    out_dir = output_folder(
        args.out_dir,
        "--out-dir",
        outputs=COLD_START_REPORT_FILES,
        marker=REPORT_MARKER,
        what="part of an earlier prnn experiment report",
        force=args.force,
    )
    parse_where(args)
    parse_feature_specs(args.features)
    fractions = {"--item-fraction": args.item_fraction, "--test-fraction": args.test_fraction}
    for flag, value in fractions.items():
        if not 0 < value < 1:
            raise ConfigError(f"{flag} must be between 0 and 1; got {value}")
    if args.events is not None:
        input_events(args.events, "--events", "event file")
    from prnn.cold_start import run_cold_start_experiment, write_cold_start_report
    from prnn.data import read_events, split_sessions_randomly
    from prnn.experiment import PAPER_BASE_SETTINGS

    if args.events is None:
        folder = example_toys_folder()
        events = read_events(folder / "sequences.csv.gz", session_col="seq_id", time_col="none")
        feature_specs = args.features or [f"image={folder / 'clip_image.npz'}"]
        source = "the bundled Amazon Toys sample (4,000 user histories, 1,997 items)"
    else:
        events = read_events_from_args(args.events, args)
        feature_specs = args.features
        source = args.events
    features = read_feature_sets(feature_specs)
    if not features:
        raise ConfigError("experiment cold-start needs item features: --features NAME=PATH")
    train, test, report = split_sessions_randomly(events, args.test_fraction, seed=args.seed)
    base = {**PAPER_BASE_SETTINGS, "n_epochs": args.epochs, **parse_overrides(args.set)}
    rows, held = run_cold_start_experiment(
        train,
        test,
        features,
        base_settings=base,
        item_fraction=args.item_fraction,
        seed=args.seed,
        progress=not args.quiet,
    )
    n_catalogue = len(set(train.item_ids.tolist()) | set(test.item_ids.tolist()))
    notes = [
        f"{args.test_fraction:.0%} of the sequences drawn at random (seed {args.seed}) are test; "
        f"{len(held)} items ({args.item_fraction:.0%} of the training items, seed {args.seed}) "
        "are held out: their events are removed from the training sequences",
        "cold: test events whose next item is held out; warm: those whose next item is in "
        "the (reduced) training sequences. Every model ranks "
        "all the items it knows (the p-RNNs, after add_items, the held-out ones too), "
        "conservative ties",
        f"shared settings: {', '.join(f'{k}={v}' for k, v in base.items())}; the p-RNNs at "
        "their defaults otherwise (residual training, 100 + 100 units); output=features "
        "reads the ID through a separate embedding",
        f"data: {source}, features: {', '.join(features)}",
        f"command: prnn {' '.join(args.argv)}",
    ]
    markdown = write_cold_start_report(
        out_dir,
        rows,
        n_catalogue=n_catalogue,
        title=f"Cold-start items: {', '.join(features)} features, {source}",
        notes=notes,
    )
    print(markdown)
    print(f"wrote {out_dir / 'results.md'} and {out_dir / 'results.json'}")
    return 0
