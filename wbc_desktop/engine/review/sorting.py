"""Folder batch labelling: copy (or move) images into ``<target>/<class>/``,
never overwriting, with a manifest that records every file and can undo moves."""

from __future__ import annotations

import csv
import datetime as _dt
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

from ..io.csvio import write_csv
from ..io.files import free_name
from ..progress import CancelToken, Progress

MANIFEST_HEADER = ["source", "destination", "label", "action", "time"]


def sort_into_folders(
    items: Iterable[tuple[str, str]], target: str | os.PathLike, move: bool = False, cancel: CancelToken | None = None,
) -> Iterator[Progress]:
    """Yield progress while filing ``(path, label)`` pairs. The manifest
    (``sorted_<time>.csv`` in ``target``) lists what was done, also after a
    cancel or a failure part-way."""
    items = list(items)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    manifest = free_name(target, f"sorted_{stamp}.csv")
    rows: list[list[str]] = []
    action = "move" if move else "copy"
    try:
        for i, (src, label) in enumerate(items):
            if cancel is not None and cancel.cancelled:
                break
            folder = target / label
            folder.mkdir(exist_ok=True)
            dest = free_name(folder, Path(src).name)
            info = {"manifest": str(manifest), "source": str(src), "destination": None, "error": None}
            try:
                (shutil.move if move else shutil.copy2)(src, dest)
                rows.append([str(src), str(dest), label, action, _dt.datetime.now().isoformat(timespec="seconds")])
                message = f"{action} {Path(src).name} -> {label}/"
                info["destination"] = str(dest)
            except OSError as exc:
                rows.append([str(src), "", label, f"failed: {exc.strerror or exc}", ""])
                message = f"could not {action} {src}: {exc.strerror or exc}"
                info["error"] = exc.strerror or str(exc)
            yield Progress("sort", i + 1, len(items), message, info)
    finally:
        write_csv(manifest, MANIFEST_HEADER, rows)


def undo_moves(manifest: str | os.PathLike) -> Iterator[Progress]:
    """Move files listed as moved back where they came from, unless that
    place is taken again (then they stay, reported)."""
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["action"] == "move"]
    for i, r in enumerate(rows):
        src, dest = Path(r["source"]), Path(r["destination"])
        info = {"source": str(src), "destination": str(dest), "error": None}
        if src.exists():
            info["error"] = f"not restored, {src} exists again"
        elif not dest.exists():
            info["error"] = f"not restored, {dest} is gone"
        else:
            try:
                src.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(dest, src)
            except OSError as exc:
                info["error"] = f"not restored: {exc.strerror or exc}"
        yield Progress("undo", i + 1, len(rows), info["error"] or f"restored {src.name}", info)
