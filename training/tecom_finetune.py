"""Fine-tuning on a lab the base model never saw (issue: measure it).

    python training/tecom_finetune.py [--runs training/runs]

Base: the leave-tecom-out model (trained on pbc + bccd only). On tecom's own
seeded split, a head-only and a deeper fine-tune run through the app's own
job (``engine.finetune.run_finetune``); each reports the base model and the
fine-tuned model on the same untouched test images, with wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training"))

from run_models import export  # noqa: E402

from wbc_desktop.engine.data.augment_config import AugmentConfig  # noqa: E402
from wbc_desktop.engine.train.finetune import run_finetune  # noqa: E402
from wbc_desktop.engine.progress import CancelToken  # noqa: E402
from wbc_desktop.engine.train.config import TrainConfig  # noqa: E402

SETTINGS = {
    "head_only": dict(freeze_until="backbone", epochs=15, lr=1e-3, patience=15),
    "deeper_conv3": dict(freeze_until="conv3", epochs=15, lr=5e-4, patience=15),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(ROOT / "training" / "runs"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "tecom"))
    args = parser.parse_args()
    runs = Path(args.runs)
    base = export(runs / "lodo_tecom", runs / "tecom_finetune" / "base_without_tecom.keras")
    results = {}
    for name, extra in SETTINGS.items():
        cfg = TrainConfig(weights=str(base), img_size=96, batch_size=32, seed=42, augment=AugmentConfig.from_strength(0.5),
                          **extra)
        t0 = time.monotonic()
        out = run_finetune(cfg, args.data, runs / "tecom_finetune" / name, name=name, progress=lambda p: None,
                           cancel=CancelToken())
        seconds = time.monotonic() - t0
        short = lambda m: {k: round(m[k], 4) for k in ("n", "accuracy", "balanced_accuracy", "macro_f1")}  # noqa: E731
        results[name] = {"base": short(out.base_metrics), "fine_tuned": short(out.metrics),
                         "wall_seconds": round(seconds), "epochs": len(out.result.history)}
        print(name, json.dumps(results[name]), flush=True)
    (runs / "tecom_finetune" / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
