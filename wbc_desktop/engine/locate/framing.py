"""A white cell cut out the way a model was trained to see it.

Crops from different labs frame a cell differently (it fills about 20 % of
a PBC crop, 90 % of a BCCD one), and a model learns the framing as much as
the cell. Cutting every cell around its detected nucleus, in training and
in inference, makes crops from any lab look alike. A model's card names
its framing, so models trained before keep theirs (``as_is``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .stain import PADDING_LEVEL, background_colour, channel_max
from .white_cells import Localisation, WhiteCell

# square side, in multiples of the detected cell's long side; ``as_is`` keeps
# a crop whole and cuts field cells the way PBC frames them; ``cell_close``:
# the cell's own box, the cut the protocol chose in use for models trained tight
FRAMINGS: dict[str, float | None] = {"as_is": None, "cell_tight": 1.25, "cell_close": 1.0, "cell_wide": 2.2,
                                     "cell_ruler": 1.25}
FIELD_SIDE = 2.2
# ``cell_ruler``: the square is at least this many red cells wide, so that a
# lymphocyte (about one red cell) stays smaller than a monocyte (about two)
RULER_SIDE = {"cell_ruler": 3.5}
# a "red cell" wider than this share of the image is the white cell of a
# tight crop (BCCD, Tecom), not a ruler: such crops fall back to the cell's size
RULER_MAX_SHARE = 0.33


def red_cell_ruler(found: Localisation) -> float | None:
    """The red-cell diameter where the image shows red cells whole."""
    d = found.red_cell_diameter
    return d if d is not None and d <= RULER_MAX_SHARE * max(found.width, found.height) else None


def cell_square(rgb: np.ndarray, cell: WhiteCell, framing: str, size: int | None,
                ruler: float | None = None) -> np.ndarray:
    """The square around ``cell``, ``size`` pixels wide (None: at the
    image's own resolution); where the square leaves the image it shows bare
    slide, never black. ``ruler`` (a red cell's diameter in ``rgb``'s
    pixels) sets a floor on the side for framings that keep the cell's size."""
    factor = FRAMINGS[framing] or FIELD_SIDE
    side = factor * max(cell.w, cell.h)
    if ruler is not None and framing in RULER_SIDE:
        side = max(side, RULER_SIDE[framing] * ruler)
    side = max(2, int(round(side)))
    cx, cy = cell.centre
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    h, w = rgb.shape[:2]
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if (sx0, sy0, sx1, sy1) == (x0, y0, x0 + side, y0 + side):
        square = rgb[sy0:sy1, sx0:sx1]
    else:
        valid = channel_max(rgb) > PADDING_LEVEL
        fill = background_colour(rgb, valid) if valid.any() else np.zeros(3)
        square = np.empty((side, side, 3), np.uint8)
        square[:] = np.round(fill).astype(np.uint8)
        square[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    im = Image.fromarray(np.ascontiguousarray(square))
    if size is not None and side != size:
        im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(im, dtype=np.uint8)

