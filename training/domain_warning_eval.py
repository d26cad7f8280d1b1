"""How often the folder warning (``engine.infer.domain_check``) fires, on
the leave-one-lab-out models of ``training/crosslab.py``.

    python training/domain_warning_eval.py [--variant compact]

For each fold, the threshold is set as training sets it: on the fold's own
validation cells. The warning should then fire on folders of the left-out
lab (a lab the model never saw) and stay silent on folders of pbc's
held-out test split (the model's own lab, cells it never saw). Folders
are 50 random cells; 300 of each kind per fold, 4 views as the app.
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

import numpy as np  # noqa: E402
from crosslab import PBC_TRAIN, PBC_VAL, RESULTS as CROSSLAB_RESULTS, _pbc_subset, variant_config  # noqa: E402
from recipe import lab_arrays, source_rows  # noqa: E402
from run_models import best_epoch_model  # noqa: E402

from wbc_desktop.engine.infer.classify import Classifier  # noqa: E402
from wbc_desktop.engine.infer.domain_check import FOLDER_CELLS, folder_confidence, threshold_from  # noqa: E402
from wbc_desktop.engine.train.finetune import prepare_for  # noqa: E402

FOLDERS = 300


def fire_rate(probs: np.ndarray, threshold: float, rng: np.random.Generator) -> float:
    folders = [probs[rng.choice(len(probs), min(FOLDER_CELLS, len(probs)), replace=False)] for _ in range(FOLDERS)]
    return float(np.mean([folder_confidence(f) < threshold for f in folders]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="compact")
    parser.add_argument("--labs", nargs="*", default=["bccd", "tecom", "lisc"])
    parser.add_argument("--config", default=str(ROOT / "training" / "shipped_model.json"))
    parser.add_argument("--runs", default=str(ROOT / "training" / "runs"))
    args = parser.parse_args()
    spec = json.loads(Path(args.config).read_text())
    runs = Path(args.runs)
    overrides = next(json.loads(line)["overrides"] for line in (runs / CROSSLAB_RESULTS).read_text().splitlines()
                     if json.loads(line)["variant"] == args.variant)
    cfg = variant_config(spec, overrides)
    base = (ROOT / spec["datasets_dir"]).resolve()
    rows = []
    for held in args.labs:
        model, card = best_epoch_model(runs / f"crosslab_{args.variant}_{held}")
        clf = Classifier(model, card)
        data = prepare_for(cfg, [base / s for s in spec["crosslab_labs"] if s != held])
        rng = np.random.default_rng(0)  # as crosslab drew the fold's pbc subset
        data.train, data.val = _pbc_subset(data.train, PBC_TRAIN, rng), _pbc_subset(data.val, PBC_VAL, rng)
        check = threshold_from(clf.predict_arrays(data.val.x, tta=True))
        pbc = source_rows(data.test.paths, "pbc")
        in_domain = clf.predict_arrays(data.test.x[pbc], tta=True)
        x, _ = lab_arrays(base / held, clf.classes, cfg.img_size)
        unseen = clf.predict_arrays(x, tta=True)
        rng = np.random.default_rng(1)
        row = {"variant": args.variant, "held_out": held, "threshold": check["threshold"],
               "fires_on_unseen_lab": fire_rate(unseen, check["threshold"], rng),
               "fires_on_pbc_test": fire_rate(in_domain, check["threshold"], rng),
               "mean_confidence_unseen": round(folder_confidence(unseen), 4),
               "mean_confidence_pbc_test": round(folder_confidence(in_domain), 4)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    with open(runs / "domain_warning_eval.jsonl", "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
