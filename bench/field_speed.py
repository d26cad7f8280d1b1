"""Field photos: time to find the white cells in a 640x480 and in a
2048x1536 photo, the localiser's peak memory, and end-to-end cells per second
on field photos with the shipped model (4 views, the default), as a ratio to
its bare forward pass on the same cells measured in the same run.

The photos are generated (tests/synth.py: red cells, platelets, 4 white
cells each), saved as JPEG at quality 92 as a camera would."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import ROOT, run_child

CELLS = [("neutrophil", 0.2, 0.25), ("lymphocyte", 0.55, 0.6), ("eosinophil", 0.8, 0.3), ("monocyte", 0.35, 0.8)]

MEMORY = """
import numpy as np
from PIL import Image
from wbc_desktop.engine.locate.white_cells import find_white_cells
rgb = np.asarray(Image.open({path!r}).convert('RGB'))
if {localise}:
    RESULT['cells'] = len(find_white_cells(rgb).cells)
"""


def make_fields(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    sys.path.insert(0, str(ROOT / "tests"))
    from synth import field_image

    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    scale = w / 640
    files = []
    for i in range(n):
        photo, _ = field_image([(c, int(x * w), int(y * h)) for c, x, y in CELLS], size=size, seed=seed + i,
                               red_cells=int(60 * (w * h) / (640 * 480) / scale ** 2), scale=scale)
        path = folder / f"field_{w}_{i:03d}.jpg"
        photo.save(path, quality=92)
        files.append(path)
    return files


def localise_ms(files: list[Path], repeat: int = 3) -> float:
    from PIL import Image

    from wbc_desktop.engine.locate.white_cells import find_white_cells

    photos = [np.asarray(Image.open(p).convert("RGB")) for p in files]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for rgb in photos:
            find_white_cells(rgb)
        best = min(best, (time.perf_counter() - t0) / len(photos))
    return best * 1e3


def run(n_photos: int = 60) -> dict:
    from wbc_desktop import paths
    from wbc_desktop.engine.infer.cells import cut_cells
    from wbc_desktop.engine.infer.classify import Classifier

    work = Path(tempfile.mkdtemp(prefix="wbc-fields-"))
    small = make_fields(work / "640", n_photos, (640, 480))
    large = make_fields(work / "2048", 10, (2048, 1536))
    result = {"localise_640_ms": localise_ms(small), "localise_2048_ms": localise_ms(large),
              "peak_mb_2048": run_child(MEMORY.format(path=str(large[0]), localise=True))["peak_mb"],
              "peak_mb_decoded_only": run_child(MEMORY.format(path=str(large[0]), localise=False))["peak_mb"]}
    clf = Classifier.open(paths.default_model_path())
    squares = np.stack([s for p in small for _, s, _ in cut_cells(p, clf.size, clf.framing, "fields")])
    result["views"] = clf.default_views  # the model's default, as the app runs it
    clf.predict_arrays(squares[:32], tta=clf.default_tta)  # trace once
    t0 = time.perf_counter()
    clf.predict_arrays(squares, tta=clf.default_tta)
    result["bare_cps"] = len(squares) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    cells = sum(p.ok for p in clf.classify(small, tta=clf.default_tta, mode="fields"))
    result["e2e_cps"] = cells / (time.perf_counter() - t0)
    result["cells_per_photo"] = cells / len(small)
    return result
