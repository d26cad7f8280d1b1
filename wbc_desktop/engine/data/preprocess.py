"""Geometry shared by training and inference: a crop re-cut around its white
cell (the model's ``framing``), resized with the aspect ratio kept and padded
to a square. Pixel scaling lives inside the model itself, so a
model file always gets the uint8 pixels it was trained on."""

from __future__ import annotations

import os
from typing import BinaryIO

import numpy as np
from PIL import Image

from ..io.imageio import read_rgb
from ..locate.framing import FRAMINGS, cell_square, red_cell_ruler
from ..locate.white_cells import Localisation, find_white_cells

RESIZE_METHOD = "jpeg-dct-fit-pad-border-median"
FRAMED_DECODE_SIDE = 512  # a re-cut crop zooms in up to 2x: decode with pixels to spare


def fit_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Scale the long side to ``size`` and pad the short side with the
    median border colour, which is the smear background for cell crops."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    im = Image.fromarray(rgb)
    if (new_w, new_h) != (w, h):
        im = im.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if new_w == new_h == size:
        return np.asarray(im, dtype=np.uint8)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    fill = tuple(int(v) for v in np.median(border, axis=0))
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(im, ((size - new_w) // 2, (size - new_h) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def crop_view(rgb: np.ndarray, framing: str, size: int, localisation: Localisation | None = None) -> np.ndarray:
    """A single-cell crop as a model with this ``framing`` sees it: re-cut
    around its most central white cell, or whole where the framing is
    ``as_is`` or no white cell is found."""
    if FRAMINGS[framing] is not None:
        found = localisation or find_white_cells(rgb)
        cell = found.most_central()
        if cell is not None:
            return cell_square(rgb, cell, framing, size, red_cell_ruler(found))
    return fit_square(rgb, size)


def load_square(path: str | os.PathLike, size: int, data: BinaryIO | None = None, framing: str = "as_is") -> np.ndarray:
    """A file as the model sees it: training, inference, thumbnails and
    reports all go through here, so they can never disagree.

    JPEGs are decoded already scaled down in the DCT (to no less than
    ``size``): 2.4x faster than a full decode, which is what bounds a small
    model's throughput. Models must be trained on this same decode: the
    shipped model lost 0.3 points when only inference used it."""
    return crop_view(read_rgb(path, max_side=crop_decode_side(size, framing), data=data), framing, size)


def crop_decode_side(size: int, framing: str) -> int:
    """How large a crop is decoded: just above the model's input where it
    sees the crop whole, larger where the cell is cut out of it first."""
    return size if FRAMINGS[framing] is None else max(size, FRAMED_DECODE_SIDE)
