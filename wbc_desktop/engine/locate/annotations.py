"""White-cell boxes drawn by people, and the rule that scores a localiser
against them: a white cell counts as found when a detected cell's centre
lies inside its box; each true box is found at most once, so a cell found
twice costs precision."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

Corners = tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels

WHITE_CELL_NAMES = ("WBC",)


def read_voc(path: str | os.PathLike, names: Sequence[str] = WHITE_CELL_NAMES) -> list[Corners]:
    """Boxes of the named objects in a Pascal VOC ``.xml`` file."""
    boxes = []
    for obj in ET.parse(path).getroot().iter("object"):
        if obj.findtext("name") in names:
            b = obj.find("bndbox")
            boxes.append(tuple(float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")))
    return boxes  # type: ignore[return-value]


def read_yolo(path: str | os.PathLike, width: int, height: int, class_ids: Sequence[int] = (0,)) -> list[Corners]:
    """Boxes of the given classes in a YOLO ``.txt`` (``class cx cy w h``,
    normalised); a missing file means no boxes."""
    path = Path(path)
    if not path.exists():
        return []
    boxes = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 5 and int(float(parts[0])) in class_ids:
            cx, cy, w, h = (float(v) for v in parts[1:])
            boxes.append(((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height))
    return boxes


@dataclass
class DetectionCount:
    found: int = 0  # true boxes hit
    extra: int = 0  # detections that hit no box (or a box already hit)
    missed: int = 0  # true boxes not hit

    def add(self, centres: Iterable[tuple[float, float]], truth: Sequence[Corners]) -> None:
        hit = [False] * len(truth)
        for cx, cy in centres:
            j = next((j for j, (x0, y0, x1, y1) in enumerate(truth)
                      if not hit[j] and x0 <= cx <= x1 and y0 <= cy <= y1), None)
            if j is None:
                self.extra += 1
            else:
                hit[j] = True
                self.found += 1
        self.missed += hit.count(False)

    @property
    def recall(self) -> float:
        return self.found / max(1, self.found + self.missed)

    @property
    def precision(self) -> float:
        return self.found / max(1, self.found + self.extra)
