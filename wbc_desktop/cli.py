"""``wbc``: the engine from the command line (classify, train, tune,
evaluate, check, info) and the desktop app (``wbc gui``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import __version__, paths
from .engine.console import ProgressPrinter, quiet_native_logs
from .engine.infer.modes import MODES
from .engine.io.files import check_output_file, check_output_folder
from .engine.train.run_layout import RunLayout
from .engine.progress import Cancelled, CancelToken


def _default_model(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    model = paths.default_model_path()
    if not model.exists():
        sys.exit(f"error: no --model given and the shipped model is missing ({model})")
    return model


def _tta(args, clf) -> bool:
    """``--tta``/``--no-tta`` as given, else the model's own default."""
    return clf.default_tta if args.tta is None else args.tta


def cmd_classify(args) -> int:
    from .engine.data.dataset import collect_images
    from .engine.infer.modes import GREY_IMAGE, NO_WHITE_CELL
    from .engine.infer.classify import Classifier, folder_check, write_predictions_csv

    if args.out:
        check_output_file(args.out, (".csv",))
    files, skipped = collect_images(args.paths)
    if not files:
        for s in skipped:
            print(f"warning: skipped {s.path}: {s.reason}", file=sys.stderr)
        print(f"error: no images found in {', '.join(args.paths)}" + ("; nothing written" if args.out else ""),
              file=sys.stderr)
        return 1
    clf = Classifier.open(_default_model(args.model))
    if args.adapt:
        clf = clf.adapted_to(files)
        print(f"adapted normalisation statistics: {clf.name}", file=sys.stderr)
    tta = _tta(args, clf)
    results = []
    failed = empty = grey = 0
    t0 = time.monotonic()
    interrupted = False
    try:
        for pred in clf.classify_collected(files, skipped, batch_size=args.batch_size, tta=tta, mode=args.mode):
            results.append(pred)
            if pred.cell is not None and pred.cell.grey and pred.cell.index == 0:  # once per file
                grey += 1
                print(f"note: {pred.path}: {GREY_IMAGE}", file=sys.stderr)
            if pred.error == NO_WHITE_CELL:
                empty += 1
                print(f"note: {pred.path}: {NO_WHITE_CELL}", file=sys.stderr)
            elif not pred.ok:
                failed += 1
                print(f"warning: skipped {pred.path}: {pred.error}", file=sys.stderr)
            elif not args.out:
                print(_cell_line(pred))
    except KeyboardInterrupt:
        interrupted = True
    seconds = time.monotonic() - t0
    check = None if interrupted else folder_check(results, clf.card, args.self_training)  # a folder is judged whole
    if check:
        results = check.predictions
    if args.out:
        made_by = "; ".join(filter(None, (clf.described(tta), check and check.caution)))
        write_predictions_csv(args.out, results, clf.classes, made_by)
    ok = len(results) - failed - empty
    images = len({p.path for p in results})
    done = (f"interrupted after {images} of {len(files) + len(skipped)} files: " if interrupted else "")
    print(f"{done}classified {ok} cells in {images - failed - empty} images ({ok / max(seconds, 1e-9):.1f} cells/s), "
          f"{failed} unreadable" + (f", {empty} with no white cell" if empty else "") + (f", {grey} grey" if grey else "")
          + (f"; wrote {'the results so far to ' if interrupted else ''}{args.out}" if args.out else ""),
          file=sys.stderr)
    if interrupted:
        return 130
    if check.notice:
        print(f"warning: {check.notice}", file=sys.stderr)
    if check.changed and not args.out:
        print("relabelled on this folder:", file=sys.stderr)
        for pred in check.changed:
            print(_cell_line(pred))
    return 0 if ok else 1


def _cell_line(pred) -> str:
    where = f"#{pred.cell.index}" if pred.cell.in_field else ""
    return f"{pred.path}{where}\t{pred.label}\t{pred.confidence:.3f}"


def _train_config(args):
    from .engine.data.augment_config import AugmentConfig
    from .engine.train.config import TrainConfig, matched_to_base

    values = {f.name: getattr(args, f.name) for f in _train_fields()}
    cfg = matched_to_base(TrainConfig(**values, augment=AugmentConfig.from_strength(args.augment)))
    problems = cfg.validate()
    if problems:
        sys.exit("error: " + "; ".join(problems))
    return cfg


