"""A command line users trust: no file lost, answers at once, readable settings and errors."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prnn.cli import main
from prnn.model_registry import MODEL_ENTRIES, MODEL_NAMES, model_class

EVENTS = "session_id,item_id,timestamp\n1,1,1\n1,2,2\n1,3,3\n2,2,10\n2,3,11\n3,1,20\n3,3,21\n"


def run(args, capsys, quiet=True):
    code = main(["--quiet", *args] if quiet else list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture()
def work(tmp_path, capsys):
    """A folder with an event log, a precious data file, a pop model and a report of each kind."""
    (tmp_path / "events.csv").write_text(EVENTS)
    (tmp_path / "precious.csv").write_text("customer,balance\nada,100\n")
    command = ["train", str(tmp_path / "events.csv"), "--model", "pop"]
    assert run([*command, "--out", str(tmp_path / "pop.prnn")], capsys)[0] == 0
    return tmp_path


# (command, the existing file it would overwrite, that file's content, words of the error)
NOT_OURS = [
    ("train events.csv --model pop --out precious.csv", "precious.csv", None, "a prnn model"),
    (
        "split events.csv --test-days 1 --out-dir data",
        "data/train.csv",
        b"my own train file\n",
        "part of an earlier prnn split",
    ),
    (
        "features text items.csv --out notes",
        "notes.npz",
        b"not an npz\n",
        "a prnn feature file",
    ),
    (
        "evaluate pop.prnn events.csv --json metrics.json",
        "metrics.json",
        b'{"mine": 1}\n',
        "metrics written by prnn evaluate",
    ),
    (
        "experiment baselines --models pop --out-dir report",
        "report/results.md",
        b"# my notes\n",
        "part of an earlier prnn experiment report",
    ),
]


@pytest.mark.parametrize(("command", "existing", "content", "words"), NOT_OURS)
def test_a_file_prnn_did_not_write_is_never_overwritten(
    work, capsys, monkeypatch, command, existing, content, words
):
    monkeypatch.chdir(work)
    target = work / existing
    target.parent.mkdir(parents=True, exist_ok=True)
    if content is not None:
        target.write_bytes(content)
    before = target.read_bytes()
    code, out, err = run(command.split(), capsys)
    assert code == 2 and err.startswith("prnn: error: ") and err.count("\n") == 1, err
    assert f"{existing}: exists and is not {words}" in err and "--force" in err
    assert target.read_bytes() == before  # byte for byte
    assert "Traceback" not in err and out == ""


def test_force_replaces_and_earlier_outputs_are_replaced_without_it(work, capsys, monkeypatch):
    monkeypatch.chdir(work)
    train = "train events.csv --model pop --out".split()
    assert run([*train, "precious.csv", "--force"], capsys)[0] == 0
    assert (work / "precious.csv").read_bytes()[8:9] == b"{"  # now a safetensors model
    # a prnn model written before is simply replaced
    assert run([*train, "pop.prnn"], capsys)[0] == 0
    split = "split events.csv --test-days 0.0001 --out-dir data".split()
    assert run(split, capsys)[0] == 0
    assert run(split, capsys)[0] == 0  # the earlier split: replaced
    evaluate = "evaluate pop.prnn events.csv --json metrics.json".split()
    assert run(evaluate, capsys)[0] == 0 and run(evaluate, capsys)[0] == 0
    baselines = "experiment baselines --models pop --out-dir report".split()
    assert run(baselines, capsys)[0] == 0 and run(baselines, capsys)[0] == 0


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("train events.csv --model pop --out sub", "--out sub: is a folder; expected a file name"),
        ("features text items.csv --out sub/x.npz/", "is a folder"),
        (
            "split events.csv --test-days 1 --out-dir events.csv",
            "--out-dir events.csv: events.csv is a file, not a folder",
        ),
        ("train nope.csv --model gru4rec --out m.prnn", "nope.csv: no such event file"),
        ("train events.csv --model pop --out m.prnn --config nope.toml", "nope.toml: cannot read"),
        (
            "train events.csv --model gru4rec --out m.prnn --valid nope.csv",
            "--valid nope.csv: no such event file",
        ),
        (
            "train events.csv --model prnn --out m.prnn --features image=nope.npz",
            "--features image=nope.npz: no such feature file",
        ),
        ("evaluate nope.prnn events.csv", "nope.prnn: no such model file"),
        ("evaluate pop.prnn nope.csv", "nope.csv: no such event file"),
        ("recommend nope.prnn --items 1", "nope.prnn: no such model file"),
        ("features text nope.csv --out t", "nope.csv: no such item table"),
        ("features image nope --out i --random-weights 1", "nope: no such image folder or zip"),
        ("experiment paper --events nope.csv", "--events nope.csv: no such event file"),
    ],
)
def test_missing_inputs_and_folder_outputs_fail_before_any_work(
    work, capsys, monkeypatch, command, words
):
    monkeypatch.chdir(work)
    (work / "sub" / "x.npz").mkdir(parents=True)
    code, out, err = run(command.split(), capsys, quiet=False)
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert err.startswith("prnn: error: ")  # no settings line, no "read ..." log before it
    assert not (work / "m.prnn").exists()


def test_a_truncated_model_file_says_so_and_names_the_file(work, capsys, monkeypatch):
    monkeypatch.chdir(work)
    data = (work / "pop.prnn").read_bytes()
    (work / "cut.prnn").write_bytes(data[: len(data) - 10])
    code, _, err = run(["evaluate", "cut.prnn", "events.csv"], capsys)
    assert code == 2 and "cut.prnn: a prnn model file that is truncated or corrupt" in err
    code, _, err = run(["evaluate", "precious.csv", "events.csv"], capsys)
    assert code == 2 and "precious.csv: not a prnn model" in err


def test_settings_line_shows_only_changed_settings_and_all_with_verbose(work, capsys):
    train = ["train", str(work / "events.csv"), "--model", "gru4rec", "--out"]
    train += [str(work / "g.prnn"), "--set", "n_epochs=1", "--set", "layers=8", "-q"]
    code, _, _ = run(train, capsys, quiet=False)
    assert code == 0
    main([*train[:-1]])
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if line.startswith("model gru4rec:"))
    assert line == (
        "model gru4rec: layers=8, n_epochs=1 (the rest at their defaults; -v lists all)"
    )
    main([*train[:-1], "-v"])
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if line.startswith("model gru4rec:"))
    assert "loss=cross-entropy" in line and "batch_size=64" in line and "layers=8" in line


def test_unknown_setting_names_the_model_as_typed_and_lists_its_settings(work, capsys):
    command = ["train", str(work / "events.csv"), "--model", "item-knn", "--out"]
    code, _, err = run([*command, str(work / "m"), "--set", "neighbours=3"], capsys)
    assert code == 2
    assert (
        "--set: unknown key 'neighbours' for model item-knn (did you mean 'n_neighbors'?). "
        "Valid keys: n_neighbors, regularization, alpha" in err
    )
    assert "ItemKNNConfig" not in err


def test_models_lists_each_setting_with_default_and_meaning(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in MODEL_NAMES:
        assert name in out
    assert main(["models", "gru4rec"]) == 0
    out = capsys.readouterr().out
    assert "  loss = cross-entropy\n      One of cross-entropy, bpr-max" in out
    assert "  n_sample = 2048\n" in out and "  layers = 100\n" in out
    assert main(["models", "prnn"]) == 0
    assert "  training = residual\n" in capsys.readouterr().out


def test_the_registry_agrees_with_the_model_classes():
    from prnn.models import MODELS

    assert tuple(MODELS) == MODEL_NAMES
    for name, entry in MODEL_ENTRIES.items():
        cls = model_class(name)
        assert cls.name == name
        assert (cls.trains_by_epochs, cls.uses_features) == (
            entry.trains_by_epochs,
            entry.uses_features,
        )
        assert dataclasses.is_dataclass(cls.config_class)


HEAVY = ("torch", "polars", "scipy", "sklearn", "numpy", "safetensors")
IMPORTED_HEAVY = (
    "import sys\n"
    "from prnn.cli import main\n"
    "try:\n"
    "    main({argv!r})\n"
    "except SystemExit:\n"
    "    pass\n"
    f"print('heavy:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
)


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["train", "--help"],
        ["evaluate", "--help"],
        ["experiment", "paper", "--help"],
        ["train", "events.csv"],  # an argument error: --model and --out missing
        ["train", "e.csv", "--model", "nope", "--out", "m"],
        ["evaluate", "m.prnn", "t.csv", "--cutoffs", "5,x"],
        ["train", "e.csv", "--model", "pop", "--out", "m", "--compile"],
    ],
)
def test_help_and_argument_errors_import_nothing_heavy(argv, tmp_path):
    (tmp_path / "e.csv").write_text(EVENTS)
    result = subprocess.run(
        [sys.executable, "-c", IMPORTED_HEAVY.format(argv=argv)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.stdout.splitlines()[-1] == "heavy:", result.stdout + result.stderr


def test_importing_the_package_and_its_cli_imports_no_torch():
    code = "import sys, prnn, prnn.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
    # the public names still arrive on first use
    code = "import prnn; print(prnn.GRU4Rec if False else prnn.MODELS['pop'].__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "Pop", result.stderr


def test_features_output_without_extension_is_what_train_reads(work, capsys, monkeypatch):
    monkeypatch.chdir(work)
    (work / "items.csv").write_text("item_id,title\n1,red toy car\n2,blue toy car\n3,toy\n")
    features = ["features", "text", "items.csv", "--text-cols", "title", "--out", "text"]
    assert run(features, capsys)[0] == 0
    code, _, err = run(
        [
            "train",
            "events.csv",
            "--model",
            "content-knn",
            "--out",
            "c.prnn",
            "--features",
            "text=text",
        ],
        capsys,
    )
    assert code == 2 and "did you mean text.npz" in err
    features = ["features", "text", "items.csv", "--text-cols", "title", "--out", "text"]
    assert run(features, capsys)[0] == 0  # replaced: an earlier feature file
    assert np.load(work / "text.npz")["shape"].tolist() == [3, 3]


HUGE_PAGES_USED = """
from prnn.cli import main
main(["models"])
import torch
table = torch.ones(50_000_000)  # 200 MB, an item table of half a million rows
rollup = open("/proc/self/smaps_rollup").read()
print(int(rollup.split("AnonHugePages:")[1].split()[0]) > 100_000)
"""


def _huge_pages_available() -> bool:
    switch = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return switch.exists() and "[never]" not in switch.read_text()


@pytest.mark.skipif(
    not _huge_pages_available(), reason="needs Linux with transparent huge pages available"
)
@pytest.mark.parametrize(("setting", "expected"), [(None, "True"), ("0", "False")])
def test_a_command_puts_large_tensors_on_huge_pages_unless_told_not_to(setting, expected):
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if setting is not None:
        env["THP_MEM_ALLOC_ENABLE"] = setting
    result = subprocess.run(
        [sys.executable, "-c", HUGE_PAGES_USED], capture_output=True, text=True, env=env
    )
    assert result.stdout.splitlines()[-1] == expected, result.stdout + result.stderr
