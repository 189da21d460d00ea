"""Image features: a CNN's last average-pooling output for each item image, scaled to unit length.

The p-RNN paper used GoogLeNet pretrained on ImageNet (1024 values from its last average-pooling
layer). torchvision's wheels do not load beside this project's pinned torch build, so GoogLeNet
is defined here with torchvision's module and parameter names: torchvision's ImageNet weights
file (``googlenet-1378be20.pth``) loads into it unchanged, from ``--weights`` or from the torch
hub cache. Other torchvision backbones are used when torchvision itself is importable.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from prnn.errors import ConfigError, DataError
from prnn.progress import progress_bar

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")
TORCHVISION_GOOGLENET_FILE = "googlenet-1378be20.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        # torchvision's GoogLeNet uses 3x3 here (not the paper's 5x5); its weights need it
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNetFeatures(nn.Module):
    """GoogLeNet up to its last average pooling: (B, 3, H, W) ImageNet-normalised -> (B, 1024)."""

    def __init__(self, transform_input: bool = True) -> None:
        super().__init__()
        self.transform_input = transform_input
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transform_input:
            # torchvision's ImageNet weights expect Google's (x - 0.5) / 0.5 input scaling
            channels = [
                x[:, c : c + 1] * (IMAGENET_STD[c] / 0.5) + (IMAGENET_MEAN[c] - 0.5) / 0.5
                for c in range(3)
            ]
            x = torch.cat(channels, 1)
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        for block in (self.inception4a, self.inception4b, self.inception4c, self.inception4d):
            x = block(x)
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        return torch.flatten(self.avgpool(x), 1)


def _torch_hub_weights() -> Path | None:
    home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    path = home / "hub" / "checkpoints" / TORCHVISION_GOOGLENET_FILE
    return path if path.exists() else None


def build_backbone(name: str, weights: str | None, random_seed: int | None) -> nn.Module:
    """The feature extractor, in eval mode. ``weights``: a state-dict file; ``random_seed``:
    random weights (for tests); neither: torchvision's ImageNet weights from the hub cache."""
    if name != "googlenet":
        try:
            import torchvision
        except Exception as exc:  # the wheel may fail to load its ops beside this torch
            raise ConfigError(
                f"backbone {name!r} needs torchvision, which cannot be imported here ({exc}); "
                "the built-in backbone is googlenet"
            ) from None
        model = torchvision.models.get_model(name, weights="DEFAULT" if weights is None else None)
        model.fc = nn.Identity()
        if weights:
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return model.eval()
    if random_seed is not None:
        with torch.random.fork_rng():  # seeded init without touching the caller's RNG state
            torch.manual_seed(random_seed)
            return GoogLeNetFeatures(transform_input=False).eval()
    path = Path(weights) if weights else _torch_hub_weights()
    if path is None:
        raise ConfigError(
            "no GoogLeNet weights: pass --weights FILE (torchvision's "
            f"{TORCHVISION_GOOGLENET_FILE}) or put it in the torch hub cache"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{path}: cannot be loaded as a weights file ({exc})") from None
    model = GoogLeNetFeatures(transform_input=True)
    wanted = set(model.state_dict())
    missing = sorted(wanted - set(state))
    if missing:
        raise DataError(f"{path}: not GoogLeNet weights; missing {missing[:3]} and others")
    model.load_state_dict({k: v for k, v in state.items() if k in wanted})
    return model.eval()


def iter_images(source: str | os.PathLike, limit: int | None = None) -> Iterator[tuple[str, bytes]]:
    """(item id, image bytes) from a folder or a zip of files named by item id."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: no such image folder or zip")
    count = 0
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in files:
            if limit is not None and count >= limit:
                return
            yield path.stem, path.read_bytes()
            count += 1
        return
    try:
        with zipfile.ZipFile(source) as archive:
            names = sorted(
                n for n in archive.namelist() if Path(n).suffix.lower() in IMAGE_SUFFIXES
            )
            for name in names:
                if limit is not None and count >= limit:
                    return
                yield Path(name).stem, archive.read(name)
                count += 1
    except zipfile.BadZipFile:
        raise DataError(f"{source}: neither a folder nor a zip of images") from None


def _to_tensor(data: bytes, size: int, item: str) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        image = (
            Image.open(io.BytesIO(data))
            .convert("RGB")
            .resize((size, size), Image.Resampling.BILINEAR)
        )
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"image of item {item!r} cannot be decoded ({exc})") from None
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (pixels - mean) / std


@torch.no_grad()
def image_features(
    source: str | os.PathLike,
    *,
    backbone: str = "googlenet",
    weights: str | None = None,
    random_seed: int | None = None,
    batch_size: int = 64,
    image_size: int = 224,
    limit: int | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(item ids, (N, D) float32 unit-length vectors) for the images of a folder or zip."""
    model = build_backbone(backbone, weights, random_seed)
    ids: list[str] = []
    vectors: list[np.ndarray] = []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        output = model(torch.stack(batch))
        vectors.append(F.normalize(output, dim=1).numpy())
        batch.clear()

    for item, data in progress_bar(
        iter_images(source, limit), desc="images", unit="img", enabled=progress
    ):
        ids.append(item)
        batch.append(_to_tensor(data, image_size, item))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not ids:
        raise DataError(f"{source}: no images found ({', '.join(IMAGE_SUFFIXES)})")
    return np.array(ids), np.concatenate(vectors).astype(np.float32)
