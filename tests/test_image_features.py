"""Image features: the real pipeline on real product photos, with random weights (no download)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prnn.errors import ConfigError, DataError
from prnn.image_features import GoogLeNetFeatures, image_features

from .conftest import SHARED_DATA

PHOTOS = SHARED_DATA / "amazon_toys_mm" / "images_64px.zip"


@pytest.fixture
def photos():
    if not PHOTOS.exists():
        pytest.skip(f"{PHOTOS} not found")
    return PHOTOS


def test_googlenet_vectors_of_real_photos_have_shape_unit_norm_and_repeat(photos):
    ids, vectors = image_features(photos, random_seed=0, limit=12, batch_size=5, image_size=96)
    assert vectors.shape == (12, 1024) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert ids.tolist() == sorted(ids.tolist())  # files named by item id, read in name order
    again_ids, again = image_features(photos, random_seed=0, limit=12, image_size=96)
    assert again_ids.tolist() == ids.tolist() and np.allclose(again, vectors, atol=1e-5)
    other_ids, other = image_features(photos, random_seed=1, limit=12, image_size=96)
    assert not np.allclose(other, vectors)
    # different photos give different vectors
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-4


def test_weights_file_in_torchvision_layout_loads(tmp_path, photos):
    state = GoogLeNetFeatures().state_dict()
    state["fc.weight"] = torch.zeros(1000, 1024)  # torchvision files carry the classifier too
    torch.save(state, tmp_path / "googlenet.pth")
    _, vectors = image_features(
        photos, weights=str(tmp_path / "googlenet.pth"), limit=3, image_size=64
    )
    assert vectors.shape == (3, 1024)
    torch.save({"conv1.conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(DataError, match="not GoogLeNet weights"):
        image_features(photos, weights=str(tmp_path / "other.pth"), limit=1)


def test_folder_input_and_bad_images(tmp_path):
    from PIL import Image

    Image.new("RGB", (20, 30), (200, 10, 10)).save(tmp_path / "item-7.png")
    ids, vectors = image_features(tmp_path, random_seed=0, image_size=64)
    assert ids.tolist() == ["item-7"] and vectors.shape == (1, 1024)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="image of item 'broken' cannot be decoded"):
        image_features(tmp_path, random_seed=0, image_size=64)


def test_missing_weights_and_unknown_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="no GoogLeNet weights"):
        image_features(tmp_path, limit=1)
    with pytest.raises(ConfigError, match="needs torchvision"):
        image_features(tmp_path, backbone="resnet50", limit=1)


def test_cli_features_image_writes_a_dense_feature_file(tmp_path, photos, capsys):
    from prnn.cli import main
    from prnn.features import read_features

    code = main(
        [
            "--quiet",
            "features",
            "image",
            str(photos),
            "--out",
            str(tmp_path / "i.npz"),
            "--random-weights",
            "0",
            "--limit",
            "4",
            "--image-size",
            "64",
        ]
    )
    assert code == 0 and "4 images -> 1024-d" in capsys.readouterr().out
    features = read_features(tmp_path / "i.npz")
    assert features.values.shape == (4, 1024) and not features.is_sparse
