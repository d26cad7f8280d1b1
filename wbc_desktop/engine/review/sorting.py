"""Folder batch labelling: copy (or move) images into ``<target>/<class>/``,
never overwriting, with a manifest that records every file and can undo moves.
A cell of a field photo is cut out into its own PNG: the photo itself holds
other cells and is never moved."""

from __future__ import annotations

import csv
import datetime as _dt
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

from PIL import Image

from ..infer.cells import Box, cut_out
from ..io.atomic import atomic_path
from ..io.csvio import write_csv
from ..io.imageio import ImageReadError
from ..io.files import free_name
from ..progress import CancelToken, Progress

MANIFEST_HEADER = ["source", "destination", "label", "action", "time"]


def sort_into_folders(
    items: Iterable[tuple[str, str, Box | None]], target: str | os.PathLike, move: bool = False,
    cancel: CancelToken | None = None,
) -> Iterator[Progress]:
    """Yield progress while filing ``(path, label, field_box)`` triples
    (``field_box`` None for a single-cell file). The manifest
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
        for i, (src, label, box) in enumerate(items):
            if cancel is not None and cancel.cancelled:
                break
            folder = target / label
            folder.mkdir(exist_ok=True)
            info = {"manifest": str(manifest), "source": str(src), "destination": None, "error": None}
            done = action if box is None else "cut"
            try:
                if box is None:
                    dest = free_name(folder, Path(src).name)
                    (shutil.move if move else shutil.copy2)(src, dest)
                else:
                    dest = free_name(folder, f"{Path(src).stem}_x{box[0]}_y{box[1]}.png")
                    with atomic_path(dest) as tmp:
                        Image.fromarray(cut_out(src, box)).save(tmp, format="PNG")
                rows.append([str(src), str(dest), label, done, _dt.datetime.now().isoformat(timespec="seconds")])
                message = f"{done} {Path(src).name} -> {label}/"
                info["destination"] = str(dest)
            except (OSError, ImageReadError) as exc:
                reason = exc.reason if isinstance(exc, ImageReadError) else exc.strerror or str(exc)
                rows.append([str(src), "", label, f"failed: {reason}", ""])
                message = f"could not {done} {src}: {reason}"
                info["error"] = reason
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
