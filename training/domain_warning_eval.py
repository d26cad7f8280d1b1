"""How often the folder warning (``engine.infer.domain_check``) fires, on
the leave-one-lab-out models of ``training/crosslab.py``.

    python training/domain_warning_eval.py [--variant compact_tight+compact_tight_grey50]

For each fold, the thresholds are set as training sets them (on the fold's
own training and validation cells). The warning should then fire on folders
of the left-out lab (a lab the model never saw) and stay silent on folders
of each training lab's held-out test split (labs the model knows, cells it
never saw; a small lab's folder is its whole test split).
Folders are 50 random cells; 300 of each kind per fold, classified with
``--views`` (default one, the shipped model's default).
The rate is the share of folders the warning fires on, as the app decides
it, also on folders of one class only (each class with enough cells), which
must stay as silent on the training labs.
A variant A+B joins the folds' models as the shipped model joins its
members (the stain signal does not depend on the model at all).

``--unfamiliar-offset X`` (one or more) also scores the labels as the app gives them
(``infer.classify.folder_check``): on a folder the warning fires on, X is
added to the logits of the classes that only one of the fold's training
labs teaches (``crosslab.one_lab_classes``, as a card's
``unfamiliar_offsets``). Other random folders (``FOLDERS`` of each kind)
are scored before and after, so misses and false alarms count as they come.
``--unfamiliar-temperature T`` (one or more) scores the confidences there
too, with the logits divided by T as a card's ``unfamiliar_temperature``
does: the calibration error of the folders' cells and what the app's
review flag catches (``confidence_unseen_lab``; the same figures without a
temperature are in ``accuracy_unseen_lab``).
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
from crosslab import (  # noqa: E402
    PBC_TRAIN, PBC_VAL, _pbc_subset, add_joint_head_args, check_joint_head_args, joint_fold_model, joint_head_of,
    one_lab_classes, read_rows, recut_split, variant_config,
)
from recipe import COMMON_FIVE, lab_cells, source_rows  # noqa: E402
from run_models import joined_model  # noqa: E402

from wbc_desktop.engine.infer.classify import Classifier, folder_verdict  # noqa: E402
from wbc_desktop.engine.infer.domain_check import FOLDER_CELLS, MIN_CELLS, unlike_training  # noqa: E402
from wbc_desktop.engine.infer.folder_training import MIN_CELLS as SELF_TRAINING_CELLS  # noqa: E402
from wbc_desktop.engine.locate.framing import FRAMINGS  # noqa: E402
from wbc_desktop.engine.models.class_offsets import (  # noqa: E402
    UNFAMILIAR_OFFSETS, UNFAMILIAR_TEMPERATURE, known, parse_offsets, shift_head,
)
from wbc_desktop.engine.train.evaluation import expected_calibration_error  # noqa: E402
from wbc_desktop.engine.train.trainer import reference_for, surroundings_stats  # noqa: E402
from wbc_desktop.engine.train.finetune import prepare_for  # noqa: E402

FOLDERS = 300
FLAG = 0.70  # the app's default review flag: cells below it are flagged


def fire_rates(probs: np.ndarray, stats: np.ndarray, check: dict, rng: np.random.Generator,
               rows: np.ndarray | None = None) -> dict:
    """Share of random folders (of ``rows``, default all cells) the warning fires on."""
    rows = np.arange(len(probs)) if rows is None else rows
    fired = 0
    for _ in range(FOLDERS):
        pick = rng.choice(rows, min(FOLDER_CELLS, len(rows)), replace=False)
        fired += unlike_training(probs[pick], stats[pick], {"domain_check": check}) is not None
    return fired / FOLDERS


def one_class_rates(probs: np.ndarray, stats: np.ndarray, labels: np.ndarray, check: dict,
                    rng: np.random.Generator) -> dict:
    """Folders that hold one class only (a sorted folder, a patient with
    mostly lymphocytes), for every class with enough cells to judge."""
    return {str(c): fire_rates(probs, stats, check, rng, np.flatnonzero(labels == c))
            for c in np.unique(labels) if np.sum(labels == c) >= MIN_CELLS}


def fold_check(spec: dict, cfg, held: str, model, framing: str, tta: bool) -> tuple[dict, object]:
    """The fold's folder-warning references, set as training sets them (on
    the fold's own training and validation cells, cut ``framing``), and
    that prepared data."""
    base = (ROOT / spec["datasets_dir"]).resolve()
    data = prepare_for(cfg, [base / s for s in spec["crosslab_labs"] if s != held])
    rng = np.random.default_rng(0)  # as crosslab drew the fold's pbc subset
    data.train, data.val = _pbc_subset(data.train, PBC_TRAIN, rng), _pbc_subset(data.val, PBC_VAL, rng)
    if framing != cfg.framing:
        recut_split(data, cfg.img_size, framing)
    return reference_for(model, data, cfg.img_size, tta=tta), data


def labelled_accuracy(probs: np.ndarray, stats: np.ndarray, labels: np.ndarray, check: dict, classes: list[str],
                      caution: dict[str, float], rng: np.random.Generator, temperature: float = 1.0,
                      feats: np.ndarray | None = None, size: int = FOLDER_CELLS) -> dict:
    """Mean accuracy of random folders' labels (``labels``: indices into
    ``classes``) as the model gives them, and as the folder's verdict
    (``folder_verdict``, with ``caution`` and ``temperature`` as the card's
    unfamiliar offsets and temperature, and self-training on the folder
    given the cells' ``feats``) leaves them, in folders of ``size`` cells; and how honest the
    verdict's confidences are (the expected calibration error of the
    folders' cells, pooled) and what the app's review flag (cells below
    ``FLAG``) catches: the share of cells flagged, and of wrong labels.
    With ``feats``, the same figures without self-training too
    (``caution_only_``), on the same folders."""
    card = {"classes": classes, "domain_check": check, UNFAMILIAR_OFFSETS: caution,
            UNFAMILIAR_TEMPERATURE: temperature}
    plain, truth = [], []
    ways = {"": feats, "caution_only_": None} if feats is not None else {"": None}
    shown = {way: [] for way in ways}
    for _ in range(FOLDERS):
        pick = rng.choice(len(probs), min(size, len(probs)), replace=False)
        plain.append(probs[pick])
        truth.append(labels[pick])
        for way, given in ways.items():
            shown[way].append(folder_verdict(probs[pick], stats[pick], card, None if given is None else given[pick]).probs)
    truth = np.concatenate(truth)  # folders of one size: the pooled cells' accuracy is the folders' mean
    row = {"plain": round(float(np.mean(np.concatenate(plain).argmax(axis=1) == truth)), 4)}
    for way, folders in shown.items():
        labelled = np.concatenate(folders)
        flagged, wrong = labelled.max(axis=1) < FLAG, labelled.argmax(axis=1) != truth
        row.update({f"{way}as_labelled": round(float(np.mean(~wrong)), 4),
                    f"{way}ece": round(expected_calibration_error(labelled, truth), 4),
                    f"{way}flagged": round(float(flagged.mean()), 4),
                    f"{way}errors_flagged": round(float(flagged[wrong].mean()) if wrong.any() else 1.0, 4)})
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="compact")
    parser.add_argument("--labs", nargs="*", help="left-out labs (default: every lab of the protocol)")
    parser.add_argument("--config", default=str(ROOT / "training" / "protocol_base.json"))
    parser.add_argument("--runs", default=str(ROOT / "training" / "runs"))
    parser.add_argument("--views", type=int, choices=(1, 4), default=1, help="test-time views, as the app's model")
    parser.add_argument("--framing", choices=tuple(FRAMINGS), help="cut the cells this way in use, as a card's "
                                                                  "test_framing does (default: as trained)")
    parser.add_argument("--class-offset", action="append", default=[], metavar="CLASS=NUMBER",
                        help="that class's logit offset, as a card's class_offsets")
    parser.add_argument("--one-lab-offset", type=float, metavar="NUMBER",
                        help="that offset on every class one of the fold's training labs teaches (crosslab's rule)")
    parser.add_argument("--unfamiliar-offset", type=float, action="append", default=[], metavar="NUMBER",
                        help="score the labels with that much more on those classes where the warning fires")
    parser.add_argument("--unfamiliar-temperature", type=float, action="append", default=[], metavar="T",
                        help="with each --unfamiliar-offset, score the confidences with the logits divided by T "
                             "where the warning fires (calibration error, review flags)")
    parser.add_argument("--self-training", action="store_true",
                        help="also self-train on each folder the warning fires on (infer.folder_training), as the "
                             "app does; the labels are scored in folders of --folder-cells")
    parser.add_argument("--folder-cells", type=int, default=FOLDER_CELLS,
                        help=f"cells per folder where the labels are scored (default {FOLDER_CELLS}; self-training "
                             f"needs {SELF_TRAINING_CELLS})")
    add_joint_head_args(parser)
    args = parser.parse_args()
    check_joint_head_args(parser, args)
    offsets = parse_offsets(args.class_offset)
    tta = args.views == 4
    spec = json.loads(Path(args.config).read_text())
    runs = Path(args.runs)
    members = args.variant.split("+")
    overrides = next(r["overrides"] for r in read_rows(runs) if r["variant"] == members[0])
    cfg = variant_config(spec, overrides)
    base = (ROOT / spec["datasets_dir"]).resolve()
    rows = []
    for held in args.labs or spec["crosslab_labs"]:
        run_dirs = [runs / f"crosslab_{member}_{held}" for member in members]
        if args.joint_head is None:
            model, card = joined_model(run_dirs)
        else:
            model, card, _ = joint_fold_model(spec, run_dirs, args.framing or cfg.framing, args.joint_head,
                                             args.taps)
        taught = one_lab_classes(base, [lab for lab in spec["crosslab_labs"] if lab != held], card["classes"])
        if args.one_lab_offset is not None:
            offsets = {c: args.one_lab_offset for c in taught}
        shift_head(model, card["classes"], known(card["classes"], offsets))
        clf = Classifier(model, card)
        framing = args.framing or cfg.framing
        check, data = fold_check(spec, cfg, held, model, framing, tta)
        x, labels, paths = lab_cells(base / held, COMMON_FIVE, cfg.img_size, framing)
        (probs, feats), stats = clf.predict_with_features(x, tta=tta), surroundings_stats(paths)
        feats = feats if args.self_training else None
        scored = {"feats": feats, "size": args.folder_cells}
        rng = np.random.default_rng(1)
        row = {"variant": args.variant, "views": args.views, "framing": framing,
               **joint_head_of(args),
               **({"class_offsets": offsets} if offsets else {}),
               "held_out": held, "threshold": check["colour"]["threshold"],
               **({"self_training": True} if args.self_training else {}), "labels_folder_cells": args.folder_cells,
               "fires_on_unseen_lab": fire_rates(probs, stats, check, rng),
               "fires_on_unseen_lab_one_class": one_class_rates(probs, stats, labels, check, rng)}
        cautions = {f"{v:+g}": {c: v for c in taught} for v in args.unfamiliar_offset}
        if cautions:
            row["unfamiliar_classes"] = taught
            truth = np.asarray([clf.classes.index(COMMON_FIVE[i]) for i in labels])
            row["accuracy_unseen_lab"] = {  # its own draws: the rates above stay as they were measured
                v: labelled_accuracy(probs, stats, truth, check, clf.classes, c, np.random.default_rng(2), **scored)
                for v, c in cautions.items()}
            if args.unfamiliar_temperature:  # T=1 is accuracy_unseen_lab's row
                row["confidence_unseen_lab"] = {
                    f"{v} T={t:g}": labelled_accuracy(probs, stats, truth, check, clf.classes, c,
                                                      np.random.default_rng(2), t, **scored)
                    for v, c in cautions.items() for t in args.unfamiliar_temperature}
        for lab in spec["crosslab_labs"]:
            rows_ = source_rows(data.test.paths, lab)
            if len(rows_):  # a lab the fold trained on: its held-out test cells
                own_probs, own_feats = clf.predict_with_features(data.test.x[rows_], tta=tta)
                own_stats = surroundings_stats([data.test.paths[i] for i in rows_])
                row[f"fires_on_{lab}_test"] = fire_rates(own_probs, own_stats, check, rng)
                row[f"fires_on_{lab}_test_one_class"] = one_class_rates(own_probs, own_stats, data.test.y[rows_],
                                                                        check, rng)
                row.update({f"accuracy_{lab}_test": {
                    v: labelled_accuracy(own_probs, own_stats, data.test.y[rows_], check, clf.classes, c,
                                         np.random.default_rng(2), feats=own_feats if args.self_training else None,
                                         size=args.folder_cells) for v, c in cautions.items()}} if cautions else {})
        print(json.dumps(row), flush=True)
        rows.append(row)
    with open(runs / "domain_warning_eval.jsonl", "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
