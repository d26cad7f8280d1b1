"""The cross-lab protocol every modelling choice is made on.

    python training/crosslab.py --variant compact='{}' \
        --variant lite0_128='{"arch": "efficientnet_lite0", "weights": "imagenet", "img_size": 128}'
    python training/crosslab.py --ensemble compact+lite0_128   # the two folds' models joined, no training
    python training/crosslab.py --ensemble compact+lite0_128 --framing cell_close   # cut closer at test time
    python training/crosslab.py --table          # the markdown table of all rows so far

Leave one lab out over every labelled lab of the config (``crosslab_labs``:
pbc, bccd, tecom, lisc). For each variant and each left-out lab, a model is
trained as the recipe trains it (its ``train`` settings, overridden by the
variant's JSON: ``TrainConfig`` fields, ``augment`` for ``AugmentConfig``
fields) on the other labs, with pbc cut to a fixed random subset (2400
training / 600 validation images) so that one fold costs minutes, not an
hour. It is then scored on *all* of the left-out lab's cells of the five
common classes (an 8-class model's ig/erythroblast/platelet answers count as
errors), and on pbc's grouped test split when pbc was trained on. The
figures to choose by are the mean and the worst left-out lab; one view at
test time, so that only training choices differ (``--views 4`` scores
ensembles with the app's four test-time views, to choose a model's default). One JSON line per fold is
appended to ``crosslab.jsonl`` in the runs folder; a fold already there is
not trained again, so an interrupted screen resumes where it stopped. Each
fold model's answers on the scored cells are kept beside its weights, so
screening another join of fold models already scored costs no inference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from recipe import COMMON_FIVE, brief_metrics, lab_arrays, source_rows, train_config  # noqa: E402

from wbc_desktop.engine.infer.classify import Classifier  # noqa: E402
from wbc_desktop.engine.train.evaluation import compute_metrics  # noqa: E402
from wbc_desktop.engine.train.finetune import prepare_for  # noqa: E402
from wbc_desktop.engine.data.dataset import decode_images, scan_labeled  # noqa: E402
from wbc_desktop.engine.data.prepare import SplitArrays  # noqa: E402
from wbc_desktop.engine.locate.framing import FRAMINGS  # noqa: E402
from wbc_desktop.engine.models.class_offsets import describe, known, offset_vector, parse_offsets, shift_head  # noqa: E402
from wbc_desktop.engine.train.joint_head import JOINT_HEAD_C, refit_head  # noqa: E402
from wbc_desktop.engine.models.modelfile import framing_of  # noqa: E402
from wbc_desktop.engine.train.trainer import train  # noqa: E402
from wbc_desktop.engine.train.run_layout import RunLayout  # noqa: E402
from wbc_desktop.engine.io.atomic import atomic_path  # noqa: E402

PBC_TRAIN, PBC_VAL, EPOCHS = 2400, 600, 8
RESULTS = "crosslab.jsonl"


def read_rows(runs: Path) -> list[dict]:
    """Every fold scored so far, one dict per line of ``crosslab.jsonl``."""
    path = runs / RESULTS
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _pbc_subset(split: SplitArrays, n: int, rng: np.random.Generator) -> SplitArrays:
    """All of the smaller labs, ``n`` random pbc images: the small labs
    carry the cross-lab signal, pbc is only there in bulk."""
    pbc = source_rows(split.paths, "pbc")
    if not pbc:
        return split
    chosen = rng.choice(pbc, min(n, len(pbc)), replace=False)
    keep = np.sort(np.concatenate([np.setdiff1d(np.arange(len(split.paths)), pbc), chosen]))
    return SplitArrays(split.x[keep], split.y[keep], [split.paths[i] for i in keep])


def variant_config(spec: dict, overrides: dict):
    cfg = train_config(spec)
    fields = {k: v for k, v in overrides.items() if k != "augment"}
    augment = replace(cfg.augment, **overrides.get("augment", {}))
    fields.setdefault("epochs", EPOCHS)
    return replace(cfg, patience=fields["epochs"], augment=augment, **fields)


def fold(spec: dict, name: str, overrides: dict, held: str, runs: Path) -> dict:
    cfg = variant_config(spec, overrides)
    base = (ROOT / spec["datasets_dir"]).resolve()
    t0 = time.monotonic()
    data = prepare_for(cfg, [base / s for s in spec["crosslab_labs"] if s != held])
    rng = np.random.default_rng(0)
    data.train, data.val = _pbc_subset(data.train, PBC_TRAIN, rng), _pbc_subset(data.val, PBC_VAL, rng)
    result = train(cfg, data, runs / f"crosslab_{name}_{held}", name=f"crosslab {name} without {held}")
    train_seconds = time.monotonic() - t0
    clf = Classifier(result.model, result.card)
    common = [c for c in COMMON_FIVE if c in clf.classes]
    x, y = lab_arrays(base / held, common, cfg.img_size, cfg.framing)
    y = np.asarray([clf.classes.index(common[i]) for i in y])
    row = {"variant": name, "overrides": overrides, "held_out": held,
           "unseen": brief_metrics(compute_metrics(y, clf.predict_arrays(x), clf.classes)),
           "train_seconds": round(train_seconds), "epochs": cfg.epochs}
    pbc_test = source_rows(data.test.paths, "pbc")
    if pbc_test:
        xt, yt = data.test.x[pbc_test], data.test.y[pbc_test]
        row["pbc_test"] = brief_metrics(compute_metrics(yt, clf.predict_arrays(xt), clf.classes))
    row["wall_seconds"] = round(time.monotonic() - t0)
    return row


def member_answers(spec: dict, member: str, held: str, runs: Path, views: int = 1,
                   framing: str | None = None) -> dict:
    """One fold model's probabilities on the cells a fold scores: all of the
    left-out lab's (``unseen_*``) and its pbc test split (``pbc_*``, keyed by
    path). Kept beside the weights (``answers_<cut>_<views>v.npz``, redone
    when the weights are newer) so that screening another join of members
    costs no inference for members already scored."""
    from run_models import best_epoch_model

    run_dir = runs / f"crosslab_{member}_{held}"
    cache = run_dir / f"answers_{framing or 'own'}_{views}v.npz"
    if cache.exists() and cache.stat().st_mtime >= RunLayout(run_dir).best_weights.stat().st_mtime:
        with np.load(cache) as saved:
            return {k: saved[k] for k in saved.files}
    clf = Classifier(*best_epoch_model(run_dir))
    tta = views == 4
    base = (ROOT / spec["datasets_dir"]).resolve()
    common = [c for c in COMMON_FIVE if c in clf.classes]
    x, y = lab_arrays(base / held, common, clf.size, framing or clf.framing)
    answers = {"classes": np.asarray(clf.classes), "unseen_probs": clf.predict_arrays(x, tta=tta),
               "unseen_y": np.asarray([clf.classes.index(common[i]) for i in y])}
    if held != "pbc":
        rows = read_rows(runs)
        cfg = variant_config(spec, next(r["overrides"] for r in rows if r["variant"] == member))
        data = prepare_for(cfg, [base / s for s in spec["crosslab_labs"] if s != held])
        pbc = source_rows(data.test.paths, "pbc")
        paths = [data.test.paths[i] for i in pbc]
        xt = data.test.x[pbc] if not framing else recut(paths, cfg.img_size, framing)
        answers |= {"pbc_paths": np.asarray([str(p) for p in paths]), "pbc_y": data.test.y[pbc],
                    "pbc_probs": clf.predict_arrays(xt, tta=tta)}
    with atomic_path(cache) as tmp, open(tmp, "wb") as out:
        np.savez(out, **answers)
    return answers


def ensemble_fold(spec: dict, members: list[str], held: str, runs: Path, views: int = 1,
                  framing: str | None = None, offsets: dict[str, float] | None = None,
                  one_lab_offset: float | None = None) -> dict:
    """Members' fold models, each given the cells in its own framing and
    input size, their probabilities joined by a normalised geometric mean:
    what averaging the logits of one joined model (``engine.models.ensemble``)
    gives, and it also joins members that frame cells differently. The pbc
    test cells are those in every member's test split: a member decoding
    otherwise may have split near-duplicates differently, and no member may
    have trained on a scored cell. ``framing``: cut every cell this way at
    test time instead of as each member was trained (a test-time choice,
    like the views). ``offsets``: class name -> a number added to that
    class's logit, as a shipped file's ``class_offsets`` adds it;
    ``one_lab_offset``: that number on every class that only one of the
    fold's training labs teaches (the rule behind the shipped offsets)."""
    t0 = time.monotonic()
    rows = read_rows(runs)
    answers = [member_answers(spec, m, held, runs, views, framing) for m in members]
    classes = [str(c) for c in answers[0]["classes"]]
    y = answers[0]["unseen_y"]
    if any(not np.array_equal(a["unseen_y"], y) or list(a["classes"]) != classes for a in answers):
        raise RuntimeError(f"members read different cells of {held}")
    if one_lab_offset is not None:
        base = (ROOT / spec["datasets_dir"]).resolve()
        taught = one_lab_classes(base, [lab for lab in spec["crosslab_labs"] if lab != held], classes)
        offsets = {c: one_lab_offset for c in taught}
    shift = offset_vector(classes, known(classes, offsets or {}))
    row = {"variant": ensemble_name(members, views, framing, offsets, one_lab_offset),
           "overrides": {"ensemble": members, "views": views, **({"framing": framing} if framing else {}),
                         **({"class_offsets": offsets} if offsets else {})}, "held_out": held,
           "unseen": brief_metrics(compute_metrics(y, _geometric_mean([a["unseen_probs"] for a in answers], shift),
                                                   classes)),
           "train_seconds": sum(r["train_seconds"] for r in rows if r["variant"] in members and r["held_out"] == held),
           "epochs": None}
    if held != "pbc":
        keep = sorted(set.intersection(*(set(a["pbc_paths"]) for a in answers)))
        picked = [{p: i for i, p in enumerate(a["pbc_paths"])} for a in answers]
        rows_of = [np.asarray([where[p] for p in keep], dtype=int) for where in picked]
        y = answers[0]["pbc_y"][rows_of[0]]
        probs = [a["pbc_probs"][r] for a, r in zip(answers, rows_of)]
        row["pbc_test"] = brief_metrics(compute_metrics(y, _geometric_mean(probs, shift), classes))
    row["wall_seconds"] = round(time.monotonic() - t0)
    return row


