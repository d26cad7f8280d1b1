"""Leave-one-source-out table of the white-cell localiser.

    python training/localiser_eval.py            # markdown table to stdout, rows to runs/localiser_eval.jsonl

Two sources of field photos with white-cell boxes: bccd_smears (364 BCCD
photos, VOC boxes) and raabin_fields (500 Raabin-WBC images, YOLO boxes).
Each method's free settings are chosen on one source (best recall, then
precision, over a small grid) and scored on the other, so every figure is
on photos the choice never saw. A white cell counts as found when a
detected cell's centre lies inside its box (``locate.annotations``).

Methods:
- ``saturation``: the shipped nucleus map (HSV saturation of the
  white-balanced photo, ``locate.stain``);
- ``red_od``: the same search on the red channel's optical density, the
  classic nucleus map;
- ``saturation+logistic``: looser saturation candidates, kept or dropped by
  a logistic regression on their features, fitted on the other source;
- ``shipped``: the shipped settings (chosen looking at both sources, so its
  row is not leave-one-source-out); also on grey copies of the photos,
  where the search reads darkness instead of saturation.

Raabin's boxes were made semi-automatically: some red cells are boxed as
white ones and a few white cells have no box. ``central recall`` counts only
the box nearest the photo's centre (each Raabin image was taken of one
white cell), which those errors rarely touch.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wbc_desktop.engine.locate import white_cells  # noqa: E402
from wbc_desktop.engine.locate.annotations import DetectionCount, read_voc, read_yolo  # noqa: E402
from wbc_desktop.engine.locate.white_cells import LocaliserSettings, find_white_cells  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
GRID = {"min_threshold": (0.25, 0.30, 0.35), "min_area": (0.1, 0.2), "min_contrast": (0.0, 0.05)}
UPPER_SHARES = (0.0, 0.25, 0.5)  # chosen after the grid, at its chosen point: it only drops detections


def load_source(name: str) -> list[tuple[np.ndarray, list]]:
    root = DATASETS / name
    if name == "bccd_smears":
        photos = sorted((root / "BCCD" / "JPEGImages").glob("*.jpg"))
        boxes = [read_voc(root / "BCCD" / "Annotations" / f"{p.stem}.xml") for p in photos]
    else:
        photos = sorted((root / "images").glob("*/*.jpg"))
        boxes = [read_yolo(root / "labels" / p.parent.name / f"{p.stem}.txt", 575, 575) for p in photos]
    return [(np.asarray(Image.open(p).convert("RGB")), b) for p, b in zip(photos, boxes)]


def grey_copies(photos):
    """The photos as a monochrome camera would give them: the search reads darkness there."""
    return [(np.asarray(Image.fromarray(rgb).convert("L").convert("RGB")), boxes) for rgb, boxes in photos]


def red_od(balanced: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Optical density of the red channel, scaled to the saturation's 0-1 range."""
    od = -np.log(np.clip((balanced[..., 0] + 1.0) / 256.0, 1e-3, 1.0)) / 1.5
    od[~valid] = 0.0
    return od


def detect(photos, settings: LocaliserSettings, nucleus_map=None) -> list[list]:
    """Each photo's detected cells, with the nucleus map swapped for the search where asked."""
    original = white_cells.saturation
    if nucleus_map is not None:
        white_cells.saturation = nucleus_map
    try:
        return [find_white_cells(rgb, settings).cells for rgb, _ in photos]
    finally:
        white_cells.saturation = original


def score(photos, detections) -> dict:
    every, central = DetectionCount(), DetectionCount()
    for (rgb, truth), cells in zip(photos, detections):
        centres = [c.centre for c in cells]
        every.add(centres, truth)
        if truth:
            h, w = rgb.shape[:2]
            middle = min(truth, key=lambda b: ((b[0] + b[2]) / 2 - w / 2) ** 2 + ((b[1] + b[3]) / 2 - h / 2) ** 2)
            hits = DetectionCount()
            hits.add(centres, [middle])
            central.found += hits.found
            central.missed += hits.missed
    return {"recall": round(every.recall, 4), "precision": round(every.precision, 4),
            "central_recall": round(central.recall, 4), "found": every.found, "extra": every.extra,
            "missed": every.missed}


