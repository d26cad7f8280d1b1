"""Peak resident memory (each case in a fresh process) for the app idle,
classifying 1,000 images, a head-only and a deeper fine-tune on 300 images
of 5 classes, with the fine-tunes' wall times."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .common import make_jpegs, run_child

CLASSES = ("neutrophil", "eosinophil", "basophil", "lymphocyte", "monocyte")

IDLE = """
import time
from PySide6.QtWidgets import QApplication
from wbc_desktop.gui.main_window import MainWindow
app = QApplication([])
w = MainWindow(); w.show(); app.processEvents()
w.load_initial_model()
t0 = time.time()
while w.classifier is None and time.time() - t0 < 120:
    app.processEvents(); time.sleep(0.01)
w.close()  # waits for the loader thread to end before the process does
"""

CLASSIFY = """
from wbc_desktop.engine.infer.classify import Classifier, write_predictions_csv
from wbc_desktop import paths
clf = Classifier.open(paths.default_model_path())
results = list(clf.classify([{folder!r}]))
write_predictions_csv({folder!r} + '/../preds.csv', results, clf.classes, clf.name)
RESULT['n'] = len(results)
"""

FINETUNE = """
import time
from wbc_desktop import paths
from wbc_desktop.engine.data.augment_config import AugmentConfig
from wbc_desktop.engine.train.finetune import run_finetune
from wbc_desktop.engine.progress import CancelToken
from wbc_desktop.engine.train.config import TrainConfig
cfg = TrainConfig(weights=str(paths.default_model_path()), img_size={size}, freeze_until={freeze!r}, epochs=5,
                  batch_size=32, lr={lr}, patience=5, augment=AugmentConfig.from_strength(0.3))
t0 = time.time()
out = run_finetune(cfg, {data!r}, {run!r}, name='bench', progress=lambda p: None, cancel=CancelToken())
RESULT['seconds'] = time.time() - t0
RESULT['test_accuracy'] = out.metrics['accuracy']
"""


def labelled_folder(root: Path, per_class: int = 60) -> Path:
    for i, c in enumerate(CLASSES):
        make_jpegs(root / c, per_class, seed=i, nucleus=0.3 + 0.12 * i)
    return root


def run() -> dict:
    from wbc_desktop.engine.models.modelfile import read_card
    from wbc_desktop import paths

    work = Path(tempfile.mkdtemp(prefix="wbc-bench-mem-"))
    env = {"WBC_DATA_DIR": str(work / "userdata"), "WBC_CACHE_DIR": str(work / "cache")}
    images = work / "images"
    make_jpegs(images, 1000)
    data = labelled_folder(work / "labelled")
    size = read_card(paths.default_model_path())["input_size"]
    out = {"idle_app": run_child(IDLE, env), "classify_1000": run_child(CLASSIFY.format(folder=str(images)), env)}
    for name, freeze, lr in (("finetune_head", "backbone", 1e-3), ("finetune_deeper", "conv3", 5e-4)):
        out[name] = run_child(FINETUNE.format(size=size, freeze=freeze, lr=lr, data=str(data), run=str(work / name)), env)
    return out
