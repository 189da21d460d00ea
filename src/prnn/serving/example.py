"""The example model ``prnn serve`` serves when given none: a p-RNN with CLIP image features
trained on the bundled Amazon Toys sample, at the main job's base settings. It is trained on
first use (about 10 s on 2 cores) and kept in the cache folder (``PRNN_CACHE``, default
``~/.cache/prnn``), so that the repository ships data, not a trained binary."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prnn import __version__

log = logging.getLogger("prnn.serving")

#: environment variable naming the folder of the cached example model
CACHE_VAR = "PRNN_CACHE"


def cache_folder() -> Path:
    return Path(os.environ.get(CACHE_VAR) or Path.home() / ".cache" / "prnn")


def example_model_path(*, progress: bool = False) -> Path:
    """The cached example model, trained now if it is not there yet."""
    path = cache_folder() / f"example-prnn-image-{__version__}.prnn"
    if path.is_file():
        return path
    from prnn.bundled import example_toys_folder
    from prnn.data import read_events
    from prnn.experiment import PAPER_BASE_SETTINGS
    from prnn.features import read_features
    from prnn.models import PRNN

    folder = example_toys_folder()
    log.info("training the example model on the bundled Toys sample, once (about 10 s): %s", path)
    events = read_events(folder / "sequences.csv.gz", session_col="seq_id", time_col="none")
    model = PRNN(**PAPER_BASE_SETTINGS, n_epochs=10)
    model.fit(
        events, features={"image": read_features(folder / "clip_image.npz")}, progress=progress
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def example_catalogue() -> tuple[str, str]:
    """The bundled sample's item table (titles) and photos, for the demo page."""
    from prnn.bundled import example_toys_folder

    folder = example_toys_folder()
    return str(folder / "items.csv.gz"), str(folder / "photos.zip")
