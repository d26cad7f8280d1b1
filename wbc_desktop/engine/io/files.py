"""File names that never overwrite what a user already has, and outputs
checked before the work that fills them, so a long job never ends in an
unwritable file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def free_name(folder: Path, name: str) -> Path:
    """``name`` in ``folder``, or ``stem (2).ext`` … when it is taken."""
    candidate = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 2
    while candidate.exists():
        candidate = folder / f"{stem} ({n}){suffix}"
        n += 1
    return candidate


class OutputError(ValueError):
    """An output that cannot be written: found before any work is done."""


def check_output_file(path: str | os.PathLike, suffixes: tuple[str, ...]) -> Path:
    """``path`` can be written as a new or replaced file of one of ``suffixes``."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise OutputError(f"{path}: the file must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, not a file")
    _probe(path.parent if str(path.parent) else Path("."), path)
    return path


def check_output_folder(path: str | os.PathLike) -> Path:
    """``path`` exists as a folder (made if needed) in which files can be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create this folder ({exc.strerror or exc})") from None
    _probe(path, path)
    return path


def _probe(folder: Path, named: Path) -> None:
    if not folder.is_dir():
        raise OutputError(f"{named}: the folder {folder} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".wbc-write-test-"):
            pass
    except OSError as exc:
        raise OutputError(f"{named}: cannot write in {folder} ({exc.strerror or exc})") from None