def _train_fields():
    """Every ``TrainConfig`` setting but the augmentation (one strength knob)."""
    from dataclasses import fields

    from .engine.train.config import TrainConfig

    return [f for f in fields(TrainConfig) if f.name != "augment"]


def _train_evaluate_save(cfg, source, run_dir: Path, out: Path, name: str, resume: bool = False,
                         card_extra: dict | None = None) -> int:
    """The app's own fine-tune job (train, then test split and base model
    scored), with its result saved as a model file."""
    from .engine.train.evaluation import format_metrics
    from .engine.train.finetune import run_finetune
    from .engine.models.modelfile import save_model

    try:
        outcome = run_finetune(cfg, source, run_dir, name=name, progress=ProgressPrinter(), cancel=CancelToken(),
                               resume=resume)
    except KeyboardInterrupt:
        print(f"\ninterrupted: resume with --resume --run-dir {run_dir}", file=sys.stderr)
        return 130
    result = outcome.result
    print(f"trained {len(result.history)} epochs in {result.seconds:.0f} s; best epoch {result.best_epoch}", file=sys.stderr)
    if outcome.metrics:
        print(format_metrics(outcome.metrics), file=sys.stderr)
    if outcome.base_metrics:
        b = outcome.base_metrics
        print(f"base model on the same test images: accuracy {b['accuracy']:.4f}, macro-F1 {b['macro_f1']:.4f}",
              file=sys.stderr)
    card = dict(result.card, training_seconds=round(result.seconds, 1), **(card_extra or {}))
    save_model(result.model, card, out)
    print(f"saved {out} (report in {RunLayout(run_dir).report})", file=sys.stderr)
    return 0


def _check_training_data(sources: list[str]) -> None:
    """Before any decoding: a split manifest, or folders with two classes."""
    from .engine.data.dataset import require_two_classes, scan_sources

    if len(sources) == 1 and sources[0].endswith(".json"):
        return
    data = scan_sources(sources)
    require_two_classes(data.classes, [int((data.labels == i).sum()) for i in range(len(data.classes))])


def _resume_config(cfg, run_dir: Path):
    """The run's own settings; resuming with others would train and then fail."""
    from .engine.train.config import TrainConfig

    files = RunLayout(run_dir)
    if not files.config.exists():
        raise ValueError(f"{run_dir}: no run to resume here (no {files.config.name})")
    saved = TrainConfig.from_dict(files.read_config()["config"])
    changed = [f.name for f in _train_fields() if getattr(saved, f.name) != getattr(cfg, f.name)]
    if changed:
        given = ", ".join(f"{name} {getattr(cfg, name)!r} (the run has {getattr(saved, name)!r})" for name in changed)
        raise ValueError(f"{run_dir} was started with other settings: {given}; "
                         "resume with the run's settings, or start a new run")
    return saved


def cmd_train(args) -> int:
    cfg = _train_config(args)
    out = check_output_file(args.out, (".keras",))
    run_dir = Path(args.run_dir or out.with_suffix(".run"))
    files = RunLayout(run_dir)
    if args.resume:
        cfg = _resume_config(cfg, run_dir)
        source = files.split if files.split.exists() else args.data
        state = files.state
        if state.exists() and json.loads(state.read_text()).get("epochs_done", 0) >= cfg.epochs:
            print(f"{run_dir}: this run already finished its {cfg.epochs} epochs; nothing left to train, "
                  "its best weights are evaluated and saved", file=sys.stderr)
    else:
        _check_training_data(args.data)
        source = args.data
    check_output_folder(run_dir)
    return _train_evaluate_save(cfg, source, run_dir, out, args.name or out.stem, resume=args.resume)


