"""prnn's own files, recognised from their first bytes: what a command may replace without
destroying a file prnn did not write, and how a damaged model file is told from a foreign one.
Reads at most a small header (or a JSON report) and imports nothing heavy."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

#: the marker prnn writes into every model file's safetensors metadata (``prnn.persistence``)
MODEL_FORMAT_NAME = "prnn-model"
#: a safetensors header larger than this is not one prnn wrote (its headers are kilobytes)
_MAX_HEADER_BYTES = 100_000_000


def _read_json(path: Path) -> object:
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read(50_000_000))
    except (OSError, ValueError):
        return None


def _model_metadata(path: Path) -> dict | None:
    """The safetensors metadata of a prnn model file; None for any other file."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > _MAX_HEADER_BYTES:
                return None
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if isinstance(metadata, dict) and metadata.get("format") == MODEL_FORMAT_NAME:
        return metadata
    return None


def is_prnn_model(path: Path) -> bool:
    """A safetensors file whose metadata carries prnn's format marker."""
    return _model_metadata(path) is not None


def model_kind(path: str | Path) -> str | None:
    """The model name (``gru4rec``, ``prnn``, ...) in a prnn model file's header; None for any
    other file."""
    metadata = _model_metadata(Path(path))
    return None if metadata is None else metadata.get("model")


def is_feature_file(path: Path) -> bool:
    """A ``.npz`` of item feature rows (``item_id`` beside ``emb`` or CSR arrays)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return "item_id.npy" in names and ("emb.npy" in names or "indptr.npy" in names)


def is_evaluation_json(path: Path) -> bool:
    """Metrics written by ``prnn evaluate --json``."""
    data = _read_json(path)
    return isinstance(data, dict) and {"model", "n_events", "cutoffs"} <= data.keys()


def is_split_report(path: Path) -> bool:
    """``split.json`` written by ``prnn split``."""
    data = _read_json(path)
    return isinstance(data, dict) and {"train_events", "test_events", "split_by"} <= data.keys()


def is_experiment_report(path: Path) -> bool:
    """``results.json`` written by ``prnn experiment paper`` (a row per method) or ``prnn
    experiment baselines`` (metrics per model)."""
    data = _read_json(path)
    if isinstance(data, list):
        return bool(data) and all(isinstance(row, dict) and "method" in row for row in data)
    if isinstance(data, dict):
        return bool(data) and all(
            isinstance(row, dict) and "n_events" in row for row in data.values()
        )
    return False


#: what a training checkpoint's file name adds to its model file's (``prnn.training.checkpoint``)
CHECKPOINT_SUFFIX = ".checkpoint"


def checkpoint_path(model_path: str | Path) -> Path:
    """The checkpoint file of the training that writes ``model_path``: beside it."""
    return Path(str(model_path) + CHECKPOINT_SUFFIX)


def is_training_checkpoint(path: Path) -> bool:
    """A ``torch.save`` archive (a zip holding ``<name>/data.pkl``) under a checkpoint's name:
    what ``prnn train`` writes beside its model while it trains."""
    if not str(path).endswith(CHECKPOINT_SUFFIX):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(name.endswith("/data.pkl") for name in names)


#: the first line of a settings file written by ``prnn tune``
TUNED_CONFIG_MARKER = "# prnn tune:"


def is_tuned_config(path: Path) -> bool:
    """A TOML settings file written by ``prnn tune`` (its first line says so)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().startswith(TUNED_CONFIG_MARKER)
    except (OSError, UnicodeDecodeError):
        return False


def is_sqlite_database(path: Path) -> bool:
    """A SQLite database file (``prnn tune``'s study)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def is_synth_report(path: Path) -> bool:
    """``synth.json`` written by ``prnn synth``."""
    data = _read_json(path)
    return isinstance(data, dict) and {"spec", "events", "items"} <= data.keys()


#: the marker of a folder of prepared event arrays (``prnn.event_arrays``)
EVENT_ARRAYS_FORMAT = "prnn-event-arrays"


def is_event_arrays(path: str | Path) -> bool:
    """Whether ``path`` is a folder of event arrays written by ``prnn prepare``."""
    data = _read_json(Path(path) / "events.json") if Path(path).is_dir() else None
    return isinstance(data, dict) and data.get("format") == EVENT_ARRAYS_FORMAT
