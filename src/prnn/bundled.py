"""Where the data bundled with the package lies (``src/prnn/example_data``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

EXAMPLE_EVENTS = "rsc15_sample.csv.gz"


def example_data_folder() -> Path:
    return Path(str(resources.files("prnn") / "example_data"))


def example_events_path() -> Path:
    """The click log bundled with the package (a sample of YooChoose RSC15 sessions)."""
    return example_data_folder() / EXAMPLE_EVENTS


def example_toys_folder() -> Path:
    """The bundled Amazon Toys sample: user histories (``sequences.csv.gz``), item titles
    (``items.csv.gz``), CLIP image vectors (``clip_image.npz``) and photos (``photos.zip``)."""
    return example_data_folder() / "toys_sample"
