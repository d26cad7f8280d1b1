"""``wbc-desktop --self-test``: proves a frozen build works end to end,
offscreen and offline: the bundled model loads, generated cell-like images
go through the same engine code as real work, a CSV is written, and the
main window renders."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _make_images(folder: Path, n: int = 12) -> list[Path]:
    """Round purple 'cells' on a pale background: enough to exercise decoding
    (JPEG, PNG, 16-bit TIFF) and inference; not a test of accuracy."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        im = Image.new("RGB", (160, 160), (236, 222, 226))
        d = ImageDraw.Draw(im)
        r = int(rng.integers(30, 55))
        d.ellipse([80 - r, 80 - r, 80 + r, 80 + r], fill=(200, 170, 210))
        d.ellipse([80 - r // 2, 80 - r // 2, 80 + r // 2, 80 + r // 2], fill=(90, 40, 130))
        suffix = (".jpg", ".png", ".tif")[i % 3]
        path = folder / f"cell_{i:02d}{suffix}"
        (im.convert("I;16") if suffix == ".tif" else im).save(path)
        files.append(path)
    (folder / "damaged.jpg").write_bytes(b"\xff\xd8\xff not an image")
    return files


def run(out_dir: str | None = None) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from . import paths
    from .engine.infer.classify import Classifier, write_predictions_csv

    out = Path(out_dir or tempfile.mkdtemp(prefix="wbc-selftest-"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    model = paths.default_model_path()
    print(f"self-test: resources at {paths.resources_dir()}")
    from .engine.models.modelfile import ModelFileError

    try:
        clf = Classifier.open(model)
    except ModelFileError as exc:
        print(f"self-test: FAILED: {exc}")
        return 1
    print(f"self-test: loaded {clf.name} ({len(clf.classes)} classes) in {time.monotonic() - t0:.1f} s")
    images = out / "images"
    images.mkdir(exist_ok=True)
    expected = _make_images(images)
    results = list(clf.classify([images]))
    ok = [r for r in results if r.ok]
    bad = [r for r in results if not r.ok]
    csv_path = out / "selftest_predictions.csv"
    write_predictions_csv(csv_path, results, clf.classes, clf.name)
    print(f"self-test: classified {len(ok)} images, {len(bad)} unreadable, wrote {csv_path}")

    from PySide6.QtWidgets import QApplication

    from .gui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    window = MainWindow()
    window.resize(1200, 800)
    window.show()
    app.processEvents()
    window.grab().save(str(out / "selftest_window.png"))
    window.close()
    passed = len(ok) == len(expected) and [Path(r.path).name for r in bad] == ["damaged.jpg"] and csv_path.stat().st_size > 0
    print("self-test: PASSED" if passed else "self-test: FAILED")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(run(sys.argv[1] if len(sys.argv) > 1 else None))
