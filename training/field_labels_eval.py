"""Labels on field photos from a lab the model never saw.

    python training/field_labels_eval.py runs/crosslab_compact_bccd [more run folders or .keras files]
    python training/field_labels_eval.py runs/crosslab_compact_tight_bccd+runs/crosslab_compact_tight_grey50_bccd

``bccd_smears`` photos whose table names exactly one white cell of the five
common classes (348 photos). A photo counts as right when the most confident
white cell found in it carries that label. Use a model that never saw BCCD
(the leave-bccd-out folds of ``crosslab.py``): bccd crops are these cells.
``one input per photo`` is ``--mode cells``: an as-is model sees the whole
photo squeezed, as the app did before the localiser (a framed model, the
photo's most central cell); ``field mode`` finds every cell first
(``--mode fields``).

``--unfamiliar-offset X`` (crosslab run folders only) scores field mode
once more with the labels as the app leaves them
(``infer.classify.folder_check``): the photos are one folder, the fold's
folder warning (set as training sets it) judges it, and where it fires X is
added to the logits of the classes only one of the fold's training labs
teaches and the folder is self-trained (``infer.folder_training``; also
scored without).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recipe import COMMON_FIVE  # noqa: E402

from wbc_desktop.engine.infer.classify import Classifier, folder_check  # noqa: E402
from wbc_desktop.engine.locate.framing import FRAMINGS  # noqa: E402
from wbc_desktop.engine.models.class_offsets import known, parse_offsets, shift_head  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "datasets" / "bccd_smears"


def one_cell_photos() -> list[tuple[Path, str]]:
    rows = csv.DictReader((PHOTOS / "wbc_labels.csv").open())
    out = []
    for r in rows:
        label = r["Category"].strip().lower()
        path = PHOTOS / "BCCD" / "JPEGImages" / f"BloodImage_{int(r['Image']):05d}.jpg"
        if label in COMMON_FIVE and path.exists():
            out.append((path, label))
    return out


def classifier_for(source: str, framing: str | None = None, offsets: dict[str, float] | None = None,
                   joint_head: float | None = None, with_taps: bool = False) -> Classifier:
    """A model file, a crosslab run folder, or run folders joined by "+"
    into one model, as the shipped ensemble joins its members; ``framing``:
    the cut in use, as a card's ``test_framing`` sets it; ``offsets``: logit
    offsets as a card's ``class_offsets`` (those of classes the model lacks
    are left out); ``joint_head``: the joined run folders' head fitted again
    on their fold's training cells with this C, as the shipped file's is
    (``with_taps``: on the members' features and pooled taps)."""
    if source.endswith(".keras"):
        opened = Classifier.open(source)
        model, card = opened.model, opened.card
    elif joint_head is not None:
        from crosslab import joint_fold_model

        spec = json.loads((ROOT / "training" / "protocol_base.json").read_text())
        model, card, _ = joint_fold_model(spec, [Path(s) for s in source.split("+")], framing,
                                          joint_head, with_taps)
    else:
        from run_models import joined_model

        model, card = joined_model(source.split("+"))
    if offsets:
        shift_head(model, card["classes"], known(card["classes"], offsets), card.get("class_offsets"))
    return Classifier(model, dict(card, test_framing=framing) if framing else card)


def with_fold_verdict(clf: Classifier, source: str, offset: float, tta: bool) -> Classifier:
    """``clf`` (crosslab run folders of one fold) with the card the app would
    judge a folder by: the fold's warning references, and ``offset`` on the
    fold's one-lab classes as its ``unfamiliar_offsets``."""
    from crosslab import one_lab_classes, read_rows, variant_config
    from domain_warning_eval import fold_check

    runs = [Path(s) for s in source.split("+")]
    held = runs[0].name.rsplit("_", 1)[1]
    spec = json.loads((ROOT / "training" / "protocol_base.json").read_text())
    first = runs[0].name[len("crosslab_"):-len(held) - 1]
    cfg = variant_config(spec, next(r["overrides"] for r in read_rows(runs[0].parent) if r["variant"] == first))
    check, _ = fold_check(spec, cfg, held, clf.model, clf.framing, tta)
    base = (ROOT / spec["datasets_dir"]).resolve()
    taught = one_lab_classes(base, [lab for lab in spec["crosslab_labs"] if lab != held], clf.classes)
    return Classifier(clf.model, dict(clf.card, domain_check=check, unfamiliar_offsets={c: offset for c in taught}))


def score(clf: Classifier, photos: list[tuple[Path, str]], mode: str, tta: bool, verdict: bool = False) -> dict:
    """``verdict``: the labels as the folder's verdict leaves them, with the
    self-training it gives a warned folder of enough cells and, on the same
    predictions, without (``caution_only``)."""
    predictions = list(clf.classify_files([p for p, _ in photos], tta=tta, mode=mode))
    if not verdict:
        return _most_confident(predictions, photos)
    checks = {way: folder_check(predictions, clf.card, way) for way in (True, False)}
    return {**_most_confident(checks[True].predictions, photos), "warned": checks[True].notice is not None,
            "changed": len(checks[True].changed), "caution": checks[True].caution,
            "caution_only": _most_confident(checks[False].predictions, photos)}


def _most_confident(predictions, photos: list[tuple[Path, str]]) -> dict:
    """A photo is right when its most confident white cell has its label."""
    best: dict[str, tuple[float, str]] = {}
    for pred in predictions:
        if pred.ok and pred.confidence > best.get(pred.path, (-1.0, ""))[0]:
            best[pred.path] = (pred.confidence, pred.label)
    right = sum(best.get(str(p), (0, None))[1] == label for p, label in photos)
    return {"photos": len(photos), "right": right, "accuracy": round(right / len(photos), 4),
            "no_cell_found": sum(str(p) not in best for p, _ in photos)}


def main() -> None:
    from crosslab import add_joint_head_args, check_joint_head_args, joint_head_of

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="crosslab run folders (A+B: joined) or model files")
    ap.add_argument("--views", type=int, choices=(1, 4), help="test-time views (default: the model card's; 4 for "
                                                              "run folders)")
    ap.add_argument("--framing", choices=tuple(FRAMINGS), help="cut the cells this way (default: the model's)")
    ap.add_argument("--class-offset", action="append", default=[], metavar="CLASS=NUMBER",
                    help="set that class's logit offset (a shipped file's class_offsets)")
    add_joint_head_args(ap)
    ap.add_argument("--unfamiliar-offset", type=float, metavar="NUMBER",
                    help="also score field mode as the app labels a warned folder (see above)")
    args = ap.parse_args()
    check_joint_head_args(ap, args)
    photos = one_cell_photos()
    offsets = parse_offsets(args.class_offset)
    for source in args.models:
        clf = classifier_for(source, args.framing, offsets, args.joint_head, args.taps)
        tta = clf.default_tta if args.views is None else args.views == 4
        row = {"model": source, "framing": clf.framing, "views": 4 if tta else 1,
               **({"class_offsets": offsets} if offsets else {}),
               **joint_head_of(args),
               "one input per photo": score(clf, photos, "cells", tta), "field mode": score(clf, photos, "fields", tta)}
        if args.unfamiliar_offset is not None:
            row["unfamiliar_offset"] = args.unfamiliar_offset
            row["field mode, folder verdict"] = score(with_fold_verdict(clf, source, args.unfamiliar_offset, tta), photos,
                                                      "fields", tta, verdict=True)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
