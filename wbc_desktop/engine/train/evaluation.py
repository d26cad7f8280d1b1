"""Honest evaluation on a held-out split: per-class metrics, calibration,
confusion matrices and the misclassified cells, all in one report folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score, confusion_matrix, precision_recall_fscore_support,
)

from ..io.atomic import atomic_path, write_text
from ..io.csvio import write_csv


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict:
    """Metrics over the model's classes. Averages use only the classes present
    in ``y_true``: a 5-class test set scored by an 8-class model still counts
    every prediction of an absent class as an error."""
    y_pred = probs.argmax(axis=1)
    present = sorted(set(int(v) for v in y_true))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(range(len(classes))), zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, labels=present, average="macro", zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(mr),  # mean recall of the classes present
        "macro_precision": float(mp),
        "macro_recall": float(mr),
        "macro_f1": float(mf),
        "ece": expected_calibration_error(probs, y_true),
        "classes_present": [classes[i] for i in present],
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=list(range(len(classes)))).tolist(),
    }


def _save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_confusion(metrics: dict, classes: Sequence[str], path: Path) -> None:
    """Counts and row-normalised side by side; rows only for classes present."""
    from matplotlib.figure import Figure

    cm = np.asarray(metrics["confusion_matrix"], dtype=float)
    rows = [i for i, c in enumerate(classes) if c in metrics["classes_present"]]
    cm = cm[rows]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(4 + 1.2 * len(classes), 1.5 + 0.55 * len(rows)))
    for ax, mat, title, fmt in zip(fig.subplots(1, 2), (cm, norm), ("counts", "row-normalised (recall)"), ("{:.0f}", "{:.2f}")):
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(rows)), [classes[i] for i in rows])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        for (r, c), v in np.ndenumerate(mat):
            ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=8, color="white" if norm[r, c] > 0.5 else "black")
    fig.suptitle(f"accuracy {metrics['accuracy']:.3f}  macro-F1 {metrics['macro_f1']:.3f}  n={metrics['n']}")
    fig.tight_layout()
    _save_figure(fig, path)


def plot_gallery(images: np.ndarray, y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], path: Path, limit: int = 36) -> int:
    """The most confident mistakes first: those are what a reviewer must see."""
    from matplotlib.figure import Figure

    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y_true)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]])][:limit]
    cols = 6
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    fig = Figure(figsize=(2.1 * cols, 2.4 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    if len(wrong) == 0:
        axes[0].text(0, 0.5, "no misclassified cells", fontsize=12)
    for ax, i in zip(axes, wrong):
        ax.imshow(images[i])
        ax.set_title(f"true {classes[y_true[i]]}\npred {classes[pred[i]]} {probs[i, pred[i]]:.0%}", fontsize=8, color="darkred")
    fig.tight_layout()
    _save_figure(fig, path)
    return int(len(wrong))


def write_report(
    report_dir: str | Path, y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], images: np.ndarray,
    paths: Sequence[Path], extra: dict | None = None,
) -> dict:
    """``metrics.json``, confusion matrix, misclassified gallery and a
    per-image predictions CSV in ``report_dir``."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(y_true, probs, classes)
    metrics.update(extra or {})
    plot_confusion(metrics, classes, report_dir / "confusion_matrix.png")
    metrics["misclassified_shown"] = plot_gallery(images, y_true, probs, classes, report_dir / "misclassified.png")
    pred = probs.argmax(axis=1)
    write_csv(
        report_dir / "predictions.csv", ["path", "true", "predicted", "confidence"],
        ([str(p), classes[t], classes[q], f"{probs[i, q]:.4f}"] for i, (p, t, q) in enumerate(zip(paths, y_true, pred))),
    )
    write_text(report_dir / "metrics.json", json.dumps(metrics, indent=1))
    return metrics


def format_metrics(metrics: dict) -> str:
    lines = [
        f"n={metrics['n']}  accuracy {metrics['accuracy']:.4f}  balanced accuracy {metrics['balanced_accuracy']:.4f}  "
        f"macro-F1 {metrics['macro_f1']:.4f}  ECE {metrics['ece']:.4f}",
        f"{'class':<14}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}",
    ]
    for c, m in metrics["per_class"].items():
        if m["support"] or c in metrics["classes_present"]:
            lines.append(f"{c:<14}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>10.3f}{m['support']:>9}")
    return "\n".join(lines)


def evaluate_files(
    classifier, files: Sequence[Path], labels: Sequence[str], report_dir: str | Path, *,
    extra: dict | None = None, tta: bool = False, progress=None,
) -> tuple[dict, list]:
    """Decode, classify and report labelled files; labels the model does not
    know are left out and named in the report. Returns metrics and the
    files that could not be read."""
    from ..data.dataset import decode_images
    from ..progress import no_progress

    unknown = sorted(set(labels) - set(classifier.classes))
    keep = [i for i, lab in enumerate(labels) if lab in classifier.classes]
    decoded = decode_images([files[i] for i in keep], classifier.size, progress or no_progress,
                            framing=classifier.framing)
    y = np.asarray([classifier.classes.index(labels[i]) for i in keep], dtype=np.int64)[decoded.ok]
    x = decoded.pixels[decoded.ok]
    probs = classifier.predict_arrays(x, tta=tta)
    info = {"model": classifier.name, "tta": tta, "classes_left_out": unknown, "unreadable": len(decoded.errors)}
    info.update(extra or {})
    kept_paths = [p for p, ok in zip(decoded.paths, decoded.ok) if ok]
    return write_report(report_dir, y, probs, classifier.classes, x, kept_paths, info), decoded.errors
