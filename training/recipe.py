"""Build a model of the shipped recipe from ../shared/datasets with the project's own engine.

    python training/recipe.py --config training/member_tight.json [--only final|lodo|card]

Steps: (1) the final model on all sources, evaluated on its held-out test
split per source; (2) for each leave-one-out source, a model trained
without it and tested on all of it (an unseen lab); (3) the card: those
unseen-lab figures, or, for a config trained on every lab
(``leave_one_out`` empty), the cross-lab protocol's folds of the same
settings (``crosslab_variant``), the speed and the markdown card.
The shipped model joins two such models (``training/shipped_model.json``
lists their configs, ``member_tight.json`` and ``member_tight_grey.json``;
``training/ship_ensemble.py`` joins them);
``training/protocol_base.json`` is the settings every ``crosslab.py``
variant starts from. Split manifests, histories, reports and timings land
in the config's ``runs`` folder, the figures in ``training/RESULTS.md`` and
the model's card.
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

from wbc_desktop.engine.console import ProgressPrinter  # noqa: E402
from wbc_desktop.engine.data.augment_config import AugmentConfig  # noqa: E402
from wbc_desktop.engine.infer.classify import Classifier  # noqa: E402
import numpy as np  # noqa: E402

from wbc_desktop.engine.data.dataset import decode_images, scan_labeled  # noqa: E402
from wbc_desktop.engine.models.class_offsets import describe, unfamiliar_caution  # noqa: E402
from wbc_desktop.engine.train.evaluation import evaluate_files, format_metrics, write_report  # noqa: E402
from wbc_desktop.engine.models.modelfile import (  # noqa: E402
    default_views, framing_of, read_card, save_model, update_card, views_phrase,
)
from wbc_desktop.engine.train.finetune import prepare_for  # noqa: E402
from wbc_desktop.engine.train.config import TrainConfig
from wbc_desktop.engine.train.trainer import reference_for, train  # noqa: E402

COMMON_FIVE = ["neutrophil", "eosinophil", "basophil", "lymphocyte", "monocyte"]
CREDITS = {
    "pbc": "Acevedo et al. 2020, Data in Brief 30:105474, Mendeley Data snkd93bnjr (CC BY 4.0)",
    "bccd": "BCCD dataset (MIT), crops from apple2373/BCCD, labels from Kaggle 'blood-cells'",
    "tecom": "Zheng et al. 2018, Micron; zxaoyou/segmentation_WBC (GPL-3.0)",
    "lisc": "LISC, Rezatofighi and Soltanian-Zadeh 2011 (free for research); crops from "
            "BTrDung/approach-to-segmentation-and-classification (MIT code)",
}


def train_config(spec: dict) -> TrainConfig:
    t = dict(spec["train"])
    augment = replace(AugmentConfig.from_strength(t.pop("augment_strength")), **t.pop("augment", {}))
    return replace(TrainConfig(**t), group_by=spec["group_by"], augment=augment)


def brief_metrics(metrics: dict) -> dict:
    """Metrics as results files keep them: the confusion matrix stays in the report."""
    keys = ("n", "accuracy", "balanced_accuracy", "macro_f1", "ece")
    out = {k: metrics[k] for k in keys}
    out["recall"] = {c: round(m["recall"], 4) for c, m in metrics["per_class"].items() if m["support"]}
    return out


def source_rows(paths: list, source: str) -> list[int]:
    """Rows whose file lies in the dataset folder ``source``."""
    return [i for i, p in enumerate(paths) if f"/{source}/" in Path(p).as_posix()]


def lab_cells(folder: Path, classes: list[str], size: int, framing: str = "as_is") -> tuple[np.ndarray, np.ndarray, list]:
    """Every readable image of a labelled folder whose class the model knows,
    decoded as the model sees it, with its label as an index into ``classes``
    and its path."""
    found = scan_labeled(folder)
    decoded = decode_images(found.paths, size, framing=framing)
    names = [found.classes[i] for i in found.labels]
    keep = [i for i, ok in enumerate(decoded.ok) if ok and names[i] in classes]
    return decoded.pixels[keep], np.asarray([classes.index(names[i]) for i in keep]), [found.paths[i] for i in keep]


def lab_arrays(folder: Path, classes: list[str], size: int, framing: str = "as_is") -> tuple[np.ndarray, np.ndarray]:
    """:func:`lab_cells` without the paths."""
    return lab_cells(folder, classes, size, framing)[:2]


def _per_source_test(clf: Classifier, data, sources: list[str], run_dir: Path) -> dict:
    """Test-split metrics of each source separately: pooled numbers would hide
    a weak lab behind the big one."""
    results = {}
    for src in sources:
        rows = source_rows(data.test.paths, src)
        if not rows:
            continue
        x, y = data.test.x[rows], data.test.y[rows]
        metrics = write_report(run_dir / f"report_test_{src}", y, clf.predict_arrays(x), data.classes, x,
                               [data.test.paths[i] for i in rows], {"split": "test", "source": src})
        print(f"--- test split, {src}\n{format_metrics(metrics)}", flush=True)
        results[src] = brief_metrics(metrics)
    return results


def run(spec: dict, sources: list[str], run_dir: Path, name: str, epochs: int | None = None) -> tuple:
    cfg = train_config(spec)
    if epochs:
        cfg = replace(cfg, epochs=epochs, patience=epochs)
    base = (ROOT / spec["datasets_dir"]).resolve()
    progress = ProgressPrinter()
    t0 = time.monotonic()
    data = prepare_for(cfg, [base / s for s in sources], progress)
    print(data.summary.describe(), "\n", data.manifest.describe(), flush=True)
    data.manifest.save(run_dir / "split.json")
    result = train(cfg, data, run_dir, progress=progress, resume=True, name=name)
    clf = Classifier(result.model, result.card)
    per_source = _per_source_test(clf, data, sources, run_dir)
    seconds = time.monotonic() - t0
    return result, clf, per_source, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--only", choices=("final", "lodo", "card"))
    parser.add_argument("--runs", help="where runs, splits and reports go (default: the config's runs)")
    parser.add_argument("--crosslab-runs", default=str(ROOT / "training" / "runs"),
                        help="where crosslab.py's results are (for a config without leave-one-out runs)")
    args = parser.parse_args()
    spec = json.loads(Path(args.config).read_text())
    if "members" in spec:
        print(f"{args.config} joins the models of {', '.join(spec['members'])}: run this recipe with each of those "
              "configs, then training/ship_ensemble.py", file=sys.stderr)
        return 2
    runs = Path(args.runs) if args.runs else ROOT / spec["runs"]  # one folder per config: resuming never mixes them
    results_file = runs / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    base = (ROOT / spec["datasets_dir"]).resolve()

    if args.only in (None, "final"):
        run_dir = runs / "final"
        result, clf, per_source, seconds = run(spec, spec["sources"], run_dir, spec["name"])
        results["final"] = {"trained_on": spec["sources"], "test_split": per_source, "epochs": len(result.history),
                            "best_epoch": result.best_epoch, "wall_seconds": round(seconds)}
        results_file.parent.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(results, indent=1))
        card = result.card
        card["test_metrics"] = per_source.get("pbc")
        card["test_metrics_by_source"] = per_source
        card["data_credits"] = {s: CREDITS.get(s, "") for s in spec["sources"]}
        card["recipe"] = recipe_line(args.config)
        card["training_seconds"] = round(seconds)
        out = ROOT / spec["output"]
        save_model(result.model, card, out)
        print(f"saved {out} ({out.stat().st_size / 1e6:.1f} MB)", flush=True)
    if args.only in (None, "lodo"):
        for held in spec["leave_one_out"]:
            train_sources = [s for s in spec["sources"] if s != held]
            run_dir = runs / f"lodo_{held}"
            result, clf, per_source, seconds = run(spec, train_sources, run_dir, f"without {held}",
                                                   epochs=spec.get("lodo_epochs"))
            held_set = scan_labeled(base / held)
            labels = [held_set.classes[i] for i in held_set.labels]
            metrics, _ = evaluate_files(clf, held_set.paths, labels, run_dir / f"report_unseen_{held}",
                                        extra={"data": held, "subset": "all (unseen lab)"})
            print(f"=== unseen lab {held}\n{format_metrics(metrics)}", flush=True)
            results[f"lodo_{held}"] = {"trained_on": train_sources, "unseen": brief_metrics(metrics),
                                       "test_split": per_source, "epochs": len(result.history),
                                       "best_epoch": result.best_epoch, "wall_seconds": round(seconds)}
            results_file.parent.mkdir(parents=True, exist_ok=True)
            results_file.write_text(json.dumps(results, indent=1))

    out = ROOT / spec["output"]
    if out.exists() and "domain_check" not in read_card(out):
        add_domain_check(out, spec)
    unseen = {held: results[f"lodo_{held}"]["unseen"] for held in spec["leave_one_out"] if f"lodo_{held}" in results}
    unseen = unseen or protocol_folds(spec, Path(args.crosslab_runs))
    if out.exists() and unseen:
        speed = classify_speed(out, base / spec["sources"][0])
        test_time = runs / "test_time.json"  # written by training/test_time_eval.py
        card = update_card(out, unseen_lab_evaluations=unseen, limitations=LIMITATIONS, classify_speed=speed,
                           with_a_gpu=WITH_A_GPU,
                           test_time_options=json.loads(test_time.read_text()) if test_time.exists() else None)
        write_markdown_card(card, unseen, out.with_suffix(".md"))
    return 0


def recipe_line(config: str) -> str:
    """How to rebuild the model: the card's ``recipe``."""
    return f"training/recipe.py --config {Path(config).resolve().relative_to(ROOT).as_posix()}"


