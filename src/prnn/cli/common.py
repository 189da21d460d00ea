"""What several commands share: flag values checked before any work, reading the event log and
the feature sets a command was given."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from prnn.cli.paths import input_events, input_file
from prnn.config import parse_overrides
from prnn.errors import ConfigError

log = logging.getLogger("prnn")


def check_at_least(value: int | None, flag: str, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise ConfigError(f"{flag} must be >= {minimum}; got {value}")


def check_device(text: str | None, flag: str = "--device") -> None:
    """An unknown or absent torch device fails here, not deep inside training or scoring."""
    if text is None:
        return
    import torch

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


def parse_cutoffs(text: str) -> tuple[int, ...]:
    try:
        cutoffs = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            f"--cutoffs expects comma-separated integers like 1,5,10,20; got {text!r}"
        ) from None
    if not cutoffs or min(cutoffs) < 1:
        raise ConfigError(f"--cutoffs expects positive integers; got {text!r}")
    return cutoffs


def parse_where(args: argparse.Namespace) -> dict[str, str]:
    return parse_overrides(args.where, "--where", "COLUMN=VALUE")


def read_events_from_args(path: str | Path, args: argparse.Namespace, flag: str = ""):
    """The event log at ``path`` read with the command's column flags (``--where`` too)."""
    from prnn.data import read_events

    input_events(path, flag, "event file")
    events = read_events(
        path,
        session_col=args.session_col,
        item_col=args.item_col,
        time_col=args.time_col,
        where=parse_where(args),
    )
    log.info(
        "read %s: %d events, %d sessions, %d items",
        path,
        events.n_events,
        events.n_sessions,
        events.n_items,
    )
    return events


#: what a feature set may be called: it becomes a subnet's (and a module's) name
_FEATURE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def parse_feature_specs(specs: list[str], *, check_files: bool = True) -> dict[str, str]:
    """``--features NAME=PATH`` (repeatable) -> {name: path}: names allowed, files readable."""
    paths = parse_overrides(specs, "--features", "NAME=PATH")
    for name, path in paths.items():
        if not _FEATURE_NAME.fullmatch(name) or name == "id":
            from prnn.models.prnn import check_feature_set_name  # its error names the rules

            check_feature_set_name(name)
        if check_files and not Path(path).exists() and Path(path + ".npz").is_file():
            raise ConfigError(
                f"--features {name}={path}: no such feature file; did you mean {path}.npz "
                "(prnn features adds .npz)?"
            )
        if check_files:
            input_file(path, f"--features {name}=", "feature file")
    return paths


def read_feature_sets(specs: list[str]) -> dict:
    """``--features NAME=PATH`` (repeatable) -> {name: FeatureMatrix}."""
    from prnn.features import read_features

    feature_sets = {}
    for name, path in parse_feature_specs(specs).items():
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