def joint_fold_model(spec: dict, run_dirs: list[Path], cut: str | None = None, C: float = JOINT_HEAD_C,
                     with_taps: bool = False):
    """(model, card, data) of one fold's models (``crosslab_<variant>_<held>``
    folders) joined as the shipped file joins them (``with_taps``: each
    member's pooled mid-level activations beside its features), the head
    fitted again on their joined features of the fold's training cells
    (those the members trained on, cut ``cut``: as the model is used; by
    default as the members were trained) by ``engine.train.joint_head``;
    ``data``: the fold's split."""
    from run_models import joined_model

    held = run_dirs[0].name.rsplit("_", 1)[1]
    first = run_dirs[0].name[len("crosslab_"):-len(held) - 1]
    model, card = joined_model(run_dirs, with_taps)
    cfg = variant_config(spec, next(r["overrides"] for r in read_rows(run_dirs[0].parent) if r["variant"] == first))
    base = (ROOT / spec["datasets_dir"]).resolve()
    data = prepare_for(cfg, [base / s for s in spec["crosslab_labs"] if s != held])
    train_cells = _pbc_subset(data.train, PBC_TRAIN, np.random.default_rng(0))  # as fold() trained them
    refit_head(model, recut(train_cells.paths, card["input_size"], cut or framing_of(card)), train_cells.y, C)
    return model, card, data


