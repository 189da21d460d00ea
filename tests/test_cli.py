"""The command line end to end on the bundled data, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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
    assert results["item-knn"]["recall@20"] > results["pop"]["recall@20"]


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (
            lambda p: ["evaluate", str(p / "not_a_model.csv"), str(p / "not_a_model.csv")],
            "not a prnn model",
        ),
        (
            lambda p: ["train", str(p / "bad.csv"), "--model", "pop", "--out", str(p / "m")],
            "bad.csv line 3, column 'timestamp': expected a number",
        ),
        (
            lambda p: [
                "train",
                str(p / "bad.csv"),
                "--model",
                "item-knn",
                "--out",
                str(p / "m"),
                "--set",
                "neighbours=3",
            ],
            "unknown key 'neighbours'",
        ),
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path, capsys, make_args, message):
    (tmp_path / "not_a_model.csv").write_text("session_id,item_id,timestamp\n1,2,3\n")
    (tmp_path / "bad.csv").write_text("session_id,item_id,timestamp\n1,2,3\n1,3,soon\n")
    code, _, err = run(make_args(tmp_path), capsys)
    assert code == 2
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


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


def test_compile_is_refused_for_models_without_a_hand_written_step(split_dir, tmp_path, capsys):
    code, _, err = run(
        ["train", str(split_dir / "train.csv"), "--model", "item-knn", "--compile"]
        + ["--out", str(tmp_path / "m")],
        capsys,
    )
    assert code == 2 and "--compile only apply to models trained by epochs" in err
    from prnn.cli import _training_options, build_parser
    from prnn.models import Concat

    args = build_parser().parse_args(
        ["train", "x.csv", "--model", "concat", "--compile", "--out", "m"]
    )
    args.features = []
    with pytest.raises(Exception, match="--compile applies to models with a hand-written"):
        _training_options(args, Concat())


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
