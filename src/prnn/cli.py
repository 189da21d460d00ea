"""The ``prnn`` command line: thin subcommands over the library.

Every command parses its flags, calls the library and prints. Results go to stdout; logs and
progress bars go to stderr, so ``prnn evaluate ... --json -`` prints nothing but JSON on stdout.
Errors prnn raises on purpose (bad files, bad settings) become one line on stderr and exit code 2;
``--debug`` shows the traceback instead. Flags are checked before any work starts (a mistake in the
last flag costs no reading or training), and so is that every output can be written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch

from prnn import __version__
from prnn.atomic import atomic_write_bytes
from prnn.config import build_config, parse_overrides, preset_names, read_config_file, read_preset
from prnn.data import EventLog, read_events, split_by_time, write_events
from prnn.errors import ConfigError, PrnnError
from prnn.evaluation import (
    DEFAULT_CANDIDATES,
    DEFAULT_CUTOFFS,
    DEFAULT_TIES,
    TIE_SHARE_ABOVE,
    EvaluationResult,
    evaluate,
    parse_candidates,
    validation,
)
from prnn.models import MODELS, SessionRecommender

log = logging.getLogger("prnn")

EXAMPLE_EVENTS = "rsc15_sample.csv.gz"


def example_events_path() -> Path:
    """The click log bundled with the package (a sample of YooChoose RSC15 sessions)."""
    return Path(str(resources.files("prnn") / "example_data" / EXAMPLE_EVENTS))


# --------------------------------------------------------------------------------------------
# Shared flags
# --------------------------------------------------------------------------------------------


def _add_event_columns(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("event file columns")
    group.add_argument(
        "--session-col", help="session id column (default: session_id, or GRU4Rec's SessionId)"
    )
    group.add_argument("--item-col", help="item id column (default: item_id, or ItemId)")
    group.add_argument(
        "--time-col",
        help="time column in seconds (default: timestamp, or Time); 'none' = the log has no "
        "time and file order is time order",
    )
    group.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="keep only rows where COLUMN equals VALUE (repeatable), e.g. --where split=train",
    )


def _parse_where(args: argparse.Namespace) -> dict[str, str]:
    return parse_overrides(args.where, "--where", "COLUMN=VALUE")


def _read_events_from_args(path: str, args: argparse.Namespace) -> EventLog:
    where = _parse_where(args)
    events = read_events(
        path,
        session_col=args.session_col,
        item_col=args.item_col,
        time_col=args.time_col,
        where=where,
    )
    log.info(
        "read %s: %d events, %d sessions, %d items",
        path,
        events.n_events,
        events.n_sessions,
        events.n_items,
    )
    return events


def _check_at_least(value: int | None, flag: str, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise ConfigError(f"{flag} must be >= {minimum}; got {value}")


def _check_device(text: str | None, flag: str = "--device") -> None:
    """An unknown or absent torch device fails here, not deep inside training or scoring."""
    if text is None:
        return
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ConfigError(
            f"{flag}: unknown torch device {text!r}; expected e.g. cpu, cuda, cuda:1 or mps"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{flag} {text}: this machine (or this torch build) has no CUDA")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{flag} {text}: there are only {count} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{flag} {text}: MPS is not available on this machine")


def _check_writable_folder(folder: Path, flag: str, target: Path) -> None:
    """Create ``folder`` if missing and check that a file can be written in it."""
    existing = next(parent for parent in (folder, *folder.parents) if parent.exists())
    if not existing.is_dir():
        raise ConfigError(f"{flag} {target}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{flag} {target}: cannot write in folder {folder} ({exc.strerror or exc})"
        ) from None


def _writable_file(path: str | Path, flag: str) -> Path:
    """``path`` as a Path, after creating its missing folders and checking it can be written."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder; expected a file name")
    _check_writable_folder(path.parent, flag, path)
    return path


def _writable_folder(path: str | Path, flag: str) -> Path:
    """Folder ``path``, created if missing, after checking files can be written in it."""
    path = Path(path)
    _check_writable_folder(path, flag, path)
    return path


