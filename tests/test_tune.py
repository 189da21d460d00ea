"""``prnn tune``: an Optuna study in a SQLite file that the same command continues, and a best
settings file that ``prnn train --config`` reads."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from prnn.cli import main
from prnn.config import read_config_file
from prnn.tuning import GRU4REC_BPRMAX, GRU4REC_XE, trial_settings


def _write(path, sessions):
    rows = [
        f"{s},{i},{t}"
        for t, (s, i) in enumerate((s, i) for s, items in enumerate(sessions) for i in items)
    ]
    path.write_text("session_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture()
def logs(tmp_path):
    rng = np.random.default_rng(0)
    sessions = [list(rng.integers(1, 30, size=rng.integers(2, 6))) for _ in range(120)]
    return _write(tmp_path / "train.csv", sessions[:100]), _write(
        tmp_path / "valid.csv", sessions[100:]
    )


def _trials(study) -> int:
    with sqlite3.connect(study) as db:
        return db.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]


def test_tune_writes_the_best_settings_and_continues_its_study(logs, tmp_path, capsys):
    train, valid = logs
    out = tmp_path / "best.toml"
    command = ["-q", "tune", str(train), str(valid), "--model", "gru4rec", "--set", "n_epochs=1",
               "--set", "n_sample=16", "--out", str(out)]  # fmt: skip
    assert main([*command, "--trials", "2"]) == 0
    study = tmp_path / "best.toml.study.sqlite"
    assert _trials(study) == 2
    printed = capsys.readouterr().out
    assert "best mrr@20" in printed and "| trial | mrr@20 | layers |" in printed
    settings = read_config_file(out)
    assert settings["n_epochs"] == 1 and 64 <= settings["layers"][0] <= 512
    assert out.read_text().startswith("# prnn tune: gru4rec, space gru4rec-xe, best of 2 trials")
    # the same command continues the study; the settings file trains a model
    assert main([*command, "--trials", "3"]) == 0
    assert _trials(study) == 3
    model = tmp_path / "m.prnn"
    assert main(["-q", "train", str(train), "--model", "gru4rec", "--config", str(out),
                 "--out", str(model), "--no-compile"]) == 0  # fmt: skip
    # the continued study drew new settings, not its first ones again
    import optuna

    trials = optuna.load_study(study_name="gru4rec-gru4rec-xe", storage=f"sqlite:///{study}").trials
    assert trials[2].params != trials[0].params
    # another metric is another search: refused, the study file names it
    capsys.readouterr()
    assert main([*command, "--trials", "4", "--metric", "recall@20"]) == 2
    assert "another search (metric: study 'mrr@20', now 'recall@20')" in capsys.readouterr().err
    # a file prnn tune did not write is not replaced
    other = tmp_path / "mine.toml"
    other.write_text("layers = [1]\n")
    capsys.readouterr()
    assert main([*command[:-1], str(other), "--trials", "1"]) == 2
    assert "mine.toml" in capsys.readouterr().err and other.read_text() == "layers = [1]\n"


def test_trial_settings_follow_the_spaces():
    assert {d.name for d in GRU4REC_BPRMAX} - {d.name for d in GRU4REC_XE} == {"bpreg", "elu_param"}
    settings = trial_settings(
        {"layers": 96, "dropout_p_hidden": 0.35000000000000003, "elu_param": 0.5}, "gru4rec", 0
    )
    assert settings == {
        "layers": (96,),
        "dropout_p_hidden": 0.35,
        "elu_param": 0.5,
        "loss": "bpr-max",
    }
    prnn = trial_settings(
        {"feature_layers": 64, "feature_weight": 0.5, "training": "residual"}, "prnn", 2
    )
    assert prnn == {
        "feature_layers": (64,),
        "subnet_weights": (1.0, 0.5, 0.5),
        "training": "residual",
    }
    assert trial_settings({"training": "residual", "feature_weight": 1.0}, "concat", 1) == {}


def test_tune_refuses_a_model_that_is_not_trained_by_epochs(logs, tmp_path, capsys):
    train, valid = logs
    assert (
        main(
            [
                "tune",
                str(train),
                str(valid),
                "--model",
                "item-knn",
                "--out",
                str(tmp_path / "b.toml"),
            ]
        )
        == 2
    )
    assert "recurrent models" in capsys.readouterr().err