def add_joint_head_args(parser) -> None:
    """``--joint-head C`` and ``--taps``, as every protocol script takes them."""
    parser.add_argument("--joint-head", type=float, metavar="C",
                        help="fit the joined head again on the fold's training cells "
                             f"(engine.train.joint_head; its usual C is {JOINT_HEAD_C:g})")
    parser.add_argument("--taps", action="store_true",
                        help="with --joint-head: each member's pooled mid-level activations join its features "
                             "(engine.models.ensemble.tap_layers)")


def check_joint_head_args(parser, args) -> None:
    if args.taps and args.joint_head is None:
        parser.error("--taps needs --joint-head: only a fitted head weighs the taps")


def joint_head_entry(C: float, with_taps: bool) -> dict:
    """A joint head's settings as shipped_model.json's ``joint_head`` holds them."""
    return {"C": C, **({"taps": True} if with_taps else {})}


def joint_head_of(args) -> dict:
    """What a result row records of ``--joint-head`` / ``--taps``: the
    ``joint_head`` entry, or nothing."""
    return {} if args.joint_head is None else {"joint_head": joint_head_entry(args.joint_head, args.taps)}


def joint_head_name(C: float, with_taps: bool) -> str:
    return f" (joint head C={C:g}{', taps' if with_taps else ''})"


