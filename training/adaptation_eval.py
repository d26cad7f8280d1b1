"""Test-time adaptation beyond AdaBN, screened on the cross-lab protocol.

    python training/adaptation_eval.py --variant compact_tight

For each fold of a ``crosslab.py`` variant, the fold's best-epoch model adapts to the
left-out lab's own cells without labels, as *Adapt to stain* would on a
user's folder, and is scored on all of them:

- ``none``: as trained;
- ``adabn``: BatchNorm statistics re-estimated on the lab's cells (the app's option);
- ``adabn_entropy``: then BatchNorm's scale and shift trained to make the
  predictions confident (entropy minimisation, as TENT);
- ``adabn_infomax``: the same, plus a term that keeps the folder's classes
  spread (SHOT's information maximisation), against entropy's pull to
  call every cell one class.

The same adaptation on pbc's own test split (folds that trained on pbc)
checks that an in-domain folder is not hurt. A whole lab is a balanced
mix of classes, unlike a patient's slide, and AdaBN's statistics follow
the mix; so each is also cut into folders of 100 cells drawn in a normal
differential's proportions (``DIFFERENTIAL``), each adapted on its own
(``none`` against ``adabn``). One view; rows are appended to
``adaptation.jsonl`` in the runs folder.
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

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from crosslab import read_rows, variant_config  # noqa: E402
from recipe import COMMON_FIVE, lab_arrays, source_rows  # noqa: E402
from run_models import best_epoch_model  # noqa: E402

from wbc_desktop.engine.infer.classify import Classifier  # noqa: E402
from wbc_desktop.engine.models.batchnorm import recalibrate_batchnorm  # noqa: E402
from wbc_desktop.engine.models.builders import iter_layers  # noqa: E402
from wbc_desktop.engine.models.modelfile import framing_of, inference_copy  # noqa: E402
from wbc_desktop.engine.train.evaluation import compute_metrics  # noqa: E402
from wbc_desktop.engine.train.finetune import prepare_for  # noqa: E402

METHODS = ("none", "adabn", "adabn_entropy", "adabn_infomax")
RESULTS = "adaptation.jsonl"
DIFFERENTIAL = {"neutrophil": 0.60, "lymphocyte": 0.30, "monocyte": 0.06, "eosinophil": 0.03, "basophil": 0.01}
FOLDER_CELLS, FOLDERS = 100, 20


def entropy_tuned(model: keras.Model, x: np.ndarray, diversity: float, epochs: int = 2, lr: float = 1e-3,
                  batch_size: int = 64, max_images: int = 2048, seed: int = 0) -> None:
    """Train BatchNorm's scale and shift (nothing else) to lower the mean
    prediction entropy, minus ``diversity`` x the entropy of the mean
    prediction; statistics stay those AdaBN set."""
    bns = [l for l in iter_layers(model) if isinstance(l, keras.layers.BatchNormalization)]
    params = [v for bn in bns for v in (bn.gamma, bn.beta) if v is not None]
    optimizer = keras.optimizers.Adam(lr)
    rng = np.random.default_rng(seed)

    @tf.function(reduce_retracing=True)
    def step(batch):
        with tf.GradientTape() as tape:
            p = tf.clip_by_value(model(batch, training=False), 1e-7, 1.0)
            mean = tf.reduce_mean(p, axis=0)
            loss = (tf.reduce_mean(-tf.reduce_sum(p * tf.math.log(p), axis=1))
                    + diversity * tf.reduce_sum(mean * tf.math.log(mean)))
        optimizer.apply_gradients(zip(tape.gradient(loss, params), params))

    for _ in range(epochs):
        order = rng.permutation(len(x))[:max_images]
        for start in range(0, len(order) - batch_size + 1, batch_size):
            step(tf.constant(x[np.sort(order[start:start + batch_size])].astype(np.float32)))


def adapted(model: keras.Model, x: np.ndarray, method: str) -> keras.Model:
    copy = inference_copy(model, always=True)
    if method != "none":
        recalibrate_batchnorm(copy, x)
    if method in ("adabn_entropy", "adabn_infomax"):
        entropy_tuned(copy, x, diversity=1.0 if method == "adabn_infomax" else 0.0)
    return copy


def scores(model, card, x, y) -> dict:
    clf = Classifier(model, card)
    m = compute_metrics(y, clf.predict_arrays(x), clf.classes)
    return {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}


def patient_folders(y: np.ndarray, classes: list[str], rng: np.random.Generator) -> list[np.ndarray]:
    """Rows of ``FOLDERS`` folders, each ``FOLDER_CELLS`` cells in the
    proportions of ``DIFFERENTIAL`` (at least one of each class)."""
    folders = []
    for _ in range(FOLDERS):
        rows = [rng.choice(np.flatnonzero(y == classes.index(c)), max(1, round(share * FOLDER_CELLS)))
                for c, share in DIFFERENTIAL.items() if (y == classes.index(c)).any()]
        folders.append(np.concatenate(rows))
    return folders


def folder_scores(model, card, x, y) -> dict:
    """Each patient folder adapted on its own; accuracy and macro-F1 over all folders' cells."""
    folders = patient_folders(y, card["classes"], np.random.default_rng(0))
    out = {}
    for method in ("none", "adabn"):
        t0 = time.monotonic()
        probs = [Classifier(adapted(model, x[f], method), card).predict_arrays(x[f]) for f in folders]
        m = compute_metrics(np.concatenate([y[f] for f in folders]), np.concatenate(probs), card["classes"])
        out[method] = {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
                       "seconds_per_folder": round((time.monotonic() - t0) / len(folders), 2)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", required=True, help="a crosslab.py variant whose fold models exist")
    parser.add_argument("--config", default=str(ROOT / "training" / "protocol_base.json"))
    parser.add_argument("--runs", default=str(ROOT / "training" / "runs"))
    args = parser.parse_args()
    spec = json.loads(Path(args.config).read_text())
    base = (ROOT / spec["datasets_dir"]).resolve()
    runs = Path(args.runs)
    folds = {r["held_out"]: r for r in read_rows(runs) if r["variant"] == args.variant}
    done = {(r["held_out"], r["folder"]) for r in map(json.loads, (runs / RESULTS).read_text().splitlines())
            if r["variant"] == args.variant} if (runs / RESULTS).exists() else set()
    for held, fold in folds.items():
        if (held, f"unseen_{held}") in done and (held == "pbc" or (held, "pbc_test") in done):
            continue  # an interrupted screen resumes where it stopped
        model, card = best_epoch_model(runs / f"crosslab_{args.variant}_{held}")
        common = [c for c in COMMON_FIVE if c in card["classes"]]
        x, y = lab_arrays(base / held, common, card["input_size"], framing_of(card))
        y = np.asarray([card["classes"].index(common[i]) for i in y])
        folders = {f"unseen_{held}": (x, y)}
        cfg = variant_config(spec, fold["overrides"])
        test = prepare_for(cfg, [base / s for s in spec["crosslab_labs"] if s != held]).test
        rows = source_rows(test.paths, "pbc")
        if rows:
            folders["pbc_test"] = (test.x[rows], test.y[rows])
        for name, (fx, fy) in folders.items():
            if (held, name) in done:
                continue
            row = {"variant": args.variant, "held_out": held, "folder": name, "n": int(len(fy))}
            for method in METHODS:
                t0 = time.monotonic()
                row[method] = scores(adapted(model, fx, method), card, fx, fy)
                row[method]["seconds"] = round(time.monotonic() - t0, 1)
            row["patient_folders"] = folder_scores(model, card, fx, fy)
            print(json.dumps(row), flush=True)
            with open(runs / RESULTS, "a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
