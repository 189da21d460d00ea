"""``prnn evaluate`` (next-event accuracy of a saved model on a test log) and ``prnn recommend``
(top-k items for a session so far)."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

from prnn.atomic import atomic_write_bytes
from prnn.cli.common import (
    check_at_least,
    check_device,
    parse_cutoffs,
    parse_where,
    read_events_from_args,
)
from prnn.cli.paths import input_events, input_file, output_file
from prnn.errors import ConfigError
from prnn.file_kinds import is_evaluation_json
from prnn.protocol import parse_candidates

log = logging.getLogger("prnn")


def result_table(rows: list, cutoffs: Sequence[int]) -> str:
    """A markdown table of (label, EvaluationResult) rows: Recall@K and MRR@K per cut-off."""
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


def protocol_line(result) -> str:
    return (
        f"{result.n_events} events evaluated in {result.n_sessions} sessions, "
        f"{result.n_skipped} skipped (unknown input or target item); "
        f"candidates: {result.candidates} ({result.n_candidates} items), "
        f"{result.n_targets_outside_candidates} targets outside them counted as misses; "
        f"ties: {result.ties}"
    )


def command_evaluate(args: argparse.Namespace) -> int:
    json_out = None
    if args.json not in (None, "-"):
        json_out = output_file(
            args.json,
            "--json",
            previous=is_evaluation_json,
            what="metrics written by prnn evaluate",
            force=args.force,
        )
    cutoffs = parse_cutoffs(args.cutoffs)
    parse_candidates(args.candidates, "--candidates")
    check_at_least(args.batch_size, "--batch-size")
    parse_where(args)
    input_file(args.model, "", "model file")
    input_events(args.test, "", "event file")
    check_device(args.device)
    from prnn.evaluation import evaluate
    from prnn.models import SessionRecommender

    model = SessionRecommender.load(args.model).to(args.device)
    events = read_events_from_args(args.test, args)
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
    print(result_table([(model.name, result)], result.cutoffs))
    print(protocol_line(result))
    return 0


def command_recommend(args: argparse.Namespace) -> int:
    check_at_least(args.k, "--k")
    items = [item.strip() for item in args.items.split(",") if item.strip()]
    if not items:
        raise ConfigError("--items expects at least one item id, e.g. --items 214536502,214536506")
    input_file(args.model, "", "model file")
    from prnn.models import SessionRecommender

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
