"""The k-shot calibration protocol: how well does ``wbc calibrate`` adapt a
model to a lab it never saw, and is its own estimate honest?

    python training/calibrate_eval.py [--variants compact lite0_128] [--draws 5] [--methods logistic]
    python training/calibrate_eval.py --variants A+B+C --generic   # with the generic ImageNet features, as wbc calibrate
    python training/calibrate_eval.py --table

For each leave-one-lab-out model of ``training/crosslab.py`` (variant x
left-out lab), the left-out lab plays the new lab. Its cells are grouped
by source image (bccd: the smear photo in the file name) and by
near-duplicate crops (lisc holds several crops of each cell), and every
group stays on one side. For k = 3, 5, 10, 25 labelled cells per class and
several random draws, each method is fitted on the k-shot cells and scored
on all the lab's other cells (the five common classes); its
cross-validated estimate on the k-shot cells is recorded beside that
held-out score, and so is the score among the labelled classes alone (in
brackets in the table): the lab holds only the five common classes, and a
class without labelled cells keeps the base model's answer, so the first
score also counts the base model's ig, erythroblast and platelet calls;
the second is what a lab that labels every class it holds would see. Each
is scored with the four test-time views; with the cells as they are (one
view, in braces) too, to choose a lab model's default. A class with too
few groups to leave one for scoring keeps the base model's answer. pbc as
the new lab is a fixed random 1500 of its cells of the five common classes. One JSON line per (fold, k, draw,
method) goes to ``calibrate_eval.jsonl`` in the runs folder.
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

import numpy as np  # noqa: E402
from recipe import COMMON_FIVE  # noqa: E402
from run_models import joined_model  # noqa: E402

from wbc_desktop.engine.data.dataset import decode_images, sample_in_order, scan_labeled  # noqa: E402
from wbc_desktop.engine.data.prepare import duplicate_groups  # noqa: E402
from wbc_desktop.engine.models.batchnorm import recalibrate_batchnorm  # noqa: E402
from wbc_desktop.engine.models.class_offsets import (  # noqa: E402
    UNFAMILIAR_OFFSETS, describe, known, parse_offsets, shift_head, shift_probs,
)
from wbc_desktop.engine.locate.framing import FRAMINGS  # noqa: E402
from wbc_desktop.engine.models.modelfile import framing_of, inference_copy  # noqa: E402
from wbc_desktop.engine.train.run_layout import RunLayout  # noqa: E402
from wbc_desktop.engine.train.calibrate import (  # noqa: E402
    LABELS_UNLABELLED, METHODS, PSEUDO_LABEL_POOL, LabFeatures, cross_validated_estimate, fit_head, kept_caution,
    lab_features, predict,
)

KS = (3, 5, 10, 25)
GROUP_BY = {"bccd": r"^(BloodImage_\d+)"}
PBC_CELLS = 1500
RESULTS = "calibrate_eval.jsonl"


def new_lab(folder: Path, classes: list[str], size: int, framing: str, seed: int = 0):
    """The lab's cells of the five common classes: pixels, labels (index into
    ``classes``) and source groups."""
    found = scan_labeled(folder)
    rows = [i for i, lbl in enumerate(found.labels) if found.classes[lbl] in COMMON_FIVE and found.classes[lbl] in classes]
    if folder.name == "pbc":
        rows = sorted(np.random.default_rng(seed).choice(rows, PBC_CELLS, replace=False))
    paths = [found.paths[i] for i in rows]
    decoded = decode_images(paths, size, framing=framing)
    groups = duplicate_groups(paths, decoded, GROUP_BY.get(folder.name))
    ok = np.flatnonzero(decoded.ok)
    y = np.asarray([classes.index(found.classes[found.labels[rows[i]]]) for i in ok])
    return decoded.pixels[ok], y, groups[ok]


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(probs.argmax(axis=1) == y))


def draw(y: np.ndarray, groups: np.ndarray, k: int, rng: np.random.Generator):
    """k labelled cells per class from random whole groups; returns the
    labelled rows and the rows left to score (other groups only)."""
    labelled, used_groups = [], set()
    for c in np.unique(y):
        class_groups = rng.permutation(np.unique(groups[y == c]))
        if len(class_groups) < 2:
            continue  # nothing would be left to score: this class keeps the base model's answer
        taken = []
        for g in class_groups[:-1]:  # at least one group stays for scoring
            members = np.flatnonzero((groups == g) & (y == c))
            taken += list(members[: k - len(taken)])
            used_groups.add(g)
            if len(taken) >= k:
                break
        if len(taken) >= min(k, 3):
            labelled += taken
    labelled = np.asarray(sorted(labelled))
    rest = np.asarray([i for i in range(len(y)) if groups[i] not in used_groups])
    return labelled, rest


def evaluate_fold(name: str, run_dirs: list[Path], lab_dir: Path, draws: int, out, methods=METHODS,
                  extractor=None, framing: str | None = None, offsets: dict[str, float] | None = None,
                  joint_head: float | None = None, with_taps: bool = False,
                  unfamiliar: dict[str, float] | None = None) -> None:
    """``framing``: the cut in use, as a card's ``test_framing`` sets it
    (default: as trained); ``offsets``: logit offsets, as a card's
    ``class_offsets`` (those of classes the fold's model lacks left out);
    ``joint_head``: the joined head fitted again with this C
    (``crosslab.joint_fold_model``; ``with_taps``: on the members' features
    and pooled taps), as the shipped file's is; ``unfamiliar``: a card's
    ``unfamiliar_offsets``, which a lab model keeps on the classes the draw
    did not label (``calibrate.kept_caution``)."""
    if joint_head is None:
        model, card = joined_model(run_dirs)
    else:
        from crosslab import joint_fold_model

        spec = json.loads((ROOT / "training" / "protocol_base.json").read_text())
        model, card, _ = joint_fold_model(spec, run_dirs, framing, joint_head, with_taps)
    shift_head(model, card["classes"], known(card["classes"], offsets or {}))
    classes = card["classes"]
    pixels, y, groups = new_lab(lab_dir, classes, card["input_size"], framing or framing_of(card))
    t0 = time.monotonic()
    plain = lab_features(model, pixels, extractor=extractor)
    adapted = plain
    if "adabn_logistic" in methods:
        adapted_model = inference_copy(model, always=True)
        recalibrate_batchnorm(adapted_model, pixels)  # the lab's own cells, unlabelled: what --unlabelled gives
        adapted = lab_features(adapted_model, pixels, extractor=extractor)
    feature_seconds = time.monotonic() - t0
    base_acc = accuracy(plain.base_probs.mean(axis=0), y)
    for k in KS:
        for d in range(draws):
            rng = np.random.default_rng(1000 * k + d)
            labelled, rest = draw(y, groups, k, rng)
            present = sorted(set(y[labelled].tolist()))
            if len(present) < 2 or len(rest) == 0:
                continue
            local = np.asarray([present.index(v) for v in y[labelled]])
            pool = sample_in_order(rest, PSEUDO_LABEL_POOL, d)  # the lab's other cells, as many as the app looks at
            caution = kept_caution({"classes": classes, UNFAMILIAR_OFFSETS: unfamiliar or {}},
                                   [classes[i] for i in present])
            for method in methods:
                lab = unshifted = adapted if method == "adabn_logistic" else plain
                if caution:  # what the lab model's shifted head gives, view by view
                    lab = LabFeatures(lab.feats, shift_probs(lab.base_probs, classes, caution))
                unlabelled = plain.feats[:, pool] if method in LABELS_UNLABELLED else None
                t1 = time.monotonic()
                estimate = cross_validated_estimate(method, lab.take(labelled), y[labelled], groups[labelled],
                                                    present, unlabelled)
                head = fit_head(method, lab.feats[:, labelled], local, len(present), unlabelled)
                probs = predict(head, lab.take(rest), present)
                held_out = accuracy(probs, y[rest])
                one_view = predict(head, lab.take(rest).first_view(), present)  # the model's other default
                # as when every class the lab holds has labelled cells (the hidden
                # hospitals' check labels all eight): the answer among those classes
                among_labelled = np.asarray(present)[probs[:, present].argmax(axis=1)]
                held_out_labelled = float(np.mean(among_labelled == y[rest]))
                row = {"run": name, "lab": lab_dir.name, "k": k, "draw": d, "method": method,
                       "labelled": int(len(labelled)), "scored": int(len(rest)), "classes_labelled": len(present),
                       "estimate": round(estimate["accuracy"], 4), "ci95": estimate["ci95"],
                       "held_out": round(held_out, 4), "held_out_labelled_classes": round(held_out_labelled, 4),
                       "held_out_one_view": round(accuracy(one_view, y[rest]), 4),
                       "base_on_scored": round(accuracy(plain.base_probs.mean(axis=0)[rest], y[rest]), 4),
                       "fit_seconds": round(time.monotonic() - t1, 2)}
                if caution:  # the same head, the kept classes answered by the base as it is
                    without = predict(head, unshifted.take(rest), present)
                    row["held_out_without_caution"] = round(accuracy(without, y[rest]), 4)
                print(json.dumps(row), flush=True)
                out.write(json.dumps(row) + "\n")
                out.flush()
    print(f"{name}: base accuracy on the whole lab {base_acc:.3f}; features (4 views) "
          f"{feature_seconds:.0f} s for {len(y)} cells", flush=True)


def table(rows: list[dict]) -> str:
    lines = ["| model without lab | k | base on scored cells | " + " | ".join(METHODS) + " |",
             "|---|---|---|" + "---|" * len(METHODS)]
    keys = sorted({(r["run"], r["k"]) for r in rows}, key=lambda t: (t[0], t[1]))
    for run, k in keys:
        mine = [r for r in rows if r["run"] == run and r["k"] == k]
        cells = []
        for m in METHODS:
            rs = [r for r in mine if r["method"] == m]
            if not rs:
                cells.append("-")
                continue
            held = np.array([r["held_out"] for r in rs])
            gap = np.array([r["estimate"] - r["held_out"] for r in rs])
            among = [r["held_out_labelled_classes"] for r in rs if "held_out_labelled_classes" in r]
            one_view = [r["held_out_one_view"] for r in rs if "held_out_one_view" in r]
            without = [r["held_out_without_caution"] for r in rs if "held_out_without_caution" in r]
            cells.append(f"{held.mean():.3f} ± {held.std():.3f} (est. {gap.mean():+.3f})"
                         + (f" [{np.mean(among):.3f}]" if among else "")
                         + (f" {{one view {np.mean(one_view):.3f}}}" if one_view else "")
                         + (f" <without the kept caution {np.mean(without):.3f}>" if without else ""))
        base = np.mean([r["base_on_scored"] for r in mine])
        lines.append(f"| {run.replace('crosslab_', '')} | {k} | {base:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    from crosslab import add_joint_head_args, check_joint_head_args

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="*", default=["compact"],
                        help="crosslab variants; A+B: their fold models joined")
    parser.add_argument("--labs", nargs="*", default=["bccd", "tecom", "lisc", "pbc"])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--generic", action="store_true",
                        help="the shipped generic ImageNet features beside the model's own (what wbc calibrate "
                             "does by default); runs are named <variant>+imagenet")
    parser.add_argument("--runs", default=str(ROOT / "training" / "runs"))
    parser.add_argument("--datasets", default=str(ROOT / ".." / "shared" / "datasets"))
    parser.add_argument("--framing", choices=tuple(FRAMINGS), help="cut the cells this way (default: as trained)")
    parser.add_argument("--class-offset", action="append", default=[], metavar="CLASS=NUMBER",
                        help="that class's logit offset, as a card's class_offsets; runs are named <...>+offsets<class><offset>...")
    add_joint_head_args(parser)  # runs are named <...>+joint<C>[taps]
    parser.add_argument("--unfamiliar-offset", action="append", default=[], metavar="CLASS=NUMBER",
                        help="a card's unfamiliar_offsets: the lab model keeps them on the classes a draw does not "
                             "label; runs are named <...>+kept<class><offset>...")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    check_joint_head_args(parser, args)
    offsets, unfamiliar = parse_offsets(args.class_offset), parse_offsets(args.unfamiliar_offset)
    runs = Path(args.runs)
    results = runs / RESULTS
    if not args.table:
        extractor = None
        if args.generic:
            from wbc_desktop.engine.models.generic_features import load_generic_extractor
            extractor = load_generic_extractor()
            if extractor is None:
                parser.error("no generic feature extractor: build it with training/generic_features.py")
        suffix = (("+imagenet" if extractor is not None else "") + (f"+{args.framing}" if args.framing else "")
                  + (f"+offsets{describe(offsets).replace(' ', '')}" if offsets else "")
                  + (f"+joint{args.joint_head:g}" + ("taps" if args.taps else "") if args.joint_head is not None else "")
                  + (f"+kept{describe(unfamiliar).replace(' ', '')}" if unfamiliar else ""))
        with open(results, "a") as out:
            for variant in args.variants:
                for lab in args.labs:
                    run_dirs = [runs / f"crosslab_{member}_{lab}" for member in variant.split("+")]
                    if all(RunLayout(run).best_weights.exists() for run in run_dirs):
                        evaluate_fold(f"crosslab_{variant}{suffix}_{lab}", run_dirs,
                                      Path(args.datasets).resolve() / lab, args.draws, out, args.methods, extractor,
                                      args.framing, offsets, args.joint_head, args.taps, unfamiliar)
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