def _parse_cutoffs(text: str) -> tuple[int, ...]:
    try:
        cutoffs = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            f"--cutoffs expects comma-separated integers like 1,5,10,20; got {text!r}"
        ) from None
    if not cutoffs or min(cutoffs) < 1:
        raise ConfigError(f"--cutoffs expects positive integers; got {text!r}")
    return cutoffs


def _build_model(args: argparse.Namespace) -> SessionRecommender:
    """The model named by --model, configured by --preset, then --config, then --set."""
    model_class = MODELS[args.model]
    settings: dict = {}
    sources = []
    if args.preset:
        settings.update(read_preset(args.preset))
        sources.append(f"preset {args.preset}")
    if args.config:
        settings.update(read_config_file(args.config))
        sources.append(args.config)
    if args.set:
        settings.update(parse_overrides(args.set))
        sources.append("--set")
    config = build_config(model_class.config_class, settings, " + ".join(sources) or "defaults")
    return model_class(config)


def _parse_feature_specs(specs: list[str]) -> dict[str, str]:
    """``--features NAME=PATH`` (repeatable) -> {name: path}, names checked."""
    from prnn.models.prnn import check_feature_set_name

    paths = parse_overrides(specs, "--features", "NAME=PATH")
    for name in paths:
        check_feature_set_name(name)
    return paths


def _read_feature_sets(specs: list[str]) -> dict:
    """``--features NAME=PATH`` (repeatable) -> {name: FeatureMatrix}."""
    from prnn.features import read_features

    feature_sets = {}
    for name, path in _parse_feature_specs(specs).items():
        feature_sets[name] = read_features(path)
        matrix = feature_sets[name]
        kind = "sparse" if matrix.is_sparse else "dense"
        log.info(
            "features %s: %d items x %d (%s) from %s",
            name,
            matrix.values.shape[0],
            matrix.dim,
            kind,
            path,
        )
    return feature_sets


def _check_training_flags(args: argparse.Namespace, model: SessionRecommender) -> None:
    """The training flags apply to ``model`` and have valid values; reads no file."""
    if model.uses_features:
        _parse_feature_specs(args.features)
    elif args.features:
        raise ConfigError(
            f"--features only apply to models that read item features; {model.name} does not"
        )
    asked = [
        flag
        for flag, given in (
            ("--valid", args.valid is not None),
            ("--patience", args.patience is not None),
            ("--device", args.device is not None),
            ("--compile" if args.compile else "--no-compile", args.compile is not None),
        )
        if given
    ]
    if asked and not model.trains_by_epochs:
        raise ConfigError(
            f"{', '.join(asked)} only apply to models trained by epochs; {model.name} is not"
        )
    _check_at_least(args.patience, "--patience", 0)
    _check_device(args.device)


def _training_options(args: argparse.Namespace, model: SessionRecommender) -> dict:
    """The fit options of the flags: --features for models that read item features; --valid,
    --patience, --device and --compile / --no-compile for models trained by epochs."""
    _check_training_flags(args, model)
    options: dict = {}
    if model.uses_features:
        options["features"] = _read_feature_sets(args.features)
    if not model.trains_by_epochs:
        return options
    options.update(
        device=args.device or "cpu", patience=args.patience or 0, valid_metric=args.valid_metric
    )
    if args.compile is not None:  # otherwise the library's default: compiled where it pays
        options["compile"] = args.compile
    if args.valid:
        options["valid"] = validation(_read_events_from_args(args.valid, args))
    return options


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def command_split(args: argparse.Namespace) -> int:
    out_dir = _writable_folder(args.out_dir, "--out-dir")
    _parse_where(args)
    events = _read_events_from_args(args.events, args)
    train, test, report = split_by_time(
        events,
        args.test_days,
        split_by=args.split_by,
        min_item_support=args.min_item_support,
        min_session_length=args.min_session_length,
    )
    write_events(train, out_dir / "train.csv")
    write_events(test, out_dir / "test.csv")
    summary = {key: value for key, value in vars(report).items()}
    atomic_write_bytes(out_dir / "split.json", json.dumps(summary, indent=2).encode())
    for line in report.lines():
        print(line)
    print(f"wrote {out_dir / 'train.csv'}, {out_dir / 'test.csv'} and {out_dir / 'split.json'}")
    return 0


