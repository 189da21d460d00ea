"""Where commands read and write: inputs checked before any work starts, outputs that never
destroy a file prnn did not write.

An output path that exists is replaced only when it is what the same command wrote before (a
prnn model for ``train``, a feature file for ``features``, a split for ``split``, a report for
``experiment``, metrics for ``evaluate --json``), or with ``--force``. Everything here reads at
most a file's first bytes and imports nothing heavy: the checks run before a model is built.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from prnn.errors import ConfigError

#: says whether a file is an earlier output of a command
Recogniser = Callable[[Path], bool]

# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def _refuse(flag: str, target: Path, what: str) -> ConfigError:
    return ConfigError(
        f"{flag} {target}: exists and is not {what}; refusing to overwrite it "
        "(choose another name, or pass --force to replace it)"
    )


def _check_writable_folder(folder: Path, flag: str, target: Path) -> None:
    """Create ``folder`` if missing and check that a file can be written in it."""
    existing = next(parent for parent in (folder, *folder.parents) if parent.exists())
    if not existing.is_dir():
        raise ConfigError(f"{flag} {target}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{flag} {target}: cannot write in folder {folder} ({exc.strerror or exc})"
        ) from None


def output_file(
    path: str | os.PathLike,
    flag: str,
    *,
    previous: Recogniser | None = None,
    what: str = "",
    force: bool = False,
) -> Path:
    """``path`` as a Path, after checking that it may be written: not a folder, its folder
    writable (missing folders are created), and, if it exists, ``previous(path)`` says it is an
    earlier output of the same command (``what`` names such a file in the error) or ``force``."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder; expected a file name")
    if (path.exists() or path.is_symlink()) and not force:
        if previous is None or not previous(path):
            raise _refuse(flag, path, what or "a file this command wrote")
    _check_writable_folder(path.parent, flag, path)
    return path


def output_folder(
    path: str | os.PathLike,
    flag: str,
    *,
    outputs: tuple[str, ...] = (),
    marker: tuple[str, Recogniser] | None = None,
    what: str = "",
    force: bool = False,
) -> Path:
    """Folder ``path``, created if missing, after checking files can be written in it and that
    none of the ``outputs`` (file names) the command will write there would destroy a file it
    did not write: each may exist only if the folder holds the command's earlier output
    (``marker``: a file name and its recogniser), or with ``force``."""
    path = Path(path)
    _check_writable_folder(path, flag, path)
    existing = [name for name in outputs if (path / name).exists() or (path / name).is_symlink()]
    if existing and not force:
        for name in existing:
            if (path / name).is_dir():
                raise ConfigError(f"{flag} {path}: {path / name} is a folder; expected a file")
        earlier = marker is not None and marker[1](path / marker[0])
        if not earlier:
            raise _refuse(flag, path / existing[0], what or "an earlier output of this command")
    return path


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _where(flag: str, path: Path) -> str:
    """How an error names an input: ``--valid v.csv``, ``--features image=x.npz`` or the path."""
    if not flag:
        return str(path)
    return f"{flag}{path}" if flag.endswith("=") else f"{flag} {path}"


def input_file(path: str | os.PathLike, flag: str, what: str = "file") -> Path:
    """``path``, checked to be a readable file (``flag`` and ``what`` name it in the error)."""
    path = Path(path)
    where = _where(flag, path)
    if not path.exists():
        raise ConfigError(f"{where}: no such {what}")
    if path.is_dir():
        raise ConfigError(f"{where}: is a folder; expected a {what}")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{where}: cannot read this {what} (permission denied)")
    return path


def input_events(path: str | os.PathLike, flag: str, what: str = "event file") -> Path:
    """``path``, checked to be a readable click log: a file, or a folder of event arrays
    written by ``prnn prepare``."""
    from prnn.file_kinds import is_event_arrays

    path = Path(path)
    if path.is_dir():
        if not is_event_arrays(path):
            raise ConfigError(
                f"{_where(flag, path)}: is a folder that prnn prepare did not write (expected "
                f"the {what}: a file, or a folder of prepared event arrays)"
            )
        return path
    return input_file(path, flag, what)


def input_path(path: str | os.PathLike, flag: str, what: str) -> Path:
    """``path``, checked to exist and be readable, file or folder (e.g. a folder of images)."""
    path = Path(path)
    where = _where(flag, path)
    if not path.exists():
        raise ConfigError(f"{where}: no such {what}")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{where}: cannot read this {what} (permission denied)")
    return path
