"""Measure the two test-time options on the unseen labs of the
leave-one-dataset-out runs, and 4-view averaging on the shipped model's own
held-out test split.

    python training/test_time_eval.py [--runs training/runs]

For each ``lodo_<lab>`` run: the run's best model (statistics recalibrated on
its clean training images, as shipped) is scored on all of ``<lab>`` with one
view and with 4-view averaging (test-time augmentation, the app's default);
then its BatchNorm statistics are re-estimated on that lab's images alone,
with no labels, as *Adapt to stain* does on a user's folder (AdaBN), and it
is scored again both ways. Results go to ``test_time.json`` beside the runs.
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
from recipe import lab_arrays, source_rows  # noqa: E402
from run_models import best_model  # noqa: E402

from wbc_desktop.engine.infer.classify import Classifier  # noqa: E402
from wbc_desktop.engine.train.evaluation import compute_metrics  # noqa: E402
from wbc_desktop.engine.data.prepare import prepare_data  # noqa: E402
from wbc_desktop.engine.models.batchnorm import recalibrate_batchnorm  # noqa: E402
from wbc_desktop.engine.models.modelfile import framing_of  # noqa: E402


def _scores(clf: Classifier, x: np.ndarray, y: np.ndarray) -> dict:
    """One view and 4-view averaging, on the same images."""
    return {view: {m: round(v, 4) for m, v in compute_metrics(y, clf.predict_arrays(x, tta=tta), clf.classes).items()
                   if m in ("accuracy", "balanced_accuracy", "macro_f1")}
            for view, tta in (("one_view", False), ("four_views", True))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(ROOT / "training" / "runs"))
    parser.add_argument("--config", default=str(ROOT / "training" / "protocol_base.json"))
    parser.add_argument("--labs", nargs="*", help="default: the config's leave_one_out list")
    args = parser.parse_args()
    spec = json.loads(Path(args.config).read_text())
    base = (ROOT / spec["datasets_dir"]).resolve()
    out = {}
    shipped = Classifier.open(ROOT / spec["output"])
    test = prepare_data(Path(args.runs) / "final" / "split.json", shipped.size, framing=shipped.framing).test
    for src in spec["sources"]:
        rows = source_rows(test.paths, src)
        out[f"shipped_test_{src}"] = _scores(shipped, test.x[rows], test.y[rows])
        print(f"shipped_test_{src}", json.dumps(out[f"shipped_test_{src}"]), flush=True)
    for held in args.labs or spec["leave_one_out"]:
        run = Path(args.runs) / f"lodo_{held}"
        model, card = best_model(run)
        x, y = lab_arrays(base / held, card["classes"], card["input_size"], framing_of(card))
        clf = Classifier(model, card)
        before = _scores(clf, x, y)
        recalibrate_batchnorm(model, x)
        out[f"unseen_{held}"] = {"as_shipped": before, "adabn_on_unseen_lab": _scores(clf, x, y)}
        print(f"unseen_{held}", json.dumps(out[f"unseen_{held}"]), flush=True)
    (Path(args.runs) / "test_time.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
