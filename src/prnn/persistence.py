"""Saving and loading models: one safetensors file, tensors plus JSON metadata, written atomically.

A model file holds the model's tensors, its vocabulary (item ids and counts) and, in the
safetensors header, JSON metadata: the format name and version, the model name and its config.
Nothing is pickled, so loading runs no code from the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from prnn.atomic import atomic_path
from prnn.data import Vocabulary
from prnn.errors import ModelFormatError
from prnn.file_kinds import MODEL_FORMAT_NAME, is_prnn_model

FORMAT_NAME = MODEL_FORMAT_NAME
FORMAT_VERSION = 1
_VOCAB_PREFIX = "vocabulary."


def vocabulary_to_tensors(vocabulary: Vocabulary) -> dict[str, torch.Tensor]:
    """Item ids as int64, or as UTF-8 bytes plus offsets when they are strings."""
    tensors = {"counts": torch.from_numpy(vocabulary.counts.astype(np.int64))}
    if vocabulary.ids_are_strings:
        encoded = [str(item).encode("utf-8") for item in vocabulary.item_ids.tolist()]
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
        tensors["id_offsets"] = torch.from_numpy(np.r_[0, np.cumsum(lengths)].astype(np.int64))
        tensors["id_bytes"] = torch.from_numpy(
            np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        )
    else:
        tensors["ids"] = torch.from_numpy(vocabulary.item_ids.astype(np.int64))
    return {_VOCAB_PREFIX + key: value for key, value in tensors.items()}


def vocabulary_from_tensors(tensors: dict[str, torch.Tensor]) -> Vocabulary:
    counts = tensors[_VOCAB_PREFIX + "counts"].numpy()
    if _VOCAB_PREFIX + "ids" in tensors:
        item_ids = tensors[_VOCAB_PREFIX + "ids"].numpy()
    else:
        raw = tensors[_VOCAB_PREFIX + "id_bytes"].numpy().tobytes()
        offsets = tensors[_VOCAB_PREFIX + "id_offsets"].numpy()
        item_ids = np.array(
            [raw[start:end].decode("utf-8") for start, end in zip(offsets[:-1], offsets[1:])],
            dtype=str,
        )
    return Vocabulary(item_ids=item_ids, counts=counts)


def write_model_file(
    path: str | os.PathLike,
    model_name: str,
    config: dict[str, Any],
    vocabulary: Vocabulary,
    tensors: dict[str, torch.Tensor],
) -> None:
    """Write one model file atomically."""
    everything = {key: value.contiguous() for key, value in tensors.items()}
    everything.update(vocabulary_to_tensors(vocabulary))
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "model": model_name,
        "config": json.dumps(config, sort_keys=True),
    }
    with atomic_path(path) as temp:
        save_file(everything, str(temp), metadata=metadata)


def _unreadable_model_message(path: Path, error: Exception) -> str:
    """Why ``path`` cannot be read as a model: a prnn model cut short or damaged (its header
    names prnn, its tensors are incomplete), or not a prnn model at all."""
    if is_prnn_model(path):
        return (
            f"{path}: a prnn model file that is truncated or corrupt ({error}); "
            "train or copy it again"
        )
    return f"{path}: not a prnn model (not a complete safetensors file: {error})"


def read_model_file(
    path: str | os.PathLike,
) -> tuple[str, dict[str, Any], Vocabulary, dict[str, torch.Tensor]]:
    """Read a model file; returns (model name, config dict, vocabulary, model tensors).

    Raises:
        ModelFormatError: the file is missing, not a prnn model, or of a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != FORMAT_NAME:
                raise ModelFormatError(f"{path}: not a prnn model (no prnn format marker)")
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        if isinstance(exc, ModelFormatError):
            raise
        raise ModelFormatError(_unreadable_model_message(path, exc)) from None
    raw_version = metadata.get("format_version", "0")
    try:
        version = int(raw_version)
    except ValueError:
        raise ModelFormatError(
            f"{path}: format_version {raw_version!r} in its metadata is not a number; expected "
            f"an integer such as {FORMAT_VERSION}"
        ) from None
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path}: model format version {version} is newer than this prnn reads "
            f"({FORMAT_VERSION}); upgrade prnn"
        )
    try:
        config = json.loads(metadata["config"])
        model_name = metadata["model"]
    except (KeyError, json.JSONDecodeError):
        raise ModelFormatError(f"{path}: prnn model metadata is incomplete") from None
    vocabulary = vocabulary_from_tensors(tensors)
    model_tensors = {k: v for k, v in tensors.items() if not k.startswith(_VOCAB_PREFIX)}
    return model_name, config, vocabulary, model_tensors
