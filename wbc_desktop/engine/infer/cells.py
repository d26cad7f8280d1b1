"""The white cells an image holds, each cut out as a model sees it.

A lab PC may hand us single-cell crops (CellaVision, hand-cut) or whole field
photos from a microscope camera; ``auto`` tells them apart per image: an
image of at most 400 px, or with one white cell near the middle, is a crop;
anything else is a field. Every cell
keeps its box in the file's own pixels, so it can be drawn on the photo and
written to the CSV.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..data.preprocess import crop_decode_side, crop_view, load_square
from ..io.imageio import longest_side, read_rgb_scaled
from ..locate.framing import FRAMINGS, RULER_SIDE, cell_square, red_cell_ruler
from ..locate.white_cells import Localisation, LocaliserSettings, WhiteCell, find_white_cells, measure_red_cells
from .domain_check import STAIN_SIDE
from .modes import MODES, NO_WHITE_CELL

FIELD_DECODE_SIDE = 1600  # a 2048x1536 photo decodes at half size (JPEG): cells keep >= 60 px
BOX_ONLY = LocaliserSettings(work_side=96)  # 3x faster on a 224 px crop; same cell in 92 % of PBC crops
CROP_MAX_SIDE = 400  # in auto mode, an image this small is a crop: too small for a field of several cells

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class CellCut:
    """Where one classified cell lies in its file."""

    index: int  # 0-based within the image
    box: Box  # x, y, w, h in the file's pixels
    at_border: bool  # cut by a field photo's edge: counted, and flagged
    in_field: bool  # the image is a field photo, not a single-cell crop
    grey: bool = False  # the image has no stain colour (found by darkness; the model is less sure)


def cut_cells(path: str | os.PathLike, size: int, framing: str,
              mode: str = "auto") -> list[tuple[CellCut, np.ndarray, np.ndarray]]:
    """Each white cell of the file with its ``size`` x ``size`` view and
    its surroundings (``domain_check.SURROUNDINGS``: what the folder warning
    reads the stain from); an empty list where a field photo holds no white
    cell. Raises ``ImageReadError`` for a file that cannot be read."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    side = longest_side(path) if mode == "auto" else None
    if mode == "cells" or (side is not None and side <= CROP_MAX_SIDE):
        return [_crop_cut(path, size, framing)]
    rgb, scale = read_rgb_scaled(path, max_side=FIELD_DECODE_SIDE)
    found = find_white_cells(rgb)
    if mode == "auto" and found.is_single_cell_crop():
        return [_crop_cut(path, size, framing)]
    ruler = red_cell_ruler(found)
    return [(CellCut(i, _box(c, scale), c.at_border, True, found.grey), cell_square(rgb, c, framing, size, ruler),
             cell_square(rgb, c, "as_is", STAIN_SIDE)) for i, c in enumerate(_reading_order(found))]


def _crop_cut(path: str | os.PathLike, size: int, framing: str) -> tuple[CellCut, np.ndarray, np.ndarray]:
    """A single-cell crop decoded and cut exactly as ``load_square`` does
    for training: a model loses accuracy when inference decodes otherwise.
    Its surroundings are the whole crop, decoded as training decoded it."""
    rgb, scale = read_rgb_scaled(path, max_side=crop_decode_side(size, framing))
    # a crop an as-is model sees whole needs its cell's box only for the record: a coarser search is enough
    found = find_white_cells(rgb, BOX_ONLY if FRAMINGS[framing] is None else LocaliserSettings())
    cell = found.most_central()
    h, w = rgb.shape[:2]
    box = _box(cell, scale) if cell else (0, 0, round(w * scale), round(h * scale))
    return (CellCut(0, box, False, False, found.grey), crop_view(rgb, framing, size, found),  # a crop's edge is its maker's
            load_square(path, STAIN_SIDE, framing="as_is"))


def _reading_order(found: Localisation) -> list[WhiteCell]:
    """Top to bottom, left to right by rows about a cell high, so that cell
    numbers follow the photo as a person reads it."""
    if not found.cells:
        return []
    row = max(1.0, float(np.median([c.h for c in found.cells])))
    return sorted(found.cells, key=lambda c: (int(c.centre[1] // row), c.centre[0]))


def _box(cell: WhiteCell, scale: float) -> Box:
    return tuple(int(round(v * scale)) for v in cell.box)  # type: ignore[return-value]


def view_of(path: str | os.PathLike, size: int, framing: str, field_box: Box | None = None) -> np.ndarray:
    """One cell as a model sees it: a crop file, or the cell at
    ``field_box`` in a field photo (as ``cut_cells`` cut it)."""
    return views_of(path, size, framing, [field_box])[0]


def views_of(path: str | os.PathLike, size: int, framing: str, field_boxes: list[Box | None]) -> list[np.ndarray]:
    """``view_of`` for several cells of one file, decoding the file once:
    a field photo of twenty white cells is read once, not twenty times."""
    if None in field_boxes:  # a crop file: its one cell, as the model was given it
        return [load_square(path, size, framing=framing)] * len(field_boxes)
    rgb, scale = read_rgb_scaled(path, max_side=FIELD_DECODE_SIDE)
    ruler = red_cell_ruler(measure_red_cells(rgb)) if framing in RULER_SIDE else None
    return [cell_square(rgb, _cell_at(box, scale), framing, size, ruler) for box in field_boxes]


def cut_out(path: str | os.PathLike, box: Box) -> np.ndarray:
    """The cell at ``box`` of a field photo at full resolution, framed the
    way PBC frames its crops: what a class folder of single cells holds."""
    rgb, scale = read_rgb_scaled(path)
    return cell_square(rgb, _cell_at(box, scale), "as_is", None)


def _cell_at(box: Box, scale: float) -> WhiteCell:
    x, y, w, h = (v / scale for v in box)
    return WhiteCell(int(round(x)), int(round(y)), max(1, int(round(w))), max(1, int(round(h))), 1.0, False)