def joint_head_fold(spec: dict, members: list[str], held: str, runs: Path, framing: str | None = None,
                    offsets: dict[str, float] | None = None, C: float = JOINT_HEAD_C, with_taps: bool = False) -> dict:
    """:func:`joint_fold_model` scored as :func:`ensemble_fold` scores."""
    t0 = time.monotonic()
    rows = read_rows(runs)
    model, card, data = joint_fold_model(spec, [runs / f"crosslab_{m}_{held}" for m in members], framing, C,
                                         with_taps)
    classes, size, cut = card["classes"], card["input_size"], framing or framing_of(card)
    shift_head(model, classes, known(classes, offsets or {}))
    clf = Classifier(model, card)
    base = (ROOT / spec["datasets_dir"]).resolve()
    common = [c for c in COMMON_FIVE if c in classes]
    x, y = lab_arrays(base / held, common, size, cut)
    y = np.asarray([classes.index(common[i]) for i in y])
    row = {"variant": ensemble_name(members, 1, framing, offsets) + joint_head_name(C, with_taps),
           "overrides": {"ensemble": members, "joint_head": joint_head_entry(C, with_taps),
                         **({"framing": framing} if framing else {}),
                         **({"class_offsets": offsets} if offsets else {})}, "held_out": held,
           "unseen": brief_metrics(compute_metrics(y, clf.predict_arrays(x), classes)),
           "train_seconds": sum(r["train_seconds"] for r in rows if r["variant"] in members and r["held_out"] == held),
           "epochs": None}
    pbc = source_rows(data.test.paths, "pbc")
    if pbc:
        xt = recut([data.test.paths[i] for i in pbc], size, cut)
        row["pbc_test"] = brief_metrics(compute_metrics(data.test.y[pbc], clf.predict_arrays(xt), classes))
    row["wall_seconds"] = round(time.monotonic() - t0)
    return row


def recut(files: list, size: int, framing: str) -> np.ndarray:
    """Split cells cut another way than the split was made with (they all
    decoded once already, so none may fail now)."""
    decoded = decode_images(files, size, framing=framing)
    if not decoded.ok.all():
        raise RuntimeError(f"{int((~decoded.ok).sum())} test cells could not be cut {framing!r}")
    return decoded.pixels


def recut_split(data, size: int, framing: str) -> None:
    """A prepared split's validation and test cells cut another way, the
    split itself (made with the training cut) kept."""
    for part in (data.val, data.test):
        part.x = recut(part.paths, size, framing)


def ensemble_name(members: list[str], views: int, framing: str | None = None,
                  offsets: dict[str, float] | None = None, one_lab_offset: float | None = None) -> str:
    shifted = (f" {{one-lab classes {one_lab_offset:+g}}}" if one_lab_offset is not None
               else f" {{{describe(offsets)}}}" if offsets else "")
    return "+".join(members) + ("" if views == 1 else f" ({views} views)") + (f" [{framing}]" if framing else "") + shifted


MIN_TAUGHT = 10  # a lab with fewer cells of a class (bccd's 3 basophils) does not teach it


def one_lab_classes(base: Path, labs: list[str], classes: list[str]) -> list[str]:
    """The classes that only one of ``labs`` holds at least ``MIN_TAUGHT``
    cells of: learned with that lab's look alone."""
    teachers = Counter()
    for lab in labs:
        found = scan_labeled(base / lab)
        held = np.bincount(found.labels, minlength=len(found.classes))
        teachers.update(c for c, n in zip(found.classes, held) if n >= MIN_TAUGHT)
    return [c for c in classes if teachers[c] == 1]


def _geometric_mean(probs: list[np.ndarray], shift: np.ndarray | float = 0.0) -> np.ndarray:
    """Members' probabilities joined as one model averaging their logits,
    ``shift`` added to the joined logits."""
    joined = np.exp(np.mean([np.log(np.clip(p, 1e-12, 1.0)) for p in probs], axis=0) + shift)
    return joined / joined.sum(axis=1, keepdims=True)


