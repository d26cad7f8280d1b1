"""File names that never overwrite what a user already has."""

from __future__ import annotations

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