def cmd_tune(args) -> int:
    from .engine.train.finetune import prepare_for
    from .engine.train.tuning import tune

    base = _train_config(args)
    out_dir = check_output_folder(args.out)
    _check_training_data(args.data)
    split = RunLayout(out_dir).split
    data = prepare_for(base, args.data, ProgressPrinter())
    print(data.summary.describe(), file=sys.stderr)
    print(data.manifest.describe(), file=sys.stderr)
    data.manifest.save(split)
    best, rows = tune(data, base, out_dir, args.trials, trial_epochs=args.trial_epochs, progress=ProgressPrinter())
    for r in rows:
        print("  ".join(f"{k}={v}" for k, v in r.items()), file=sys.stderr)
    print(f"retraining the best configuration for {best.epochs} epochs", file=sys.stderr)
    return _train_evaluate_save(best, split, out_dir / "best_run", out_dir / "best_model.keras",
                                args.name or "tuned model",
                                card_extra={"tuning": {"trials": rows, "chosen_on": "validation macro-F1"}})


def cmd_calibrate(args) -> int:
    from .engine.infer.classify import Classifier
    from .engine.models.class_offsets import describe
    from .engine.models.modelfile import save_model
    from .engine.train.calibrate import MIN_PER_CLASS, calibrate_folder, pseudo_labeller

    out = check_output_file(args.out, (".keras",))
    clf = Classifier.open(_default_model(args.model))
    t0 = time.monotonic()
    result = calibrate_folder(clf, args.labelled, unlabelled=args.unlabelled or (), method=args.method,
                              group_by=args.group_by, generic=not args.own_features_only, progress=ProgressPrinter())
    for e in result.extra["unreadable"]:
        print(f"warning: skipped {e.path}: {e.reason}", file=sys.stderr)
    est = result.estimate
    cal = result.card["calibration"]
    result.card["name"] = args.name or result.card["name"]
    save_model(result.model, result.card, out)
    kept = ", ".join(cal["classes_kept_from_base"]) or "none"
    if cal["kept_caution"]:
        kept += f" (with the base model's caution on an unfamiliar lab: {describe(cal['kept_caution'])})"
    if cal["set_aside"]:
        print(f"warning: too few labelled cells to fit (under {MIN_PER_CLASS}), left to the base model: "
              + ", ".join(f"{c} ({n})" for c, n in cal["set_aside"].items()), file=sys.stderr)
    print(f"calibrated {clf.name} on {est['n']} labelled cells ({', '.join(f'{c} {n}' for c, n in cal['labelled_cells'].items())}) "
          f"by {args.method} on {cal['features']} in {time.monotonic() - t0:.0f} s; classes kept from the base model: "
          f"{kept}", file=sys.stderr)
    if cal["pseudo_labelled_cells"]:
        print(f"the head also learnt from {cal['pseudo_labelled_cells']} of {cal['unlabelled_cells_looked_at']} "
              f"unlabelled cells, those {pseudo_labeller(cal['method'])} was at least {cal['pseudo_label_sure']:.0%} "
              "sure of, with the class it gave them", file=sys.stderr)
    print(f"estimated accuracy on this lab's other cells: {est['accuracy']:.1%} "
          f"(95 % interval {est['ci95'][0]:.1%}-{est['ci95'][1]:.1%}, {est['folds']}-fold cross-validation)")
    print(f"saved {out}", file=sys.stderr)
    return 0


def cmd_evaluate(args) -> int:
    from .engine.infer.classify import Classifier
    from .engine.data.dataset import scan_labeled
    from .engine.train.evaluation import evaluate_files, format_metrics
    from .engine.data.splits import SplitManifest

    check_output_folder(args.report)
    clf = Classifier.open(args.model)
    source = Path(args.data)
    if source.suffix == ".json":
        files, labels = SplitManifest.load(source).files(args.subset)
        subset = args.subset
    else:
        data = scan_labeled(source)
        files, labels, subset = data.paths, [data.classes[i] for i in data.labels], "all"
    metrics, errors = evaluate_files(clf, files, labels, args.report, tta=_tta(args, clf), progress=ProgressPrinter(),
                                     extra={"data": str(source), "subset": subset})
    for e in errors:
        print(f"warning: skipped {e.path}: {e.reason}", file=sys.stderr)
    if metrics["classes_left_out"]:
        print(f"warning: the model does not know {metrics['classes_left_out']}; those images were left out", file=sys.stderr)
    print(format_metrics(metrics))
    print(f"report written to {args.report}", file=sys.stderr)
    return 0