def table(rows: list[dict]) -> str:
    """One line per variant: mean and worst left-out lab, pbc in-domain, time."""
    labs = sorted({r["held_out"] for r in rows})
    lines = ["| variant | " + " | ".join(f"unseen {lab} acc / F1" for lab in labs)
             + " | mean acc / F1 | worst acc / F1 | pbc test acc / F1 | train time (all folds) |",
             "|---" * (len(labs) + 5) + "|"]
    for name in dict.fromkeys(r["variant"] for r in rows):
        mine = {r["held_out"]: r for r in rows if r["variant"] == name}
        cells = [f"{mine[lab]['unseen']['accuracy']:.3f} / {mine[lab]['unseen']['macro_f1']:.3f}" if lab in mine else "-"
                 for lab in labs]
        acc = [r["unseen"]["accuracy"] for r in mine.values()]
        f1 = [r["unseen"]["macro_f1"] for r in mine.values()]
        pbc = [r["pbc_test"] for r in mine.values() if "pbc_test" in r]
        worst = min(mine.values(), key=lambda r: r["unseen"]["accuracy"])
        done = "" if len(mine) == len(labs) else f" ({len(mine)} of {len(labs)} folds)"
        lines.append(
            f"| {name}{done} | " + " | ".join(cells)
            + f" | {np.mean(acc):.3f} / {np.mean(f1):.3f} | {min(acc):.3f} ({worst['held_out']}) / {min(f1):.3f}"
            + (f" | {np.mean([p['accuracy'] for p in pbc]):.3f} / {np.mean([p['macro_f1'] for p in pbc]):.3f}" if pbc else " | -")
            + f" | {sum(r['train_seconds'] for r in mine.values()) / 60:.0f} min |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", default=[], help="name='{json overrides}'")
    parser.add_argument("--config", default=str(ROOT / "training" / "protocol_base.json"))
    parser.add_argument("--runs", default=str(ROOT / "training" / "runs"))
    parser.add_argument("--labs", nargs="*", help="left-out labs to run (default: every lab of the protocol)")
    parser.add_argument("--ensemble", action="append", default=[], help="variantA+variantB: their fold models joined (each in its own framing)")
    parser.add_argument("--views", type=int, choices=(1, 4), default=1,
                        help="test-time views the --ensemble rows are scored with (a single variant is an ensemble of one)")
    parser.add_argument("--framing", choices=tuple(FRAMINGS),
                        help="cut the cells this way at test time for the --ensemble rows (default: as trained)")
    parser.add_argument("--class-offset", action="append", default=[], metavar="CLASS=NUMBER",
                        help="added to that class's logit for the --ensemble rows (a shipped file's class_offsets)")
    parser.add_argument("--one-lab-offset", type=float, metavar="NUMBER",
                        help="added to the logit of every class that only one of a fold's training labs teaches")
    add_joint_head_args(parser)
    parser.add_argument("--table", action="store_true", help="print the table of every row so far")
    args = parser.parse_args()
    check_joint_head_args(parser, args)
    offsets = parse_offsets(args.class_offset)
    spec = json.loads(Path(args.config).read_text())
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    results = runs / RESULTS
    rows = read_rows(runs)
    for item in args.variant:
        name, _, overrides = item.partition("=")
        for held in args.labs or spec["crosslab_labs"]:
            if any(r["variant"] == name and r["held_out"] == held for r in rows):
                continue
            row = fold(spec, name, json.loads(overrides or "{}"), held, runs)
            print(json.dumps(row), flush=True)
            rows.append(row)
            with open(results, "a") as f:
                f.write(json.dumps(row) + "\n")
    for item in args.ensemble:
        members = item.split("+")
        for held in args.labs or spec["crosslab_labs"]:
            name = ensemble_name(members, args.views, args.framing, offsets, args.one_lab_offset)
            if args.joint_head is not None:
                name += joint_head_name(args.joint_head, args.taps)
            if any(r["variant"] == name and r["held_out"] == held for r in rows):
                continue
            if args.joint_head is not None:
                if args.views != 1 or args.one_lab_offset is not None:
                    raise SystemExit("--joint-head is scored with one view and the --class-offset offsets")
                row = joint_head_fold(spec, members, held, runs, args.framing, offsets, args.joint_head, args.taps)
            else:
                row = ensemble_fold(spec, members, held, runs, args.views, args.framing, offsets,
                                    args.one_lab_offset)
            print(json.dumps(row), flush=True)
            rows.append(row)
            with open(results, "a") as f:
                f.write(json.dumps(row) + "\n")
    if args.table or args.variant or args.ensemble:
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
