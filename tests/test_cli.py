"""The command line end to end on the bundled data, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from prnn.cli import example_events_path, main


def run(args, capsys):
    code = main(["--quiet", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("split")
    assert (
        main(
            [
                "--quiet",
                "split",
                str(example_events_path()),
                "--test-days",
                "1",
                "--out-dir",
                str(out),
            ]
        )
        == 0
    )
    return out


def test_split_writes_train_and_test_and_reports_drops(split_dir):
    summary = json.loads((split_dir / "split.json").read_text())
    assert summary["split_by"] == "end"
    # the bundled RSC15 sample was prepared with the last day as test: the split reproduces it
    assert (summary["train_events"], summary["test_events"]) == (70278, 13568)
    assert summary["dropped_test_events_unseen_items"] == 0


def test_train_evaluate_recommend(split_dir, tmp_path, capsys):
    model = tmp_path / "knn.prnn"
    code, out, _ = run(
        [
            "train",
            str(split_dir / "train.csv"),
            "--model",
            "item-knn",
            "--out",
            str(model),
            "--set",
            "n_neighbors=50",
        ],
        capsys,
    )
    assert code == 0 and "saved" in out and model.exists()

    code, out, _ = run(
        ["evaluate", str(model), str(split_dir / "test.csv"), "--json", "-", "--cutoffs", "5,20"],
        capsys,
    )
    assert code == 0
    metrics = json.loads(out)  # stdout is nothing but the JSON
    for key in ("recall@20", "mrr@20", "recall@5", "n_events", "n_skipped", "candidates", "ties"):
        assert key in metrics
    assert metrics["ties"] == "conservative" and metrics["candidates"] == "all"
    assert 0.3 < metrics["recall@20"] < 0.6 and metrics["n_events"] == 10152

    code, out, _ = run(
        [
            "evaluate",
            str(model),
            str(split_dir / "test.csv"),
            "--candidates",
            "top:100",
            "--ties",
            "optimistic",
        ],
        capsys,
    )
    assert code == 0 and "| item-knn |" in out and "top:100" in out

    code, out, err = run(["recommend", str(model), "--items", "214536502,nope", "--k", "5"], capsys)
    assert code == 0
    rows = out.strip().splitlines()
    assert rows[0] == "rank\titem_id\tscore" and len(rows) == 6


def test_experiment_baselines_on_bundled_data(tmp_path, capsys):
    code, out, _ = run(
        ["experiment", "baselines", "--models", "pop,item-knn", "--out-dir", str(tmp_path)], capsys
    )
    assert code == 0
    assert "| pop |" in out and "| item-knn |" in out
    results = json.loads((tmp_path / "results.json").read_text())
    for metrics in results.values():
        for k in (5, 10, 20):
            assert 0 <= metrics[f"mrr@{k}"] <= metrics[f"recall@{k}"] <= 1
        assert metrics["recall@5"] <= metrics["recall@10"] <= metrics["recall@20"]
    # the figures of the README's table: deterministic models on the bundled sample
    assert results["pop"]["recall@20"] == pytest.approx(0.0894, abs=5e-5)
    assert results["pop"]["mrr@20"] == pytest.approx(0.0264, abs=5e-5)
    assert results["item-knn"]["recall@20"] == pytest.approx(0.4075, abs=5e-5)
    assert results["item-knn"]["mrr@20"] == pytest.approx(0.1862, abs=5e-5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny files for the error cases, and a pop model trained on them."""
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "events.csv").write_text(
        "session_id,item_id,timestamp\n1,1,1\n1,2,2\n1,3,3\n2,2,10\n2,3,11\n"
    )
    (folder / "single_events.csv").write_text("session_id,item_id,timestamp\n7,1,1\n8,2,5\n")
    (folder / "unknown_items.csv").write_text("session_id,item_id,timestamp\n7,91,1\n7,92,5\n")
    (folder / "bad.csv").write_text("session_id,item_id,timestamp\n1,2,3\n1,3,soon\n")
    (folder / "a_file").write_text("not a folder")
    model = folder / "pop.prnn"
    assert (
        main(
            ["--quiet", "train", str(folder / "events.csv"), "--model", "pop", "--out", str(model)]
        )
        == 0
    )
    metadata = {"format": "prnn-model", "format_version": "one", "model": "pop", "config": "{}"}
    save_file({"x": torch.zeros(1)}, str(folder / "bad_version.prnn"), metadata=metadata)
    return folder