def cmd_check(args) -> int:
    from .engine.data.dataset import decode_images, scan_labeled, summarize

    data = scan_labeled(args.data)
    summary = summarize(data, decode_images(data.paths, args.img_size, ProgressPrinter()))
    print(json.dumps(summary.to_dict(), indent=1) if args.json else summary.describe())
    return 0


def cmd_info(args) -> int:
    from .engine.models.class_offsets import describe, unfamiliar_caution
    from .engine.models.modelfile import default_views, read_card

    card = read_card(_default_model(args.model))
    if args.json:
        print(json.dumps(card, indent=1))
        return 0
    print(f"{card.get('name')}  ({card.get('architecture')})")
    print(f"classes ({len(card['classes'])}): {', '.join(card['classes'])}")
    print(f"input: {card['input_size']} px, {card.get('preprocessing', {}).get('resize', '')}; "
          f"test-time views by default: {default_views(card)}")
    print(f"weights: {card.get('weights_origin')}; created {card.get('created')} by engine {card.get('engine_version')}")
    td = card.get("training_data") or {}
    if "counts" in td:  # an ensemble's card keeps its members' instead
        print(f"training data: {td.get('root')}  train/val/test: " + "/".join(str(sum(td['counts'][s].values())) for s in ('train', 'val', 'test')))
    for member in card.get("members", []):
        print(f"member: {member['name']}")

    def scores(title: str, m: dict) -> str:
        return (f"{title}: accuracy {m['accuracy']:.4f}, balanced accuracy {m['balanced_accuracy']:.4f}, "
                f"macro-F1 {m['macro_f1']:.4f} (n={m['n']})")

    if card.get("test_metrics") and not card.get("test_metrics_by_source"):
        print(scores("test", card["test_metrics"]))
    for source, m in card.get("test_metrics_by_source", {}).items():
        print(scores(f"test split, {source}", m))
    for lab, m in card.get("unseen_lab_evaluations", {}).items():
        print(scores(f"lab never seen in training, {lab}", m))
    if card.get("class_offsets"):
        print(f"logit offsets: {describe(card['class_offsets'])}")
    offsets, temperature = unfamiliar_caution(card)
    caution = ([f"offsets {describe(offsets)} more"] if offsets else []) + (
        [f"logits divided by {temperature:g}"] if temperature != 1.0 else [])
    if caution:
        print("on a folder unlike its training labs: " + "; ".join(caution))
    for key in ("evaluations", "limitations", "data_credits"):
        if card.get(key):
            print(f"{key.replace('_', ' ')}: {json.dumps(card[key]) if not isinstance(card[key], str) else card[key]}")
    return 0


def cmd_gui(args) -> int:
    from .gui.app import main as gui_main

    return gui_main([])


def _add_train_options(p: argparse.ArgumentParser) -> None:
    """One option per ``TrainConfig`` field, with its default and help: the
    CLI cannot drift from the dataclass the app and the recipe use."""
    from .engine.train.config import TrainConfig

    defaults = TrainConfig()
    p.add_argument("data", nargs="+", help="labelled folder(s) (<data>/<class>/<image>) or a split manifest .json")
    for f in _train_fields():
        flag, default, meta = "--" + f.name.replace("_", "-"), getattr(defaults, f.name), f.metadata
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=meta["help"])
        else:
            kind = type(default) if default is not None else str
            p.add_argument(flag, type=kind, default=default, choices=meta.get("choices"),
                           help=f"{meta['help']} (default: {default})")
    p.add_argument("--augment", type=float, default=defaults.augment.strength,
                   help=f"augmentation strength 0-1, 0: none (default: {defaults.augment.strength})")
    p.add_argument("--name", default=None, help="model name shown in the app")