def command_train(args: argparse.Namespace) -> int:
    out = _writable_file(args.out, "--out")
    model = _build_model(args)
    _check_training_flags(args, model)
    _parse_where(args)
    log.info("model %s: %s", model.name, model.config)
    events = _read_events_from_args(args.train, args)
    options = _training_options(args, model)
    started = time.perf_counter()
    model.fit(events, progress=not args.quiet, **options)
    seconds = time.perf_counter() - started
    model.save(out)
    print(f"trained {model.name} on {events.n_events} events in {seconds:.1f} s; saved {out}")
    return 0


def _result_table(rows: list[tuple[str, EvaluationResult]], cutoffs: Sequence[int]) -> str:
    headers = ["model"]
    for k in cutoffs:
        headers += [f"Recall@{k}", f"MRR@{k}"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for label, result in rows:
        cells = [label]
        for k in cutoffs:
            cells += [f"{result.metrics[f'recall@{k}']:.4f}", f"{result.metrics[f'mrr@{k}']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _protocol_line(result: EvaluationResult) -> str:
    return (
        f"{result.n_events} events evaluated in {result.n_sessions} sessions, "
        f"{result.n_skipped} skipped (unknown input or target item); "
        f"candidates: {result.candidates} ({result.n_candidates} items), "
        f"{result.n_targets_outside_candidates} targets outside them counted as misses; "
        f"ties: {result.ties}"
    )


def command_evaluate(args: argparse.Namespace) -> int:
    json_out = _writable_file(args.json, "--json") if args.json not in (None, "-") else None
    cutoffs = _parse_cutoffs(args.cutoffs)
    parse_candidates(args.candidates, "--candidates")
    _check_at_least(args.batch_size, "--batch-size")
    _check_device(args.device)
    _parse_where(args)
    model = SessionRecommender.load(args.model).to(args.device)
    events = _read_events_from_args(args.test, args)
    result = evaluate(
        model,
        events,
        cutoffs=cutoffs,
        candidates=args.candidates,
        ties=args.ties,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    payload = json.dumps(result.to_dict(), indent=2)
    if args.json == "-":
        print(payload)
        return 0
    if json_out is not None:
        atomic_write_bytes(json_out, (payload + "\n").encode())
    print(_result_table([(model.name, result)], result.cutoffs))
    print(_protocol_line(result))
    return 0


def command_recommend(args: argparse.Namespace) -> int:
    _check_at_least(args.k, "--k")
    items = [item.strip() for item in args.items.split(",") if item.strip()]
    if not items:
        raise ConfigError("--items expects at least one item id, e.g. --items 214536502,214536506")
    model = SessionRecommender.load(args.model)
    unknown = [
        item for item, index in zip(items, model.fitted_vocabulary.index(items)) if index < 0
    ]
    if unknown:
        log.warning(
            "ignored %d item(s) the model does not know: %s", len(unknown), ", ".join(unknown)
        )
    recommendations = model.recommend(items, k=args.k)
    if args.json:
        print(json.dumps([{"item_id": item, "score": score} for item, score in recommendations]))
        return 0
    print("rank\titem_id\tscore")
    for rank, (item, score) in enumerate(recommendations, start=1):
        print(f"{rank}\t{item}\t{score:.6g}")
    return 0


def command_features_text(args: argparse.Namespace) -> int:
    from prnn.features import feature_file_path, save_sparse_features
    from prnn.featurize import read_item_table, tfidf_text_features

    out = _writable_file(feature_file_path(args.out), "--out")
    text_cols = [c.strip() for c in args.text_cols.split(",") if c.strip()]
    try:
        low, high = (int(v) for v in args.ngram_range.split(","))
    except ValueError:
        raise ConfigError(
            f"--ngram-range expects two integers like 2,2; got {args.ngram_range!r}"
        ) from None
    table = read_item_table(args.items, args.id_col, text_cols)
    log.info("read %d items from %s", table.height, args.items)
    text = tfidf_text_features(
        table,
        args.id_col,
        text_cols,
        ngram_range=(low, high),
        min_df=args.min_df,
        max_features=args.max_features,
        sublinear_tf=args.sublinear_tf,
    )
    written = save_sparse_features(out, text.values, text.item_ids, text.vocabulary)
    print(
        f"{len(text.item_ids)} items, vocabulary of {len(text.vocabulary)} "
        f"{low}-{high}-grams, {text.mean_nonzeros:.2f} non-zeros per item on average; "
        f"saved {written}"
    )
    return 0


def command_features_image(args: argparse.Namespace) -> int:
    from prnn.features import feature_file_path, save_dense_features
    from prnn.image_features import image_features

    out = _writable_file(feature_file_path(args.out), "--out")
    _check_at_least(args.batch_size, "--batch-size")
    _check_at_least(args.image_size, "--image-size")
    _check_at_least(args.limit, "--limit")
    ids, vectors = image_features(
        args.images,
        backbone=args.backbone,
        weights=args.weights,
        random_seed=args.random_weights,
        batch_size=args.batch_size,
        image_size=args.image_size,
        limit=args.limit,
        progress=not args.quiet,
    )
    written = save_dense_features(out, ids, vectors)
    print(
        f"{len(ids)} images -> {vectors.shape[1]}-d unit vectors ({args.backbone}); saved {written}"
    )
    return 0


def command_experiment_paper(args: argparse.Namespace) -> int:
    from prnn.data import split_sessions_randomly
    from prnn.experiment import run_paper_experiment, write_report

    out_dir = _writable_folder(args.out_dir, "--out-dir")
    _parse_where(args)
    _parse_feature_specs(args.features)
    bundled = args.events is None
    if bundled:
        folder = example_events_path().parent / "toys_sample"
        events = read_events(folder / "sequences.csv.gz", session_col="seq_id", time_col="none")
        feature_specs = args.features or [f"image={folder / 'clip_image.npz'}"]
        source = "the bundled Amazon Toys sample (4,000 user histories, 1,997 items)"
    else:
        events = _read_events_from_args(args.events, args)
        feature_specs = args.features
        source = args.events
    features = _read_feature_sets(feature_specs)
    if len(features) != 1:
        raise ConfigError(
            "experiment paper compares one feature set at a time: give one --features"
        )
    feature_name = next(iter(features))
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
        {"n_epochs": args.epochs, **parse_overrides(args.set)},
        "--set",
    )
    base_settings = {k: getattr(base, k) for k in base.__dataclass_fields__}
    for key in ("layers", "feature_layers", "training"):
        base_settings.pop(key)
    rows = run_paper_experiment(
        train,
        test,
        features,
        hidden=args.hidden,
        base_settings=base_settings,
        trials=args.trials,
        tune_epochs=args.tune_epochs,
        seed=args.seed,
        progress=not args.quiet,
    )
    title = f"p-RNN paper comparison: {feature_name} features, {source}"
    notes = [
        split_note,
        f"train: {report.train_events} events in {report.train_sessions} sessions; test: "
        f"{report.test_events} events in {report.test_sessions} sessions "
        f"({report.dropped_test_events_unseen_items} test events on unseen items removed)",
        "all items ranked, conservative ties, Recall@20 and MRR@20 over every evaluated event",
        f"{args.epochs} epochs per neural model; tuning: "
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
    out_dir = _writable_folder(args.out_dir, "--out-dir") if args.out_dir else None
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    for name in names:
        if name not in MODELS:
            raise ConfigError(f"--models: unknown model {name!r}; choose from {', '.join(MODELS)}")
    if not names:
        raise ConfigError(f"--models expects model names, e.g. pop,item-knn; got {args.models!r}")
    cutoffs = _parse_cutoffs(args.cutoffs)
    _parse_where(args)
    path = args.events or str(example_events_path())
    events = _read_events_from_args(path, args)
    train, test, report = split_by_time(events, args.test_days)
    for line in report.lines():
        log.info(line)
    rows: list[tuple[str, EvaluationResult]] = []
    timings: dict[str, float] = {}
    for name in names:
        started = time.perf_counter()
        model = MODELS[name]().fit(train)
        timings[name] = time.perf_counter() - started
        result = evaluate(model, test, cutoffs=cutoffs, progress=not args.quiet)
        rows.append((name, result))
    table = _result_table(rows, cutoffs)
    print(f"Baselines on {path}: last {args.test_days:g} day(s) as test")
    print(table)
    print(_protocol_line(rows[0][1]))
    if out_dir is not None:
        results = {
            name: {**result.to_dict(), "fit_seconds": round(timings[name], 3)}
            for name, result in rows
        }
        atomic_write_bytes(out_dir / "results.json", json.dumps(results, indent=2).encode())
        atomic_write_bytes(out_dir / "results.md", (table + "\n").encode())
        print(f"wrote {out_dir / 'results.md'} and {out_dir / 'results.json'}")
    return 0


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------


THREADS_HELP = (
    "intra-op threads for training, evaluation and feature extraction (default: the "
    "PRNN_THREADS or OMP_NUM_THREADS variable, else prnn's policy: see docs/threads.md)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prnn",
        description="Session-based recommendation with item features: split click logs, "
        "train and evaluate recommenders, recommend for a session.",
    )
    parser.add_argument("--version", action="version", version=f"prnn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars or info logs on stderr"
    )
    parser.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)
    # The same flags after the subcommand name; SUPPRESS keeps the top-level value otherwise.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress bars or info logs on stderr",
    )
    common.add_argument(
        "--threads", type=int, metavar="N", default=argparse.SUPPRESS, help=THREADS_HELP
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    split = commands.add_parser(
        "split",
        parents=[common],
        help="time-based train/test split of a click log",
        description="Sessions whose last (or first) event lies in the last N days go to test. "
        "Test events on items unseen in train are dropped, then test sessions shorter than the "
        "minimum length. Writes train.csv, test.csv and split.json to --out-dir.",
    )
    split.add_argument("events", help="click log (CSV, TSV, .gz or Parquet)")
    split.add_argument("--test-days", type=float, required=True, help="length of the test period")
    split.add_argument(
        "--out-dir", required=True, help="folder for train.csv, test.csv, split.json"
    )
    split.add_argument(
        "--split-by",
        choices=("end", "start"),
        default="end",
        help="which session time decides the side (default: end, as GRU4Rec's preprocessing)",
    )
    split.add_argument(
        "--min-item-support",
        type=int,
        default=1,
        help="drop items with fewer events, before splitting (default: 1 = keep all)",
    )
    split.add_argument(
        "--min-session-length",
        type=int,
        default=2,
        help="drop shorter sessions, before splitting and from test after it (default: 2)",
    )
    _add_event_columns(split)
    split.set_defaults(handler=command_split)

    train = commands.add_parser(
        "train",
        parents=[common],
        help="train a model on a click log and save it",
        description="Train a recommender and save it as one file (safetensors + JSON metadata).",
    )
    train.add_argument("train", help="training click log")
    train.add_argument("--model", required=True, choices=sorted(MODELS), help="which model")
    train.add_argument("--out", required=True, help="model file to write")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model setting (repeatable), e.g. --set layers=100; overrides --config and --preset",
    )
    train.add_argument("--config", help="TOML or JSON file of model settings; overrides --preset")
    train.add_argument(
        "--preset",
        help=f"published hyper-parameters to start from: {', '.join(preset_names())}",
    )
    epochs = train.add_argument_group(
        "models trained by epochs (gru4rec, feature-only, concat, prnn)"
    )
    epochs.add_argument(
        "--features",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="an item feature set (repeatable): .npz/.npy/.parquet, dense or sparse, e.g. "
        "--features image=clip.npz --features text=tfidf.npz",
    )
    epochs.add_argument("--valid", help="click log evaluated after every epoch (Recall/MRR@20)")
    epochs.add_argument(
        "--patience",
        type=int,
        help="stop after this many epochs without a gain on --valid and keep the best epoch",
    )
    epochs.add_argument(
        "--valid-metric", default="recall@20", help="metric for --patience (default: %(default)s)"
    )
    epochs.add_argument(
        "--device", help="torch device to train on, e.g. cpu or cuda (default: cpu)"
    )
    epochs.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the training step through torch.compile: compiled by default where it pays; "
        "--no-compile trains eagerly (compiling takes a one-off 5-20 s and, on CPU, a C++ "
        "compiler)",
    )
    _add_event_columns(train)
    train.set_defaults(handler=command_train)

    evaluate_parser = commands.add_parser(
        "evaluate",
        parents=[common],
        help="next-event evaluation of a saved model on a test log",
        description="For every event of each test session but the last, rank the candidates for "
        "the next event. Prints Recall@K and MRR@K; --json - prints only JSON on stdout.",
    )
    evaluate_parser.add_argument("model", help="saved model file")
    evaluate_parser.add_argument("test", help="test click log")
    evaluate_parser.add_argument(
        "--cutoffs",
        default=",".join(map(str, DEFAULT_CUTOFFS)),
        help="comma-separated K values (default: %(default)s)",
    )
    evaluate_parser.add_argument(
        "--candidates",
        default=DEFAULT_CANDIDATES,
        help="'all' items or 'top:N' most popular training items (default: %(default)s)",
    )
    evaluate_parser.add_argument(
        "--ties",
        default=DEFAULT_TIES,
        choices=tuple(TIE_SHARE_ABOVE),
        help="rank of the target among equal scores (default: %(default)s = below all of them)",
    )
    evaluate_parser.add_argument(
        "--json", metavar="OUT", help="write the metrics as JSON to OUT, or to stdout with '-'"
    )
    evaluate_parser.add_argument(
        "--batch-size", type=int, default=256, help="sessions scored side by side (default: 256)"
    )
    evaluate_parser.add_argument(
        "--device", default="cpu", help="torch device to score on (default: %(default)s)"
    )
    _add_event_columns(evaluate_parser)
    evaluate_parser.set_defaults(handler=command_evaluate)

    recommend = commands.add_parser(
        "recommend",
        parents=[common],
        help="top-k items for a session so far",
        description="Item-to-session recommendation: the model reads the given clicks in order "
        "and lists the k items it scores highest for the next click.",
    )
    recommend.add_argument("model", help="saved model file")
    recommend.add_argument(
        "--items", required=True, help="the session's item ids in click order, comma-separated"
    )
    recommend.add_argument("--k", type=int, default=20, help="list length (default: 20)")
    recommend.add_argument("--json", action="store_true", help="print JSON instead of a table")
    recommend.set_defaults(handler=command_recommend)

    features = commands.add_parser(
        "features", parents=[common], help="build item feature matrices from item content"
    )
    feature_kinds = features.add_subparsers(dest="kind", required=True, metavar="KIND")
    text = feature_kinds.add_parser(
        "text",
        parents=[common],
        help="TF-IDF word n-grams of item text (sparse)",
        description="Concatenate the text columns of each item and weight its word n-grams "
        "(default: bi-grams, as in the p-RNN paper) by TF-IDF. Writes a sparse .npz (CSR arrays, "
        "item_id, vocabulary) usable with --features.",
    )
    text.add_argument("items", help="item table (CSV, TSV, .gz or Parquet)")
    text.add_argument("--out", required=True, help="output .npz")
    text.add_argument("--id-col", default="item_id", help="item id column (default: %(default)s)")
    text.add_argument(
        "--text-cols",
        default="title,description",
        help="comma-separated text columns, concatenated (default: %(default)s)",
    )
    text.add_argument(
        "--ngram-range", default="2,2", help="smallest,largest n of word n-grams (default: 2,2)"
    )
    text.add_argument(
        "--min-df", type=int, default=1, help="drop n-grams in fewer items (default: 1)"
    )
    text.add_argument(
        "--max-features", type=int, help="keep only the most frequent n-grams (default: all)"
    )
    text.add_argument(
        "--sublinear-tf", action="store_true", help="use 1 + log(tf) instead of raw counts"
    )
    text.set_defaults(handler=command_features_text)

    image = feature_kinds.add_parser(
        "image",
        parents=[common],
        help="CNN image vectors (dense), GoogLeNet's last average pooling by default",
        description="Run each item image (files named by item id, in a folder or a zip) through "
        "a CNN pretrained on ImageNet and keep its last average-pooling output (GoogLeNet: 1024 "
        "values), scaled to unit length, as in the p-RNN paper. Writes a dense .npz (item_id, "
        "emb) usable with --features.",
    )
    image.add_argument("images", help="folder or zip of images named <item id>.jpg/.png/...")
    image.add_argument("--out", required=True, help="output .npz")
    image.add_argument(
        "--backbone",
        default="googlenet",
        help="googlenet (built in) or another torchvision model name if torchvision imports",
    )
    image.add_argument(
        "--weights",
        help="state-dict file of the backbone (default: torchvision's cached ImageNet weights)",
    )
    image.add_argument(
        "--random-weights",
        type=int,
        metavar="SEED",
        help="random weights from SEED instead of pretrained ones (for testing the pipeline)",
    )
    image.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    image.add_argument(
        "--image-size", type=int, default=224, help="images are resized to this square (224)"
    )
    image.add_argument("--limit", type=int, help="only the first N images (by name)")
    image.set_defaults(handler=command_features_image)

    experiment = commands.add_parser(
        "experiment", parents=[common], help="run a comparison of models and print a results table"
    )
    experiments = experiment.add_subparsers(dest="experiment", required=True, metavar="NAME")
    baselines = experiments.add_parser(
        "baselines",
        parents=[common],
        help="POP, item-kNN and V-SKNN on one log (default: the bundled RSC15 sample)",
        description="Split a click log by time, train the baselines on the training part and "
        "evaluate them on the test part with the shared protocol (all items, conservative ties).",
    )
    baselines.add_argument(
        "--events", help="click log to use (default: the sample bundled with prnn)"
    )
    baselines.add_argument(
        "--test-days", type=float, default=1.0, help="test period in days (default: 1)"
    )
    baselines.add_argument(
        "--models",
        default="pop,item-knn,v-sknn",
        help="comma-separated models to compare (default: %(default)s)",
    )
    baselines.add_argument(
        "--cutoffs", default="5,10,20", help="comma-separated K values (default: %(default)s)"
    )
    baselines.add_argument("--out-dir", help="also write results.md and results.json here")
    _add_event_columns(baselines)
    baselines.set_defaults(handler=command_experiment_baselines)

    paper = experiments.add_parser(
        "paper",
        parents=[common],
        help="the p-RNN paper's comparison (default: the bundled Amazon Toys sample)",
        description="item-kNN, content-kNN, ID only (h, 2h), feature only, concat and p-RNN "
        "trained four ways (h+h), on one click log and one feature set; writes results.md, "
        ".csv, .json and a bar chart (results.png) to --out-dir.",
    )
    paper.add_argument("--events", help="click log (default: the bundled Amazon Toys sample)")
    paper.add_argument(
        "--features",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="the feature set (default with the bundled sample: its CLIP image vectors)",
    )
    paper.add_argument(
        "--out-dir", default="runs/paper", help="report folder (default: %(default)s)"
    )
    paper.add_argument("--hidden", type=int, default=100, help="h, hidden units (default: 100)")
    paper.add_argument("--epochs", type=int, default=5, help="epochs per model (default: 5)")
    paper.add_argument(
        "--test-fraction",
        type=float,
        default=0.1,
        help="share of sessions drawn at random as test (default: 0.1)",
    )
    paper.add_argument("--test-days", type=float, help="time split instead: last N days as test")
    paper.add_argument("--seed", type=int, default=0, help="split and tuning seed (default: 0)")
    paper.add_argument(
        "--trials",
        type=int,
        default=0,
        help="tuning budget: settings tried per neural method (default: 0 = no tuning)",
    )
    paper.add_argument("--tune-epochs", type=int, default=3, help="epochs per tuning trial")
    paper.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="base settings of every neural model, e.g. --set loss=bpr-max",
    )
    _add_event_columns(paper)
    paper.set_defaults(handler=command_experiment_paper)
    return parser


@contextlib.contextmanager
def _threads_setting(threads: int | None):
    """``--threads N`` as ``PRNN_THREADS`` while the command runs: every library call resolves
    its thread count from it (``prnn.threads``)."""
    if threads is None:
        yield
        return
    from prnn.threads import ENV_VAR, parse_thread_count

    previous = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(parse_thread_count(threads, "--threads"))
    try:
        yield
    finally:
        if previous is None:
            del os.environ[ENV_VAR]
        else:
            os.environ[ENV_VAR] = previous


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(message)s" if args.debug else "%(message)s",
        stream=sys.stderr,
        force=True,
    )
    try:
        with _threads_setting(args.threads):
            return args.handler(args)
    except PrnnError as error:
        if args.debug:
            raise
        print(f"prnn: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the file system failed under us (disk full, file removed)
        if args.debug:
            raise
        where = f"{error.filename}: " if error.filename else ""
        print(f"prnn: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
