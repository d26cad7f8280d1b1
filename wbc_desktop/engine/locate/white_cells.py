"""Find every white cell in an RGB image: field photo or single-cell crop.

Nuclei are the most saturated pixels of the white-balanced image
(``stain``); in a grey image, which has none, the darkest. Lobes and
fragments closer than about a third of a red cell join into one cell;
blobs smaller than a fifth of a red cell are platelets or dirt. Sizes are
in red-cell diameters (``red_cells``), so one setting serves every camera
and magnification.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .morphology import dilate, opening
from .red_cells import red_cell_diameter
from .stain import darkness, is_grey, otsu_threshold, saturation, white_balanced

LOCALISER_VERSION = "sat-otsu-v5"  # part of the decode cache key of re-cut crops
MIN_SPLIT_PIXELS = 100  # fewer pixels above the threshold than this are not split again


@dataclass(frozen=True)
class LocaliserSettings:
    """Chosen on bccd_smears and raabin_fields (training/localiser_eval.py)."""

    min_threshold: float = 0.30  # saturation below this is never nucleus, whatever Otsu says
    # the same floor on darkness in a grey image, chosen on grey copies of both
    # field sources and of four labs' crops (training/RESULTS.md, "Grey images")
    grey_min_threshold: float = 0.35
    min_contrast: float = 0.05  # a cell's mean nucleus saturation must clear the threshold by this
    # ... and this share of the way from the threshold to the one that splits
    # the pixels above it in two: where a violet stain lifts red cells above
    # the threshold, that split falls between them and the nuclei
    upper_share: float = 0.25
    min_area: float = 0.20  # nucleus area, in red-cell areas
    # a cell whose box is this many times the box of its pixels above the
    # upper split is a nucleus joined to violet red cells: its box is the
    # core's. Before, a quarter of Raabin's photos gave one box over the whole
    # photo (and the cell was cut as the whole photo); at 3 the crops of the
    # four labs keep their cut (PBC 2 of 400 change, LISC 24, BCCD and Tecom none)
    core_box_ratio: float = 3.0
    merge_distance: float = 0.35  # lobes closer than twice this (red-cell diameters) are one cell
    margin: float = 0.25  # box = nucleus box grown by this many red-cell diameters (the cytoplasm)
    work_side: int = 384  # the long side red cells are measured at, then ...
    red_cell_px: float = 24.0  # ... the search runs where a red cell is this wide (never above full size)


@dataclass(frozen=True)
class WhiteCell:
    x: int  # box in original image pixels
    y: int
    w: int
    h: int
    score: float  # mean nucleus saturation (darkness in a grey image), 0-1: ranks detections
    at_border: bool  # the nucleus touches the image edge: part of the cell is missing

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.w, self.h


@dataclass
class Localisation:
    width: int
    height: int
    red_cell_diameter: float | None  # original pixels; None where no red cell was measurable
    cells: list[WhiteCell] = field(default_factory=list)
    grey: bool = False  # no stain colour: the cells were found by their darkness

    def most_central(self) -> WhiteCell | None:
        cx, cy = self.width / 2, self.height / 2
        return min(self.cells, key=lambda c: (c.centre[0] - cx) ** 2 + (c.centre[1] - cy) ** 2, default=None)

    def is_single_cell_crop(self) -> bool:
        """One white cell whose centre lies in the middle third: a crop,
        as a CellaVision or a hand-cut image is framed."""
        if len(self.cells) != 1:
            return False
        cx, cy = self.cells[0].centre
        return abs(cx / self.width - 0.5) <= 1 / 6 and abs(cy / self.height - 0.5) <= 1 / 6


def measure_red_cells(rgb: np.ndarray, settings: LocaliserSettings = LocaliserSettings()) -> Localisation:
    """The red-cell ruler alone, without the white-cell search: what a
    framing that keeps the cell's size needs of a photo whose cells are
    already found."""
    height, width = rgb.shape[:2]
    scale = _work_scale(rgb, settings)
    diameter = _measure(rgb, scale)[3]
    return Localisation(width, height, diameter * scale if diameter is not None else None)


def _work_scale(rgb: np.ndarray, settings: LocaliserSettings) -> float:
    return max(1.0, max(rgb.shape[:2]) / settings.work_side)


def find_white_cells(rgb: np.ndarray, settings: LocaliserSettings = LocaliserSettings()) -> Localisation:
    height, width = rgb.shape[:2]
    scale = _work_scale(rgb, settings)
    small, balanced, valid, diameter = _measure(rgb, scale)
    grey = is_grey(small, valid)
    if diameter is not None:
        # every camera and magnification searched at one size of red cell: the
        # same settings fit all, and a 2048 px photo costs what a 640 px one does
        wanted = max(1.0, scale * diameter / settings.red_cell_px)
        if not 0.8 < wanted / scale < 1.25:
            small, balanced, valid, _ = _measure(rgb, wanted, with_red_cells=False)
            scale, diameter = wanted, diameter * scale / wanted
    d = diameter if diameter is not None else 0.08 * max(small.shape[:2])
    cells = [_to_original(c, scale, width, height) for c in _nuclei(balanced, valid, d, settings, grey)]
    return Localisation(width, height, diameter * scale if diameter is not None else None, cells, grey)


def _measure(rgb: np.ndarray, scale: float, with_red_cells: bool = True):
    small = rgb
    if scale > 1.0:
        h, w = rgb.shape[:2]
        small = np.asarray(Image.fromarray(rgb).resize((max(1, round(w / scale)), max(1, round(h / scale))),
                                                       Image.Resampling.BOX))
    balanced, valid = white_balanced(small)
    return small, balanced, valid, red_cell_diameter(balanced, valid) if with_red_cells else None


def _nuclei(balanced: np.ndarray, valid: np.ndarray, d: float, s: LocaliserSettings, grey: bool = False):
    """(x0, y0, x1, y1, score, at_border) per white cell, in work pixels."""
    from scipy import ndimage as ndi  # here, as in red_cells and morphology: the app's window shows 0.45 s sooner

    if not valid.any():
        return []
    sat = _grey_map(balanced, valid) if grey else saturation(balanced, valid)
    tissue = sat[valid]
    threshold = max(s.grey_min_threshold if grey else s.min_threshold, otsu_threshold(tissue))
    above = tissue[tissue > threshold]
    upper = otsu_threshold(above) if above.size >= MIN_SPLIT_PIXELS else threshold
    least_score = threshold + max(s.min_contrast, s.upper_share * (upper - threshold))
    nucleus = opening(sat > threshold)
    joined = dilate(nucleus, iterations=max(1, int(s.merge_distance * d)))
    labels, _ = ndi.label(joined)
    min_pixels = s.min_area * np.pi / 4 * d * d
    h, w = nucleus.shape
    found = []
    for i, region in enumerate(ndi.find_objects(labels), 1):
        mask = (labels[region] == i) & nucleus[region]
        if mask.sum() < min_pixels:
            continue
        score = float(sat[region][mask].mean())
        if score < least_score:
            continue
        box = _extent(mask)
        core = mask & (sat[region] >= upper)
        if core.sum() >= min_pixels / 4:
            core_box = _extent(core)
            if _area(box) > s.core_box_ratio * _area(core_box):
                box = core_box
        y0, y1, x0, x1 = box
        y0, y1, x0, x1 = y0 + region[0].start, y1 + region[0].start, x0 + region[1].start, x1 + region[1].start
        at_border = bool(x0 <= 1 or y0 <= 1 or x1 >= w - 1 or y1 >= h - 1)
        pad = s.margin * d
        found.append((max(0.0, x0 - pad), max(0.0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad), score, at_border))
    return found


def _extent(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1), ends excluded, of a mask's pixels."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _area(box: tuple[int, int, int, int]) -> int:
    return (box[1] - box[0]) * (box[3] - box[2])


def _grey_map(balanced: np.ndarray, valid: np.ndarray) -> np.ndarray:
    dark = darkness(balanced)
    dark[~valid] = 0.0
    return dark


def _to_original(found, scale: float, width: int, height: int) -> WhiteCell:
    x0, y0, x1, y1, score, at_border = found
    x, y = int(round(x0 * scale)), int(round(y0 * scale))
    return WhiteCell(x, y, max(1, min(width, int(round(x1 * scale))) - x), max(1, min(height, int(round(y1 * scale))) - y),
                     score, at_border)
