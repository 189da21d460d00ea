"""Model files (format checks, string ids) and configuration parsing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from prnn.config import build_config, parse_overrides, read_config_file
from prnn.data import Vocabulary
from prnn.errors import ConfigError, ModelFormatError
from prnn.models import ItemKNN, ItemKNNConfig, SessionRecommender, VSKNNConfig
from prnn.persistence import vocabulary_from_tensors, vocabulary_to_tensors

from .conftest import make_log


@pytest.mark.parametrize(
    "content", [b"", b"hello, I am a CSV\n1,2,3\n", b'{"format": "prnn-model"}', bytes(range(256))]
)
def test_foreign_files_are_not_prnn_models(tmp_path, content):
    path = tmp_path / "model.prnn"
    path.write_bytes(content)
    with pytest.raises(ModelFormatError, match="not a prnn model"):
        SessionRecommender.load(path)


def test_safetensors_without_the_prnn_marker(tmp_path):
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelFormatError, match="not a prnn model"):
        SessionRecommender.load(tmp_path / "other.safetensors")


@pytest.mark.parametrize(("version", "message"), [("one", "is not a number"), ("2", "is newer")])
def test_format_version_must_be_a_known_number(tmp_path, version, message):
    metadata = {"format": "prnn-model", "format_version": version, "model": "pop", "config": "{}"}
    save_file({"x": torch.zeros(1)}, str(tmp_path / "m.prnn"), metadata=metadata)
    with pytest.raises(ModelFormatError, match=f"m.prnn: .*{message}"):
        SessionRecommender.load(tmp_path / "m.prnn")


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelFormatError, match="no such model file"):
        SessionRecommender.load(tmp_path / "absent.prnn")


@pytest.mark.parametrize(
    "ids", [np.array([3, 10, 2_000_000_000_000]), np.array(["B00X", "ünï", "a,b", ""])]
)
def test_vocabulary_round_trips_through_tensors(ids):
    vocabulary = Vocabulary(item_ids=np.sort(ids), counts=np.arange(len(ids)))
    again = vocabulary_from_tensors(vocabulary_to_tensors(vocabulary))
    assert again.item_ids.tolist() == vocabulary.item_ids.tolist()
    assert again.counts.tolist() == vocabulary.counts.tolist()


def test_saved_model_carries_its_config(tmp_path):
    model = ItemKNN(n_neighbors=7, regularization=3.5).fit(make_log({1: ["a", "b"], 2: ["b", "c"]}))
    model.save(tmp_path / "m.prnn")
    loaded = SessionRecommender.load(tmp_path / "m.prnn")
    assert loaded.config == ItemKNNConfig(n_neighbors=7, regularization=3.5)


def test_build_config_coerces_strings_by_field_type():
    config = build_config(ItemKNNConfig, {"n_neighbors": "50", "alpha": "0.25"})
    assert config == ItemKNNConfig(n_neighbors=50, alpha=0.25)


def test_unknown_key_names_the_closest_valid_one():
    with pytest.raises(
        ConfigError, match=r"unknown key 'n_neighbours'.*did you mean 'n_neighbors'"
    ):
        build_config(ItemKNNConfig, {"n_neighbours": "5"}, "--set")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"n_neighbors": "many"}, r"'n_neighbors' expects int; got 'many'"),
        ({"alpha": "2"}, r"'alpha' of ItemKNNConfig must be <= 1"),
        ({"n_neighbors": "0"}, r"'n_neighbors' of ItemKNNConfig must be >= 1"),
    ],
)
def test_bad_values_are_rejected(values, message):
    with pytest.raises(ConfigError, match=message):
        build_config(ItemKNNConfig, values)


def test_bad_choice_lists_the_choices():
    with pytest.raises(ConfigError, match=r"'weighting' of VSKNNConfig must be one of same, div"):
        build_config(VSKNNConfig, {"weighting": "cubic"})


def test_overrides_and_config_files(tmp_path):
    assert parse_overrides(["k=5", "weighting = log"]) == {"k": "5", "weighting": "log"}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["k5"])
    (tmp_path / "knn.toml").write_text('k = 50\nweighting = "log"\n')
    assert build_config(VSKNNConfig, read_config_file(tmp_path / "knn.toml")) == VSKNNConfig(
        k=50, weighting="log"
    )
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: not valid json"):
        read_config_file(tmp_path / "bad.json")


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    from prnn.atomic import atomic_path

    target = tmp_path / "model.prnn"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as temp:
        temp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.prnn"]