TRAIN = "train {d}/events.csv --out {d}/out.prnn --model"
EVALUATE = "evaluate {d}/pop.prnn {d}/events.csv"


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("evaluate {d}/events.csv {d}/events.csv", "events.csv: not a prnn model"),
        ("train {d}/bad.csv --model pop --out {d}/m", "bad.csv line 3, column 'timestamp'"),
        (f"{TRAIN} item-knn --set neighbours=3", "unknown key 'neighbours'"),
        ("recommend {d}/pop.prnn --items 1 --k 0", "--k must be >= 1; got 0"),
        ("recommend {d}/pop.prnn --items 1 --k -1", "--k must be >= 1; got -1"),
        (f"{TRAIN} gru4rec --device bogus", "--device: unknown torch device 'bogus'"),
        (f"{EVALUATE} --device bogus", "--device: unknown torch device 'bogus'"),
        (
            "train {d}/events.csv --model pop --out {d}/a_file/m.prnn",
            "--out {d}/a_file/m.prnn: {d}/a_file is a file, not a folder",
        ),
        ("train {d}/events.csv --model pop --out {d}", "--out {d}: is a folder; expected a file"),
        (
            f"{EVALUATE} --json {{d}}/a_file/metrics.json",
            "--json {d}/a_file/metrics.json: {d}/a_file is a file, not a folder",
        ),
        (
            "features text {d}/events.csv --out {d}/a_file/text",
            "--out {d}/a_file/text.npz: {d}/a_file is a file, not a folder",
        ),
        (
            "split {d}/events.csv --test-days 1 --out-dir {d}/a_file/split",
            "--out-dir {d}/a_file/split: {d}/a_file is a file, not a folder",
        ),
        (f"{EVALUATE} --cutoffs 0", "--cutoffs expects positive integers; got '0'"),
        (f"{EVALUATE} --cutoffs 5,x", "--cutoffs expects comma-separated integers"),
        (f"{EVALUATE} --candidates top:0", "--candidates must be 'all' or 'top:N' with N >= 1"),
        (f"{EVALUATE} --batch-size 0", "--batch-size must be >= 1; got 0"),
        (f"{TRAIN} content-knn --features image", "--features: expected NAME=PATH, got 'image'"),
        (f"{TRAIN} pop --features image=x.npz", "--features only apply to models that read"),
        (f"{TRAIN} pop --where split", "--where: expected COLUMN=VALUE, got 'split'"),
        (f"{TRAIN} pop --config {{d}}/absent.toml", "absent.toml: cannot read config file"),
        (f"{TRAIN} pop --compile", "--compile only apply to models trained by epochs"),
        (f"{TRAIN} item-knn --no-compile", "--no-compile only apply to models trained by epochs"),
        ("evaluate {d}/bad_version.prnn {d}/events.csv", "format_version 'one' in its metadata"),
        (
            "evaluate {d}/pop.prnn {d}/single_events.csv",
            "single_events.csv: no event to evaluate: each of its 2 sessions has a single event",
        ),
        (
            "evaluate {d}/pop.prnn {d}/unknown_items.csv",
            "unknown_items.csv: no event to evaluate: its 1 (event, next event) pair(s) all "
            "involve items pop was not trained on",
        ),
    ],
)
def test_errors_are_one_line_without_traceback(tiny, capsys, command, message):
    argv = [token.format(d=tiny) for token in command.split()]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert err.startswith("prnn: error: ") and err.count("\n") == 1, err
    assert message.format(d=tiny) in err and "Traceback" not in err


