"""The command line's flags: argparse only, so that ``--help``, ``--version`` and argument
errors answer before anything heavy is imported. Each command names its handler as
``"module:function"``; ``prnn.cli.main`` imports it only to run it."""

from __future__ import annotations

import argparse

from prnn import __version__
from prnn.config import preset_names
from prnn.model_registry import MODEL_ENTRIES, MODEL_NAMES
from prnn.protocol import DEFAULT_CANDIDATES, DEFAULT_CUTOFFS, DEFAULT_TIES, TIE_SHARE_ABOVE


def add_event_columns(parser: argparse.ArgumentParser) -> None:
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


THREADS_HELP = (
    "intra-op threads for training, evaluation and feature extraction (default: the "
    "PRNN_THREADS or OMP_NUM_THREADS variable, else prnn's policy: see docs/threads.md)"
)


def add_force(parser: argparse.ArgumentParser, replaced: str) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"replace existing outputs even if they are {replaced} (otherwise refused)",
    )


def _models_listing() -> str:
    width = max(map(len, MODEL_NAMES))
    return "\n".join(f"  {name:<{width}}  {entry.summary}" for name, entry in MODEL_ENTRIES.items())


MODELS_EPILOG = (
    "models:\n"
    + _models_listing()
    + "\n\nEach model's settings (--set KEY=VALUE), with defaults and meaning: prnn models MODEL"
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
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="list every model setting, not only the ones that differ from the defaults",
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
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="list every model setting, not only the ones that differ from the defaults",
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
    split.add_argument(
        "--low-memory",
        action="store_true",
        help="stream the log through Polars instead of loading it: memory bounded by the "
        "sessions and items, not the events (for logs of tens of millions of events); the "
        "outputs are not sorted",
    )
    add_force(split, "train.csv, test.csv or split.json that are not an earlier split")
    add_event_columns(split)
    split.set_defaults(handler="prnn.cli.split:command_split")

    prepare = commands.add_parser(
        "prepare",
        parents=[common],
        help="lay a click log out as event arrays that training reads memory-mapped",
        description="Write the log as NumPy arrays sorted by session and time (a folder), "
        "streaming it in chunks: memory bounded by the sessions, not the events. Every command "
        "that reads a click log reads the folder too, memory-mapped instead of loaded.",
    )
    prepare.add_argument("events", help="click log (CSV, TSV, .gz or Parquet)")
    prepare.add_argument("--out", required=True, help="folder to write (replaced as a whole)")
    add_force(prepare, "a folder that is not earlier prepared event arrays")
    add_event_columns(prepare)
    prepare.set_defaults(handler="prnn.cli.split:command_prepare")

    train = commands.add_parser(
        "train",
        parents=[common],
        help="train a model on a click log and save it",
        description="Train a recommender and save it as one file (safetensors + JSON metadata).",
        epilog=MODELS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("train", help="training click log")
    train.add_argument(
        "--model",
        choices=MODEL_NAMES,
        metavar="MODEL",
        help="which model (below); with --init, the init model's kind by default",
    )
    train.add_argument("--out", required=True, help="model file to write")
    add_force(train, "a file that is not a prnn model")
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
    epochs.add_argument(
        "--init",
        metavar="MODEL",
        help="continue training this saved model on the new events: its weights (and its "
        "optimiser state, if saved with --updatable) carry over, new items get fresh rows; "
        "settings start from its own",
    )
    epochs.add_argument(
        "--updatable",
        action="store_true",
        help="also save the optimiser's state in the model (about 2x the size), so that a "
        "later --init continues it exactly",
    )
    epochs.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted training from its checkpoint (OUT.checkpoint, written at "
        "the end of every epoch); the same command otherwise",
    )
    epochs.add_argument(
        "--checkpoint-minutes",
        type=float,
        metavar="N",
        help="also checkpoint every N minutes, mid-epoch (default: at the end of each epoch)",
    )
    epochs.add_argument(
        "--mixed-precision",
        action="store_true",
        help="compute the output layer's training products (scores of the sampled items and "
        "their gradients) in bfloat16, for GPUs; weights, the GRU and the loss stay float32",
    )
    epochs.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel training under torchrun (e.g. torchrun --nproc_per_node 2 -m prnn "
        "train ... --distributed): each process trains on its share of the sessions and the "
        "gradients are averaged every step (gloo on CPU, NCCL with --device cuda); process 0 "
        "logs and writes the model",
    )
    add_event_columns(train)
    train.set_defaults(handler="prnn.cli.train:command_train")

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
    add_force(evaluate_parser, "a --json file that is not prnn metrics")
    evaluate_parser.add_argument(
        "--batch-size", type=int, default=256, help="sessions scored side by side (default: 256)"
    )
    evaluate_parser.add_argument(
        "--device", default="cpu", help="torch device to score on (default: %(default)s)"
    )
    add_event_columns(evaluate_parser)
    evaluate_parser.set_defaults(handler="prnn.cli.evaluate:command_evaluate")

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
    recommend.set_defaults(handler="prnn.cli.evaluate:command_recommend")

    synth = commands.add_parser(
        "synth",
        parents=[common],
        help="write a synthetic click log (and item features) at a given scale",
        description="Power-law item popularity, rsc15-like session lengths, a Markov chain "
        "over item clusters for the next click, and optional sparse text / dense image "
        "features that share structure within a cluster (docs/scale.md). Writes "
        "events.parquet (session_id, item_id, timestamp), text.npz, image.npz and synth.json.",
    )
    synth.add_argument("--items", type=int, required=True, help="catalogue size")
    synth.add_argument("--events", type=int, required=True, help="clicks, about")
    synth.add_argument("--text-width", type=int, default=0, help="sparse text columns (0: none)")
    synth.add_argument(
        "--text-nnz", type=int, default=20, help="non-zeros per item's text row (default: 20)"
    )
    synth.add_argument("--image-dim", type=int, default=0, help="image vector size (0: none)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    synth.add_argument("--out", required=True, help="output folder")
    add_force(synth, "files of the same names that prnn synth did not write")
    synth.set_defaults(handler="prnn.cli.synth:command_synth")

    tune = commands.add_parser(
        "tune",
        parents=[common],
        help="search a recurrent model's settings with Optuna; write the best as a config file",
        description="Trains the model with settings drawn by Optuna's TPE sampler from a search "
        "space (GRU4Rec: the reference implementation's standard spaces; p-RNN: its subnet "
        "sizes, subnet weights, training method), scores each on VALID and writes the best "
        "settings as a TOML file for prnn train --config. The study is kept in a SQLite file: "
        "the same command run again continues it up to --trials finished trials.",
    )
    tune.add_argument("train", help="training click log")
    tune.add_argument("valid", help="validation click log (scored after each trial)")
    tune.add_argument("--model", required=True, choices=MODEL_NAMES, metavar="MODEL")
    tune.add_argument("--trials", type=int, default=20, help="trials in all (default: 20)")
    tune.add_argument(
        "--space",
        help="gru4rec-xe, gru4rec-bpr-max or prnn (default: by model and loss)",
    )
    tune.add_argument("--metric", default="mrr@20", help="what to maximise (default: %(default)s)")
    tune.add_argument("--out", required=True, help="TOML file of the best settings")
    tune.add_argument("--study", help="SQLite file of the study (default: OUT.study.sqlite)")
    tune.add_argument("--seed", type=int, default=0, help="the sampler's seed (default: 0)")
    tune.add_argument(
        "--features", action="append", default=[], metavar="NAME=PATH", help="item features"
    )
    tune.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fixed settings under the searched ones, e.g. --set n_epochs=3",
    )
    tune.add_argument("--config", help="TOML or JSON file of fixed settings")
    tune.add_argument("--preset", help="published settings to start from")
    add_force(tune, "a file that prnn tune did not write")
    add_event_columns(tune)
    tune.set_defaults(handler="prnn.cli.tune:command_tune")

    add_items = commands.add_parser(
        "add-items",
        parents=[common],
        help="add items never clicked in training to a model, from their features",
        description="Adds every item of the feature files that the model lacks, without "
        "retraining: its output vector comes from the model's learned projection of its "
        "features (a model trained with --set output=hybrid or output=features), its ID rows "
        "from the most alike known items. Writes the grown model to --out.",
    )
    add_items.add_argument("model", help="saved model file (feature-only, concat or prnn)")
    add_items.add_argument(
        "--features",
        action="append",
        default=[],
        required=True,
        metavar="NAME=PATH",
        help="feature set of the new items, under the name the model was trained with (repeatable)",
    )
    add_items.add_argument("--out", required=True, help="model file to write")
    add_items.add_argument(
        "--neighbours",
        type=int,
        default=10,
        help="known items whose ID rows a new item's are the mean of (default: %(default)s; "
        "0: zero rows)",
    )
    add_force(add_items, "a file that is not a prnn model")
    add_items.set_defaults(handler="prnn.cli.train:command_add_items")

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
    add_force(text, "a file that is not a prnn feature file")
    text.set_defaults(handler="prnn.cli.features:command_features_text")

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
    add_force(image, "a file that is not a prnn feature file")
    image.set_defaults(handler="prnn.cli.features:command_features_image")

    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="serve a model over HTTP: live sessions, one model step per click, a demo page",
        description="Start an HTTP service (FastAPI on uvicorn) for a saved model: POST a click "
        "to /v1/sessions/ID/events and get the next top-k; /v1/recommend for a session given "
        "by its clicks; /docs for the API; / for a demo page. Without MODEL: a p-RNN with image "
        "features on the bundled Amazon Toys sample (trained on first use, about 10 s).",
    )
    serve.add_argument("model", nargs="?", help="saved model file (default: the example model)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    serve.add_argument(
        "--max-sessions",
        type=int,
        default=100_000,
        help="live sessions kept; the least recently used is evicted (default: %(default)s)",
    )
    serve.add_argument(
        "--session-ttl",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="a live session idle this long is dropped (default: %(default)s)",
    )
    serve.add_argument(
        "--max-session-length",
        type=int,
        default=1000,
        help="clicks one live session may have (default: %(default)s)",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=1_000_000,
        help="larger request bodies are refused with 413 (default: %(default)s)",
    )
    serve.add_argument(
        "--admin-token",
        help="token for POST /v1/admin/reload (default: none, reload from loopback only); "
        "SIGHUP reloads the model file too",
    )
    serve.add_argument("--items", help="item table with item_id and title, for the demo page")
    serve.add_argument("--images", help="zip or folder of <item id>.jpg photos, for the demo page")
    serve.add_argument(
        "--device",
        default="cpu",
        help="torch device to score on, e.g. cuda (default: %(default)s; recurrent models)",
    )
    serve.set_defaults(handler="prnn.cli.serve:command_serve")

    models = commands.add_parser(
        "models",
        parents=[common],
        help="list the models, or one model's settings with defaults and meaning",
        description="Without MODEL: every model and what it is. With MODEL: its settings, "
        "their defaults and meaning, as set with prnn train --set KEY=VALUE.",
        epilog=MODELS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    models.add_argument("model", nargs="?", choices=MODEL_NAMES, metavar="MODEL", help="a model")
    models.set_defaults(handler="prnn.cli.train:command_models")

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
    add_force(baselines, "results.md or results.json that are not an earlier report")
    add_event_columns(baselines)
    baselines.set_defaults(handler="prnn.cli.experiment:command_experiment_baselines")

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
        "--extra-features",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="more feature sets (repeatable): adds a row, a residual p-RNN with an ID subnet "
        "and one per feature set (e.g. --features image=... --extra-features text=...)",
    )
    paper.add_argument(
        "--only",
        metavar="NAMES",
        help="run only the methods whose names start with these, comma-separated, e.g. "
        "'ID only 100,p-RNN (residual)'",
    )
    paper.add_argument(
        "--out-dir", default="runs/paper", help="report folder (default: %(default)s)"
    )
    paper.add_argument("--hidden", type=int, default=100, help="h, hidden units (default: 100)")
    paper.add_argument(
        "--epochs", type=int, default=10, help="epochs per neural model (default: %(default)s)"
    )
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
        help="base settings of every neural model, over the defaults (cross-entropy, batch_size "
        "32, learning_rate 0.1, momentum 0.2, dropout_p_hidden 0.3, logq 1), e.g. --set "
        "loss=bpr-max",
    )
    add_force(paper, "results.* files that are not an earlier report")
    add_event_columns(paper)
    paper.set_defaults(handler="prnn.cli.experiment:command_experiment_paper")

    cold = experiments.add_parser(
        "cold-start",
        parents=[common],
        help="items never clicked in training, scored from their features (default: the "
        "bundled Amazon Toys sample)",
        description="Holds a share of the items out of training, trains ID-only GRU4Rec and "
        "p-RNNs with output=features and output=hybrid, adds the held-out items to the p-RNNs "
        "from their feature vectors (no retraining) and reports Recall@20 / MRR@20 on test "
        "events whose next item was held out (cold) and on the others (warm).",
    )
    cold.add_argument("--events", help="click log (default: the bundled Amazon Toys sample)")
    cold.add_argument(
        "--features",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="dense feature set(s) (default with the bundled sample: its CLIP image vectors)",
    )
    cold.add_argument(
        "--out-dir", default="runs/cold_start", help="report folder (default: %(default)s)"
    )
    cold.add_argument(
        "--item-fraction",
        type=float,
        default=0.1,
        help="share of the training items held out of training (default: %(default)s)",
    )
    cold.add_argument(
        "--test-fraction",
        type=float,
        default=0.1,
        help="share of sessions drawn at random as test (default: %(default)s)",
    )
    cold.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    cold.add_argument(
        "--epochs", type=int, default=10, help="epochs per model (default: %(default)s)"
    )
    cold.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="settings of every model, over the paper experiment's shared ones",
    )
    add_force(cold, "results.* files that are not an earlier report")
    add_event_columns(cold)
    cold.set_defaults(handler="prnn.cli.experiment:command_experiment_cold_start")
    return parser
