"""Measure test-time re-estimation of BatchNorm statistics (AdaBN) on the
unseen labs of the leave-one-dataset-out runs.

    python training/adabn_eval.py [--runs training/runs]

For each ``lodo_<lab>`` run: the run's best model (statistics recalibrated on
its clean training images, as shipped) is scored on all of ``<lab>``; then
its BatchNorm statistics are re-estimated on that lab's images alone, with
no labels, as the app could do on a user's folder, and it is scored again.
Results go to ``adabn.json`` beside the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training"))

import numpy as np  # noqa: E402
from run_models import best_model  # noqa: E402

from wbc_desktop.engine.classify import Classifier  # noqa: E402
from wbc_desktop.engine.dataset import decode_images, scan_labeled  # noqa: E402
from wbc_desktop.engine.evaluation import compute_metrics  # noqa: E402
from wbc_desktop.engine.training import recalibrate_batchnorm  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(ROOT / "training" / "runs"))
    parser.add_argument("--config", default=str(ROOT / "training" / "shipped_model.json"))
    parser.add_argument("--labs", nargs="*", help="default: the config's leave_one_out list")
    args = parser.parse_args()
    spec = json.loads(Path(args.config).read_text())
    base = (ROOT / spec["datasets_dir"]).resolve()
    out = {}
    for held in args.labs or spec["leave_one_out"]:
        run = Path(args.runs) / f"lodo_{held}"
        model, card = best_model(run)
        classes, size = card["classes"], card["input_size"]
        held_set = scan_labeled(base / held)
        decoded = decode_images(held_set.paths, size)
        keep = [i for i, ok in enumerate(decoded.ok) if ok and held_set.classes[held_set.labels[i]] in classes]
        x = decoded.pixels[keep]
        y = [classes.index(held_set.classes[held_set.labels[i]]) for i in keep]
        clf = Classifier(model, card)
        before = compute_metrics(np.asarray(y), clf.predict_arrays(x), classes)
        recalibrate_batchnorm(model, x)
        after = compute_metrics(np.asarray(y), clf.predict_arrays(x), classes)
        out[held] = {k: {m: round(v[m], 4) for m in ("accuracy", "balanced_accuracy", "macro_f1")}
                     for k, v in (("as_shipped", before), ("adabn_on_unseen_lab", after))}
        print(held, json.dumps(out[held]), flush=True)
    target = Path(args.runs) / "adabn.json"
    previous = json.loads(target.read_text()) if target.exists() else {}
    target.write_text(json.dumps({**previous, **out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
