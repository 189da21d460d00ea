"""``prnn features text`` (TF-IDF n-grams of item text) and ``prnn features image`` (CNN vectors
of item images): item feature matrices for ``--features``."""

from __future__ import annotations

import argparse
import logging

from prnn.cli.common import check_at_least
from prnn.cli.paths import input_file, input_path, output_file
from prnn.errors import ConfigError
from prnn.file_kinds import is_feature_file

log = logging.getLogger("prnn")


def feature_output(args: argparse.Namespace):
    """``--out`` with ``.npz`` added unless it ends so (what ``--features`` then reads),
    checked to be writable without destroying a file that is not a prnn feature file."""
    from prnn.features import feature_file_path

    return output_file(
        feature_file_path(args.out),
        "--out",
        previous=is_feature_file,
        what="a prnn feature file",
        force=args.force,
    )


def command_features_text(args: argparse.Namespace) -> int:
    text_cols = [c.strip() for c in args.text_cols.split(",") if c.strip()]
    try:
        low, high = (int(v) for v in args.ngram_range.split(","))
    except ValueError:
        raise ConfigError(
            f"--ngram-range expects two integers like 2,2; got {args.ngram_range!r}"
        ) from None
    out = feature_output(args)
    input_file(args.items, "", "item table")
    from prnn.features import save_sparse_features
    from prnn.featurize import read_item_table, tfidf_text_features

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
    check_at_least(args.batch_size, "--batch-size")
    check_at_least(args.image_size, "--image-size")
    check_at_least(args.limit, "--limit")
    out = feature_output(args)
    input_path(args.images, "", "image folder or zip")
    if args.weights is not None:
        input_file(args.weights, "--weights", "state-dict file")
    from prnn.features import save_dense_features
    from prnn.image_features import image_features

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