def build_parser() -> argparse.ArgumentParser:
    from .engine.train.calibrate import DEFAULT_METHOD, METHODS, PSEUDO_LABEL_POOL, USES_UNLABELLED

    parser = argparse.ArgumentParser(prog="wbc", description="White-blood-cell classification, offline.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own start-up messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("classify", help="classify image files or folders")
    p.add_argument("paths", nargs="+")
    p.add_argument("--model", help="model file (default: the shipped model)")
    p.add_argument("--out", help="write predictions to this CSV")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--mode", choices=MODES, default="auto",
                   help="cells: each image is one cell; fields: find every white cell in each photo; "
                        "auto: per image, one white cell in the middle is a crop, anything else a field")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average 4 views of each cell, at 4x the compute (default: as the model card says, "
                        "test_views in wbc info)")
    p.add_argument("--adapt", action="store_true",
                   help="re-estimate the model's normalisation statistics on these images first (another lab's "
                        "stain); they also follow the folder's mix of cell types, so on one patient's folder it can "
                        "lower accuracy (training/RESULTS.md)")
    p.add_argument("--self-training", action=argparse.BooleanOptionalAction, default=True,
                   help="on a folder of 100+ cells that looks unlike the training data, let the model's surest "
                        "calls (80%%+) teach a head on the folder's own cells and answer it again, half and half "
                        "with its own answer (default on; the CSV's model column says when it ran)")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("train", help="train a model on a labelled folder")
    _add_train_options(p)
    p.add_argument("--out", required=True, help="model file to write (.keras)")
    p.add_argument("--run-dir", help="checkpoints, history and report (default: <out>.run)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --run-dir")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", help="random hyperparameter search on the validation split")
    _add_train_options(p)
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--trial-epochs", type=int, default=None, help="epochs per trial (default: --epochs)")
    p.add_argument("--out", required=True, help="folder for trials, results table and the best model")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("calibrate", help="adapt a model to a lab from a few labelled cells per class")
    p.add_argument("labelled", help="the lab's labelled cells: <folder>/<class>/<image>, 3 or more per class")
    p.add_argument("--model", help="base model (default: the shipped model)")
    p.add_argument("--unlabelled", nargs="*", help="the lab's unlabelled cells (folders or files): their stain joins "
                                                     "the folder warning's references, and "
                                                     f"{', '.join(USES_UNLABELLED)} learn from them (self_training "
                                                     f"looks at a random {PSEUDO_LABEL_POOL}; without them it is "
                                                     "the logistic head)")
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                   help=f"how to adapt (default {DEFAULT_METHOD}: the best on the k-shot protocol, training/RESULTS.md)")
    p.add_argument("--group-by", help="regex on file names: cells of one source image (one smear photo)")
    p.add_argument("--own-features-only", action="store_true",
                   help="fit on the base model's features alone, not also on the shipped generic ImageNet features "
                        "(a smaller, faster lab model; less accurate on the k-shot protocol)")
    p.add_argument("--name", help="model name shown in the app")
    p.add_argument("--out", required=True, help="the calibrated model file to write (.keras)")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("evaluate", help="evaluate a model on a labelled folder or a split manifest")
    p.add_argument("model")
    p.add_argument("data", help="labelled folder (all images) or split manifest .json")
    p.add_argument("--subset", choices=("train", "val", "test"), default="test", help="with a manifest")
    p.add_argument("--report", required=True, help="report folder")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average 4 views of each cell (default: as the model card says, like classify)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("check", help="dataset summary: counts, sizes, duplicates, unreadable files")
    p.add_argument("data")
    p.add_argument("--img-size", type=int, default=96)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("info", help="show a model card")
    p.add_argument("--model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("gui", help="start the desktop app")
    p.set_defaults(func=cmd_gui)
    return parser


TENSORFLOW_COMMANDS = ("classify", "train", "tune", "evaluate", "calibrate")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)  # --help and argument errors come before any TensorFlow
    if args.command in TENSORFLOW_COMMANDS and not args.verbose:
        with quiet_native_logs():  # TensorFlow's start-up lines from C++, which no log level silences
            import tensorflow  # noqa: F401
    try:
        return args.func(args)
    except Cancelled:
        print("cancelled", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as exc:  # OutputError included
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from .engine.models.modelfile import ModelFileError

        if isinstance(exc, ModelFileError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