def protocol_folds(spec: dict, runs: Path) -> dict:
    """A model trained on every lab has no lab it never saw; its estimate
    for a new lab is the cross-lab protocol's folds of the same settings
    (``crosslab_variant``: each lab left out in turn, at the protocol's
    budget), named as such in the card."""
    from crosslab import read_rows  # crosslab builds on this module

    variant = spec.get("crosslab_variant")
    return {f"{r['held_out']} (protocol fold)": r["unseen"] for r in read_rows(runs)
            if variant and r["variant"] == variant}


def add_domain_check(model_path: Path, spec: dict) -> None:
    """The folder-warning threshold for a model trained before training set
    it: from the model's own validation split, as training now does."""
    cfg = train_config(spec)
    base = (ROOT / spec["datasets_dir"]).resolve()
    data = prepare_for(cfg, [base / s for s in spec["sources"]], ProgressPrinter())
    clf = Classifier.open(model_path)
    check = reference_for(clf.model, data, clf.size)
    update_card(model_path, domain_check=check)
    print(f"folder-warning thresholds {check['colour']['threshold']} (stain), {check['confidence']['threshold']} "
          f"(confidence) set on {len(data.val.y)} validation cells", flush=True)


def classify_speed(model_path: Path, folder: Path, n: int = 1000) -> dict:
    """What ``wbc classify`` does (open the model, decode, resize, predict),
    timed on real files of one training source, with 4 views (its default)
    and with one."""
    clf = Classifier.open(model_path)
    files = scan_labeled(folder).paths
    chosen = files[:: max(1, len(files) // n)][:n]
    list(clf.classify_files(chosen[:64]))  # compile the forward pass outside the timing
    speed = {"images": len(chosen), "cpu_cores": os.cpu_count(), "files_from": folder.name}
    for key, tta in (("images_per_second_4_views", True), ("images_per_second", False)):
        t0 = time.monotonic()
        done = sum(p.ok for p in clf.classify_files(chosen, tta=tta))
        speed[key] = round(done / (time.monotonic() - t0), 1)
    return speed


LIMITATIONS = (
    "Peripheral blood smears only (May-Grunwald-Giemsa/Wright-like stains), as single-cell crops or as field "
    "photos whose white cells the localiser finds; not for bone marrow, blasts or other abnormal cells, which are "
    "not among its classes. Trained on a 2-core CPU within a few hours: below the 99 % PBC goal, and far weaker on "
    "other labs' images (see the unseen-lab figures), so every prediction is decision support for a technologist, "
    "and a lab should calibrate it to its own cells (Lab menu, wbc calibrate). Basophils are rare outside PBC and "
    "their recall on other labs is barely measured."
)


WITH_A_GPU = (
    "The 2-core CPU budget set the compact network at 96 px and 36 epochs, one seed. A GPU run (the recipe runs "
    "under tf.distribute) would fine-tune EfficientNet-Lite0/1/2 from ImageNet on all four labs at 160-224 px for "
    "30+ epochs with the same cell-centred framing, and average several seeds per setting; that is where the "
    "missing points on PBC and on unseen labs most likely are."
)


def write_markdown_card(card: dict, unseen: dict, path: Path) -> None:
    """The human-readable model card shipped beside the model file."""
    def row(name: str, m: dict) -> str:
        rec = ", ".join(f"{c} {v:.2f}" for c, v in m["recall"].items())
        return f"| {name} | {m['n']} | {m['accuracy']:.4f} | {m['balanced_accuracy']:.4f} | {m['macro_f1']:.4f} | {rec} |"

    views = views_phrase(default_views(card))
    unfamiliar_offsets, temperature = unfamiliar_caution(card)
    lines = [
        f"# Model card: {card['name']}", "",
        f"- File: `{path.with_suffix('.keras').name}` ({path.with_suffix('.keras').stat().st_size / 1e6:.1f} MB); "
        f"classes in output order: {', '.join(card['classes'])}",
        f"- Architecture: {card['architecture']}; input {card['input_size']} px, {card['preprocessing']['resize']}; "
        f"{card['parameters']['total']:,} parameters; weights: {card['weights_origin']}",
        f"- Recipe: `{card.get('recipe', '')}`; created {card['created']} with engine {card['engine_version']}",
        "- Speed, end to end (decode, resize, predict) on {cpu_cores} CPU cores, {images} {files_from} files: "
        "{images_per_second_4_views:.0f} images/s with 4 views, {images_per_second:.0f} with one"
        .format(**card["classify_speed"]) + f"; the app and `wbc classify` use {views} by default",
        f"- Cells are cut `{framing_of(card)}` in use" + (
            f" (trained on `{card['preprocessing']['framing']}`; the cut in use was chosen on the cross-lab protocol)"
            if card.get("test_framing") else ""),
        *(["- Logit offsets (chosen on the cross-lab protocol: these classes were learned from one lab only, and "
           "elsewhere they drew other cells): " + describe(card["class_offsets"])]
          if card.get("class_offsets") else []),
        *(["- On a folder that the folder warning finds unlike the training labs, these are added to the same "
           "logits, and the result names it: " + describe(unfamiliar_offsets)] if unfamiliar_offsets else []),
        *([f"- On such a folder the logits are also divided by {temperature:g} (chosen on the "
           "cross-lab protocol: on a lab it never saw the model is surer than it is right), so more of its cells "
           "are flagged for review; labels do not change"] if temperature != 1.0 else []),
        "", "## Held-out test splits (grouped, de-duplicated, never used for choices)", "",
        "| data | n | accuracy | balanced acc. | macro-F1 | recall per class |", "|---|---|---|---|---|---|",
    ]
    lines += [row(src, m) for src, m in card.get("test_metrics_by_source", {}).items()]
    lines += ["", "## Labs never seen in training (leave one dataset out, five common classes)", "",
              "| trained without | n | accuracy | balanced acc. | macro-F1 | recall per class |", "|---|---|---|---|---|---|"]
    if any(lab.endswith("(protocol fold)") for lab in unseen):
        lines[-2:-2] = ["A protocol fold is these settings trained without that lab at the cross-lab protocol's budget "
                        "(`training/crosslab.py`: 8 epochs, 3,000 PBC images) and scored on all of it; the shipped "
                        "model itself was trained on every lab listed here, so these are its estimate for a new lab.",
                        ""]
    lines += [row(lab, m) for lab, m in unseen.items()]
    if card.get("test_time_options"):
        lines += ["", "## Test-time options (`training/test_time_eval.py`)", "",
                  f"The app and `wbc classify` use {views} by default (`--tta`: 4 views, `--no-tta`: one); "
                  "*Adapt to stain* (AdaBN) is off by default. Accuracy / macro-F1:", "",
                  "| data | one view | 4 views | AdaBN, one view | AdaBN, 4 views |", "|---|---|---|---|---|"]
        for key, m in card["test_time_options"].items():
            cells = [m.get("as_shipped", m), m.get("adabn_on_unseen_lab", {})]
            values = [f"{c[v]['accuracy']:.4f} / {c[v]['macro_f1']:.4f}" if v in c else "-"
                      for c in cells for v in ("one_view", "four_views")]
            name = key.replace("shipped_test_", "test split: ").replace("unseen_", "all of unseen ")
            lines.append(f"| {name} | " + " | ".join(values) + " |")
    lines += ["", "## Limitations", "", card.get("limitations", LIMITATIONS), "",
              "## What a GPU run would change", "", card.get("with_a_gpu", WITH_A_GPU), "", "## Training data credits", ""]
    lines += [f"- {src}: {credit}" for src, credit in card.get("data_credits", {}).items()]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
