"""The red-cell diameter of a smear photo: a ruler (about 7.5 µm) present in
almost every field, so that sizes can be judged without knowing the camera."""

from __future__ import annotations

import numpy as np

from .morphology import fill_holes, opening
from .stain import darkness, otsu_threshold

MIN_RADIUS_PX = 2.0


def red_cell_diameter(balanced: np.ndarray, valid: np.ndarray) -> float | None:
    """Twice the area-weighted median of each blob's largest inscribed
    radius. Touching red cells form one blob, yet its inscribed circle is
    still about one cell wide, so crowded smears measure right; pale centres
    are filled first. None when nothing cell-like is visible."""
    from scipy import ndimage as ndi

    dark = darkness(balanced)
    if not valid.any():
        return None
    foreground = (dark > max(0.04, otsu_threshold(dark[valid]))) & valid
    foreground = fill_holes(opening(foreground))
    labels, n = ndi.label(foreground)
    if n == 0:
        return None
    index = np.arange(1, n + 1)
    radius = np.zeros(n + 1)  # each blob's largest inscribed radius (ndi.maximum sorts every pixel: 3x slower)
    np.maximum.at(radius, labels[foreground], ndi.distance_transform_edt(foreground)[foreground])
    radius = radius[1:]
    area = np.asarray(ndi.sum(foreground, labels, index))
    keep = radius >= MIN_RADIUS_PX
    if not keep.any():
        return None
    radius, area = radius[keep], area[keep]
    order = np.argsort(radius)
    cumulative = np.cumsum(area[order])
    return 2.0 * float(radius[order][np.searchsorted(cumulative, cumulative[-1] / 2)])
