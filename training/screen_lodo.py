"""Screen training settings on unseen labs at a fraction of the recipe's cost.

    python training/screen_lodo.py --variant shipped='{}' \
        --variant no_stain='{"augment": {"stain": 0, "grayscale": 0}}' \
        --variant resnet50_96='{"arch": "resnet50"}'

Each variant is a JSON object of ``TrainConfig`` fields (``augment``: of
``AugmentConfig`` fields) that override the shipped recipe's. For every
variant and every leave-one-out lab of the config, a model is trained as
the recipe trains it, but on a fixed random subset of pbc (3000 training /
600 validation images) plus the other lab, for 8 epochs (about 2.5 minutes
on two cores for the compact model), and then scored on all of the
left-out lab. Absolute figures are lower than the full recipe's; only the
differences between variants in one run are meant to guide a choice, which
the full recipe then has to confirm. One JSON line per run is appended to
``screen_lodo.jsonl`` in the runs folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from recipe import lab_arrays, source_rows, train_config  # noqa: E402

from wbc_desktop.engine.classify import Classifier  # noqa: E402
from wbc_desktop.engine.evaluation import compute_metrics  # noqa: E402
from wbc_desktop.engine.finetune import prepare_for  # noqa: E402
from wbc_desktop.engine.prepare import SplitArrays  # noqa: E402
from wbc_desktop.engine.training import train  # noqa: E402

PBC_TRAIN, PBC_VAL, EPOCHS = 3000, 600, 8


def _pbc_subset(split: SplitArrays, n: int, rng: np.random.Generator) -> SplitArrays:
    """All of the smaller labs, ``n`` random pbc images: the small labs are
    what carries the cross-lab signal, pbc is only there in bulk."""
    pbc = source_rows(split.paths, "pbc")
    chosen = rng.choice(pbc, min(n, len(pbc)), replace=False)
    keep = np.sort(np.concatenate([np.setdiff1d(np.arange(len(split.paths)), pbc), chosen]))
    return SplitArrays(split.x[keep], split.y[keep], [split.paths[i] for i in keep])


def screen(spec: dict, name: str, overrides: dict, held: str, runs: Path) -> dict:
    cfg = train_config(spec)
    fields = {k: v for k, v in overrides.items() if k != "augment"}
    augment = replace(cfg.augment, **overrides.get("augment", {}))
    cfg = replace(cfg, epochs=EPOCHS, patience=EPOCHS, augment=augment, **fields)
    base = (ROOT / spec["datasets_dir"]).resolve()
    t0 = time.monotonic()
    data = prepare_for(cfg, [base / s for s in spec["sources"] if s != held])
    rng = np.random.default_rng(0)
    data.train, data.val = _pbc_subset(data.train, PBC_TRAIN, rng), _pbc_subset(data.val, PBC_VAL, rng)
    result = train(cfg, data, runs / f"screen_{name}_{held}", name=f"screen {name}")
    clf = Classifier(result.model, result.card)
    x, y = lab_arrays(base / held, clf.classes, cfg.img_size)
    unseen = compute_metrics(y, clf.predict_arrays(x), clf.classes)
    val = compute_metrics(data.val.y, clf.predict_arrays(data.val.x), clf.classes)
    return {
        "variant": name, "overrides": overrides, "held_out": held,
        "unseen": {k: round(unseen[k], 4) for k in ("accuracy", "balanced_accuracy", "macro_f1")},
        "recall": {c: round(m["recall"], 2) for c, m in unseen["per_class"].items() if m["support"]},
        "val_accuracy": round(val["accuracy"], 4), "wall_seconds": round(time.monotonic() - t0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", required=True, help="name='{json overrides}'")
    parser.add_argument("--config", default=str(ROOT / "training" / "shipped_model.json"))
    parser.add_argument("--runs", default=str(ROOT / "training" / "runs"))
    parser.add_argument("--labs", nargs="*", help="default: the config's leave_one_out list")
    args = parser.parse_args()
    spec = json.loads(Path(args.config).read_text())
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    for item in args.variant:
        name, _, overrides = item.partition("=")
        for held in args.labs or spec["leave_one_out"]:
            row = screen(spec, name, json.loads(overrides or "{}"), held, runs)
            print(json.dumps(row), flush=True)
            with open(runs / "screen_lodo.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
