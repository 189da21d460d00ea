"""Crash-safe training: a training killed mid-epoch (SIGKILL) and resumed with ``--resume`` ends
with the weights and losses of an uninterrupted run; checkpoints of another training are
refused with what differs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import prnn.training.loop as loop
from prnn.bundled import example_toys_folder
from prnn.data import read_events
from prnn.errors import ConfigError
from prnn.features import read_features
from prnn.file_kinds import checkpoint_path, is_training_checkpoint
from prnn.models import FeatureOnly, GRU4Rec, SessionRecommender
from prnn.training import Checkpointing, read_checkpoint

TOYS = example_toys_folder()
EVENTS = str(TOYS / "sequences.csv.gz")
COLUMNS = ["--session-col", "seq_id", "--time-col", "none"]
SMALL = ["--set", "layers=16", "--set", "n_sample=64", "--set", "dropout_p_hidden=0.2"]
MODELS = {
    "gru4rec": ["--model", "gru4rec", "--set", "n_epochs=2"],
    "prnn-residual": [
        "--model",
        "prnn",
        "--set",
        "feature_layers=16",
        "--set",
        "training=residual",
        "--set",
        "residual_epochs=1,1",
        "--features",
        f"image={TOYS / 'clip_image.npz'}",
    ],
}


def train_command(name: str, out, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "prnn.cli",
        "-q",
        "--threads",
        "1",
        "train",
        EVENTS,
        *COLUMNS,
        *MODELS[name],
        *SMALL,
        "--no-compile",
        "--out",
        str(out),
        *extra,
    ]


def weights(path) -> dict[str, torch.Tensor]:
    return SessionRecommender.load(path).network.state_dict()


@pytest.mark.parametrize("name", list(MODELS))
def test_a_training_killed_mid_epoch_resumes_to_the_same_weights(name, tmp_path):
    whole = tmp_path / "whole.prnn"
    subprocess.run(train_command(name, whole), check=True, timeout=300)

    out = tmp_path / "killed.prnn"
    checkpoint = checkpoint_path(out)
    # a checkpoint at every chunk boundary (256 steps): the first one is mid-epoch 1
    process = subprocess.Popen(train_command(name, out, "--checkpoint-minutes", "1e-9"))
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "training ended before it could be killed"
    assert not out.exists() and is_training_checkpoint(checkpoint)
    saved = read_checkpoint(checkpoint)
    assert saved["step"] > 0, "the kill should land after a mid-epoch checkpoint"

    subprocess.run(train_command(name, out, "--resume"), check=True, timeout=300)
    assert not checkpoint.exists()  # the model is written: the checkpoint is gone
    expected, resumed = weights(whole), weights(out)
    assert expected.keys() == resumed.keys()
    for key in expected:
        torch.testing.assert_close(resumed[key], expected[key], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def toys_events():
    return read_events(TOYS / "sequences.csv.gz", session_col="seq_id", time_col="none")


SETTINGS = {"layers": (16,), "n_epochs": 2, "n_sample": 64, "batch_size": 32}


class Crash(Exception):
    pass


def crash_after_epoch_1(model, events, path):
    """Fit ``model`` with checkpoints at ``path`` and crash at the first step after epoch 1
    (its checkpoint is written by then)."""
    crash = []
    original = loop._train_step

    def step(*args, **kwargs):
        if crash:
            raise Crash
        return original(*args, **kwargs)

    def after_epoch(report, network, optimizer):
        crash.append(report.epoch)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(Crash):
        patch.setattr(loop, "_train_step", step)
        model.fit(
            events,
            compile=False,
            threads=1,
            checkpoint=Checkpointing(path),
            epoch_callback=after_epoch,
        )


def test_resuming_after_an_epoch_equals_the_uninterrupted_run(toys_events, tmp_path):
    path = tmp_path / "m.checkpoint"
    whole = GRU4Rec(**SETTINGS).fit(toys_events, compile=False, threads=1)
    crash_after_epoch_1(GRU4Rec(**SETTINGS), toys_events, path)
    saved = read_checkpoint(path)
    assert (saved["epoch"], saved["step"]) == (2, 0) and len(saved["reports"]) == 1
    resumed = GRU4Rec(**SETTINGS).fit(
        toys_events, compile=False, threads=1, checkpoint=Checkpointing(path, resume=True)
    )
    assert [r.loss for r in resumed.history_] == [r.loss for r in whole.history_]
    for key, tensor in whole.network.state_dict().items():
        torch.testing.assert_close(resumed.network.state_dict()[key], tensor, rtol=0, atol=0)


def test_a_checkpoint_of_another_training_is_refused_with_what_differs(toys_events, tmp_path):
    path = tmp_path / "m.checkpoint"
    crash_after_epoch_1(GRU4Rec(**SETTINGS), toys_events, path)

    def resume(model, events, **options):
        model.fit(
            events,
            compile=False,
            threads=1,
            checkpoint=Checkpointing(path, resume=True),
            **options,
        )

    with pytest.raises(ConfigError, match=r"n_epochs: checkpoint 2, now 3"):
        resume(GRU4Rec(**{**SETTINGS, "n_epochs": 3}), toys_events)
    with pytest.raises(ConfigError, match=r"model: checkpoint 'gru4rec', now 'feature-only'"):
        resume(
            FeatureOnly(**{**SETTINGS, "feature_layers": (16,)}),
            toys_events,
            features={"image": read_features(TOYS / "clip_image.npz")},
        )
    keep = np.ones(toys_events.n_sessions, dtype=bool)
    keep[-10:] = False
    fewer = toys_events.select_sessions(keep)
    with pytest.raises(ConfigError, match="the training events differ"):
        resume(GRU4Rec(**SETTINGS), fewer)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable prnn training checkpoint"):
        resume(GRU4Rec(**SETTINGS), toys_events)


def test_checkpoint_flags_are_checked_before_training(tmp_path, capsys):
    from prnn.cli import main

    out = tmp_path / "m.prnn"
    base = ["train", EVENTS, *COLUMNS, "--out", str(out)]
    assert main([*base, "--model", "pop", "--resume"]) == 2
    assert "--resume only apply to models trained by epochs" in capsys.readouterr().err
    assert main([*base, "--model", "gru4rec", "--checkpoint-minutes", "0"]) == 2
    assert "--checkpoint-minutes must be > 0" in capsys.readouterr().err
    # a file of the user's where the checkpoint would go is never overwritten
    checkpoint_path(out).write_text("mine")
    assert main([*base, "--model", "gru4rec"]) == 2
    assert "m.prnn.checkpoint" in capsys.readouterr().err
    assert checkpoint_path(out).read_text() == "mine" and not out.exists()