def choose(photos, nucleus_map=None) -> LocaliserSettings:
    """The grid point with the best recall, then precision, on ``photos``;
    then, at that point, the ``upper_share`` the same way (ties: the
    smaller share, the one that drops less)."""
    def key(settings):
        s = score(photos, detect(photos, settings, nucleus_map))
        return round(s["recall"], 2), s["precision"]

    points = [replace(LocaliserSettings(), **dict(zip(GRID, values))) for values in itertools.product(*GRID.values())]
    best = max(points, key=key)  # max keeps the first of equals
    return max((replace(best, upper_share=share) for share in UPPER_SHARES), key=key)


def logistic_rows(photos, settings: LocaliserSettings):
    """Per candidate: features (log area in red-cell areas is implicit in the
    box, so: box side / red-cell diameter, score, border) and whether it hits a box."""
    x, y, where = [], [], []
    for i, (rgb, truth) in enumerate(photos):
        found = find_white_cells(rgb, settings)
        d = found.red_cell_diameter or 0.08 * max(rgb.shape[:2])
        for c in found.cells:
            cx, cy = c.centre
            x.append([np.log(c.w / d), np.log(c.h / d), c.score, float(c.at_border)])
            y.append(any(x0 <= cx <= x1 and y0 <= cy <= y1 for x0, y0, x1, y1 in truth))
            where.append((i, c))
    return np.asarray(x), np.asarray(y), where


def logistic_fold(train, test) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    loose = replace(LocaliserSettings(), min_threshold=0.25, min_area=0.05, min_contrast=0.0)
    xt, yt, _ = logistic_rows(train, loose)
    clf = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000)).fit(xt, yt)
    xs, _, where = logistic_rows(test, loose)
    keep = clf.predict_proba(xs)[:, 1] >= 0.5
    detections = [[] for _ in test]
    for (i, cell), k in zip(where, keep):
        if k:
            detections[i].append(cell)
    return score(test, detections)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "training" / "runs" / "localiser_eval.jsonl"))
    args = ap.parse_args()
    sources = {name: load_source(name) for name in ("bccd_smears", "raabin_fields")}
    rows = []
    for train_name, test_name in itertools.permutations(sources, 2):
        train, test = sources[train_name], sources[test_name]
        for method, nucleus_map in (("saturation", None), ("red_od", red_od)):
            settings = choose(train, nucleus_map)
            t0 = time.perf_counter()
            result = score(test, detect(test, settings, nucleus_map))
            ms = (time.perf_counter() - t0) / len(test) * 1000
            rows.append({"method": method, "chosen_on": train_name, "tested_on": test_name, **result,
                         "ms_per_photo": round(ms, 1),
                         "settings": {k: getattr(settings, k) for k in (*GRID, "upper_share")}})
        rows.append({"method": "saturation+logistic", "chosen_on": train_name, "tested_on": test_name,
                     **logistic_fold(train, test)})
    for name, photos in sources.items():
        for method, shown in (("shipped", photos), ("shipped, grey copies", grey_copies(photos))):
            t0 = time.perf_counter()
            result = score(shown, detect(shown, LocaliserSettings()))
            rows.append({"method": method, "chosen_on": "both", "tested_on": name, **result,
                         "ms_per_photo": round((time.perf_counter() - t0) / len(photos) * 1000, 1)})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print("| method | chosen on | tested on | recall | precision | central recall | found / extra / missed | ms per photo |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['chosen_on']} | {r['tested_on']} | {r['recall']:.3f} | {r['precision']:.3f} | "
              f"{r['central_recall']:.3f} | {r['found']} / {r['extra']} / {r['missed']} | {r.get('ms_per_photo', '')} |")


if __name__ == "__main__":
    main()
