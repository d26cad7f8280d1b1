"""Calibrating to a lab: how long ``wbc calibrate`` takes on 5 labelled
cells per class (goal: 2 minutes), alone and with a folder's unlabelled
cells joining the fit, and how fast the lab model it writes classifies
compared with its base model, with and without the generic ImageNet
features beside the model's own; and the app's *Calibrate now* on a
classified folder, to the folder shown as the lab model classifies it."""

from __future__ import annotations

from .common import run_child

CODE = """
import tempfile, time
from pathlib import Path
from bench.common import make_jpegs
from wbc_desktop import paths
from wbc_desktop.engine.infer.classify import Classifier
from wbc_desktop.engine.train.calibrate import calibrate_folder
work = Path(tempfile.mkdtemp(prefix='wbc-bench-calibrate-'))
base = Classifier.open(paths.default_model_path())
for i, c in enumerate(base.classes):
    make_jpegs(work / 'labelled' / c, PER_CLASS, seed=10 + i, nucleus=0.3 + 0.05 * i)
files = make_jpegs(work / 'folder', N_IMAGES, seed=99)
RESULT['n_images'] = N_IMAGES
def classify_ips(clf, tta):
    list(clf.classify(files[:32], tta=tta))  # trace once
    t0 = time.perf_counter()
    list(clf.classify(files, tta=tta))
    return len(files) / (time.perf_counter() - t0)
for name, generic in (('own', False), ('generic', True)):
    t0 = time.perf_counter()
    cal = calibrate_folder(base, work / 'labelled', generic=generic)
    RESULT[name + '_calibrate_s'] = time.perf_counter() - t0
    lab_model = Classifier(cal.model, cal.card)
    RESULT['views'] = lab_model.default_views
    RESULT[name + '_ips'] = classify_ips(lab_model, lab_model.default_tta)
RESULT['base_ips'] = classify_ips(base, RESULT['views'] == 4)  # with the lab models' views, for the ratio
t0 = time.perf_counter()  # the app's way: the folder's other cells join the fit (self-training)
cal = calibrate_folder(base, work / 'labelled', unlabelled=[work / 'folder'], method='self_training')
RESULT['self_training_calibrate_s'] = time.perf_counter() - t0
RESULT['unlabelled_used'] = cal.card['calibration']['unlabelled_cells']
# the app's Calibrate now: the reviewed cells of a classified folder, its other cells joining the fit, and the
# folder then shown as the lab model classifies it (the cells calibration has the features of are not run again)
from wbc_desktop.engine.review.session import ReviewItem, ReviewSession
from wbc_desktop.engine.train.calibrate import calibrate_session
labelled = sorted((work / 'labelled').rglob('*.jpg'))
session = ReviewSession([str(work)], base.classes)
for pred in base.classify(labelled + files):
    session.add(ReviewItem.from_prediction(pred))
for i, item in enumerate(session.items[:len(labelled)]):
    session.set_review(i, Path(item.path).parent.name, 'bench')
t0 = time.perf_counter()
calibrate_session(base, session, tta=False)
RESULT['app_calibrate_s'] = time.perf_counter() - t0
"""


def run(n_images: int = 300, per_class: int = 5) -> dict:
    return run_child(f"PER_CLASS, N_IMAGES = {per_class}, {n_images}\n" + CODE)