@pytest.mark.parametrize(
    "command", [[], ["split"], ["train"], ["evaluate"], ["recommend"], ["experiment", "baselines"]]
)
def test_help_of_every_command(command):
    result = subprocess.run(
        [sys.executable, "-m", "prnn.cli", *command, "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "usage: prnn" in result.stdout


def test_train_gru4rec_with_preset_valid_and_patience(split_dir, tmp_path, capsys):
    model = tmp_path / "gru.prnn"
    code, out, err = run(
        [
            "train",
            str(split_dir / "train.csv"),
            "--model",
            "gru4rec",
            "--preset",
            "rsc15",
            "--set",
            "n_epochs=2",
            "--set",
            "layers=32",
            "--valid",
            str(split_dir / "test.csv"),
            "--patience",
            "1",
            "--out",
            str(model),
        ],
        capsys,
    )
    assert code == 0, err
    code, out, _ = run(["evaluate", str(model), str(split_dir / "test.csv"), "--json", "-"], capsys)
    metrics = json.loads(out)
    assert metrics["model"] == "gru4rec" and metrics["recall@20"] > 0.3


def test_epoch_flags_are_refused_for_knn_models(split_dir, tmp_path, capsys):
    code, _, err = run(
        [
            "train",
            str(split_dir / "train.csv"),
            "--model",
            "item-knn",
            "--valid",
            str(split_dir / "test.csv"),
            "--out",
            str(tmp_path / "m"),
        ],
        capsys,
    )
    assert code == 2 and "--valid only apply to models trained by epochs" in err


@pytest.mark.parametrize("model_name", ["gru4rec", "concat"])
@pytest.mark.parametrize(
    ("flags", "compile_option"), [([], "absent"), (["--compile"], True), (["--no-compile"], False)]
)
def test_compile_flags_reach_fit_only_when_given(model_name, flags, compile_option):
    from prnn.cli import build_parser
    from prnn.cli.train import training_options
    from prnn.models import MODELS

    args = build_parser().parse_args(
        ["train", "x.csv", "--model", model_name, "--out", "m", *flags]
    )
    options = training_options(args, MODELS[model_name]())
    # without a flag the library decides (compiled where it pays)
    assert options.get("compile", "absent") == compile_option


def test_train_help_states_the_compile_default():
    result = subprocess.run(
        [sys.executable, "-m", "prnn.cli", "train", "--help"], capture_output=True, text=True
    )
    help_text = " ".join(result.stdout.split())
    assert "--compile, --no-compile" in help_text
    assert "compiled by default where it pays; --no-compile trains eagerly" in help_text


def test_unknown_preset_names_the_closest(split_dir, tmp_path, capsys):
    code, _, err = run(
        [
            "train",
            str(split_dir / "train.csv"),
            "--model",
            "gru4rec",
            "--preset",
            "rsc16",
            "--out",
            str(tmp_path / "m"),
        ],
        capsys,
    )
    assert code == 2 and "did you mean 'rsc15'" in err


def test_outputs_in_missing_folders_are_created(tiny, tmp_path, capsys):
    model = tmp_path / "new" / "models" / "pop.prnn"
    code, out, err = run(
        ["train", str(tiny / "events.csv"), "--model", "pop", "--out", str(model)], capsys
    )
    assert code == 0 and model.is_file() and f"saved {model}" in out
    assert err == ""  # --quiet: no info logs, no progress bars
    metrics = tmp_path / "new" / "reports" / "metrics.json"
    code, _, _ = run(
        ["evaluate", str(model), str(tiny / "events.csv"), "--json", str(metrics)], capsys
    )
    assert code == 0 and json.loads(metrics.read_text())["n_events"] == 3


def test_quiet_silences_info_logs_but_not_warnings(tiny, tmp_path, capsys):
    from prnn.features import save_dense_features

    # features for 1 of the 3 items of events.csv (and one unknown item)
    save_dense_features(tmp_path / "few.npz", np.array([1, 9]), np.eye(2, dtype=np.float32))
    train = ["train", str(tiny / "events.csv"), "--model", "content-knn", "--out"]
    train += [str(tmp_path / "m.prnn"), "--features", f"image={tmp_path / 'few.npz'}"]

    code, _, err = run(train, capsys)  # run() passes --quiet
    assert code == 0
    assert err.splitlines() == [
        f"feature set 'image' ({tmp_path / 'few.npz'}): only 1 of the 3 items of the event log "
        "(33.3%) have features, the others get zero rows; do the ids match (features: [1, 9], "
        "events: [1, 2, 3])?"
    ]

    code = main(train)
    err = capsys.readouterr().err
    assert code == 0 and "only 1 of the 3 items" in err and "read " in err  # info logs too
    assert "it/s" not in err and "\r" not in err  # stderr is no terminal: no progress bars
