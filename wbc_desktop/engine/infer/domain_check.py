"""Does a folder look like the model's training data? A model is far less
accurate on a lab it never saw, so the app and ``wbc classify`` say so once
per folder and suggest calibration.

The signal is the **stain and optics**: the optical-density colour
statistics (mean and spread per channel) of each cell's surroundings as a
whole crop shows them (``SURROUNDINGS``). A folder whose cells lie, on
average, far from what each lab the model was trained on gives cells of
their predicted classes (in units of that lab's own spread) was stained or
photographed differently. Per class, because a tight crop is mostly its
cell: a folder of one class (cells someone sorted, a patient with many
lymphocytes) has its own average colour in every lab. Not the model's own
view: cut around the cell, that view is mostly the cell, whose colour says
its class more than its lab (the cell-centred folds missed every BCCD folder
on it).

The threshold, set when the model is trained and kept in its card, is the
distance only ``QUANTILE`` of folders of its own validation cells pass;
those folders are drawn with skewed class mixes (``CLASS_MIX``), as a lab's
real folders come. Cards written before this also hold a **confidence**
threshold (the folder's mean top-class probability), still honoured for
them; new cards do not: on the leave-one-lab-out protocol the stain alone
caught every unseen lab's folders, and confidence added only false alarms
(the small training labs' own folders, one-class folders of the classes a
model is least sure of). Measured in training/RESULTS.md."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..locate.stain import PADDING_LEVEL

FOLDER_CELLS = 50  # the folder size the thresholds are set for
MIN_CELLS = 20  # fewer cells are not judged
MIN_CLASS_CELLS = 3  # a lab's cells of a class that give the class its own stain reference
QUANTILE = 0.01  # per signal: 2.5 % let 4-8 % of in-domain test folders warn (protocol), above the 5 % goal
DRAWS = 1000
CLASS_MIX = 0.3  # Dirichlet concentration of a validation folder's class mix: most folders lean on one or two classes
SURROUNDINGS = "surroundings"  # the card's name for the view below
STAIN_SIDE = 48  # px of the surroundings view: the cell framed as PBC frames its crops (``as_is``)


_OD = -np.log(np.clip(np.arange(256) / 255.0, 1 / 255.0, 1.0))  # optical density of each 8-bit value


def colour_stats(pixels: np.ndarray) -> np.ndarray:
    """Per cell (N x S x S x 3 uint8): mean and spread of each channel's
    optical density (Beer-Lambert), 6 numbers: a stain's fingerprint.
    Black padding is not slide and is left out (a fifth of LISC's crops,
    cut at a photo's edge, are up to half black: counted, they made LISC's
    spread so wide that BCCD's folders passed as LISC's). From per-channel
    histograms, 4x faster than taking logs per pixel: it runs for every
    classified cell."""
    n = len(pixels)
    flat = pixels.reshape(n, -1, 3)
    offsets = (np.arange(n)[:, None, None] * 3 + np.arange(3)[None, None, :]) * 256
    dropped = n * 3 * 256  # one extra bin collects the padding
    index = np.where((flat.max(axis=2) > PADDING_LEVEL)[..., None], flat.astype(np.int32) + offsets, dropped)
    counts = np.bincount(index.ravel(), minlength=dropped + 1)[:dropped].reshape(n, 3, 256)
    total = np.maximum(counts.sum(axis=2), 1)
    mean = counts @ _OD / total
    spread = np.sqrt(np.maximum(counts @ (_OD * _OD) / total - mean * mean, 0.0))
    return np.concatenate([mean, spread], axis=1)


def stain_view(card: dict) -> str:
    """Which pixels the card's stain references describe: the cell's
    surroundings, or (cards written before them) the model's input view."""
    return (card.get("domain_check") or {}).get("colour", {}).get("view", "model_input")


def colour_distance(stats: np.ndarray, references: Sequence[dict], probs: np.ndarray | None = None) -> float:
    """How far the folder's stain lies from the nearest training lab, in that
    lab's own standard deviations: the mean of each cell's offset from the
    stain that lab gives its predicted class (``probs``' top class; a soft
    mix would leave a one-class folder offset by its runner-up classes), or,
    for references written before class means or for other classes than
    ``probs``' columns, from the lab's mean."""
    def offset(r: dict) -> np.ndarray:
        if probs is not None and len(r.get("class_means", ())) == probs.shape[1]:
            return stats - np.asarray(r["class_means"])[np.argmax(probs, axis=1)]
        return stats - np.asarray(r["mean"])

    return float(min(np.linalg.norm(offset(r).mean(axis=0) / np.asarray(r["std"])) for r in references))


def folder_confidence(probs: np.ndarray) -> float:
    return float(np.mean(np.max(probs, axis=1)))


def _skewed_folders(labels: np.ndarray, size: int, rng: np.random.Generator, draws: int):
    """Folders of ``labels``' rows whose class mix is drawn at random, from
    one class alone to an even mix; a class that holds fewer cells than its
    share gives what it has."""
    classes = np.unique(labels)
    rows = [np.flatnonzero(labels == c) for c in classes]
    for _ in range(draws):
        wanted = rng.multinomial(size, rng.dirichlet(np.full(len(classes), CLASS_MIX)))
        yield np.concatenate([rng.choice(r, min(k, len(r)), replace=False) for r, k in zip(rows, wanted)])


def reference_from(train_stats: np.ndarray, train_sources: Sequence[str], train_labels: np.ndarray,
                   val_stats: np.ndarray, val_sources: Sequence[str], val_labels: np.ndarray, val_probs: np.ndarray,
                   seed: int = 0) -> dict:
    """The card entry, from the training cells' colour statistics and classes
    (per lab), and the validation cells' statistics, classes and
    probabilities; the statistics are of the cells' ``SURROUNDINGS`` views."""
    rng = np.random.default_rng(seed)
    train_sources, val_sources = np.asarray(train_sources), np.asarray(val_sources)
    train_labels, val_labels = np.asarray(train_labels), np.asarray(val_labels)
    references = [_reference(train_stats[train_sources == s], train_labels[train_sources == s],
                             val_probs.shape[1], str(s)) for s in np.unique(train_sources)]
    labs = [np.flatnonzero(val_sources == s) for s in np.unique(val_sources)]
    colour = [colour_distance(val_stats[rows[pick]], references, val_probs[rows[pick]])  # a lab's folder: its cells
              for rows in labs for pick in _skewed_folders(val_labels[rows], FOLDER_CELLS, rng, DRAWS // len(labs))]
    return {"folder_cells": FOLDER_CELLS, "quantile": QUANTILE,
            "colour": {"references": references, "threshold": round(float(np.quantile(colour, 1 - QUANTILE)), 4),
                       "view": SURROUNDINGS, "view_side": STAIN_SIDE},
            "set_on": f"folders of {FOLDER_CELLS} of one lab's validation cells, in random class mixes"}


def _reference(stats: np.ndarray, labels: np.ndarray, n_classes: int, source: str) -> dict:
    """One lab's stain: its mean, the mean of each class it holds enough
    cells of (``MIN_CLASS_CELLS``; the lab's mean stands in for the
    others), and the spread of its cells around their class's mean.
    ``labels``: class index per cell, -1 where unknown."""
    mean = stats.mean(axis=0)
    class_means = np.tile(mean, (n_classes, 1))
    for c in range(n_classes):
        if np.sum(labels == c) >= MIN_CLASS_CELLS:
            class_means[c] = stats[labels == c].mean(axis=0)
    known = labels >= 0
    expected = np.where(known[:, None], class_means[np.maximum(labels, 0)], mean)
    return {"source": source, "mean": mean.round(5).tolist(), "class_means": class_means.round(5).tolist(),
            "std": ((stats - expected).std(axis=0) + 1e-3).round(5).tolist()}


def with_lab(check: dict | None, stats: np.ndarray, labels: np.ndarray, n_classes: int, source: str) -> dict | None:
    """A model calibrated to a lab has seen that lab's stain: its cells
    (``labels``: class index, -1 for the unlabelled ones) join the colour
    references, so the lab's own folders stop raising the warning that told
    the user to calibrate. Calibrating a lab model again replaces its lab's
    reference (same ``source``) instead of adding a second one."""
    if not check or "colour" not in check or len(stats) == 0:
        return check
    reference = _reference(stats, np.asarray(labels), n_classes, source)
    others = [r for r in check["colour"]["references"] if r.get("source") != source]
    colour = dict(check["colour"], references=others + [reference])
    return dict(check, colour=colour)


UNLIKE_TRAINING = "these cells look unlike the model's training data"  # how the warning begins


def unlike_training(probs: np.ndarray, stats: np.ndarray | None, card: dict) -> str | None:
    """One line for the user when the folder looks unlike the training
    data, else None (also for a model without thresholds, or too few cells)."""
    check = card.get("domain_check")
    if not check or len(probs) < MIN_CELLS:
        return None
    reasons = []
    if stats is not None and len(stats) and "colour" in check:
        distance = colour_distance(stats, check["colour"]["references"], probs)
        if distance > check["colour"]["threshold"]:
            reasons.append(f"their stain and optics differ from every lab it was trained on ({distance:.1f} "
                           f"standard deviations; its own labs' folders stay under {check['colour']['threshold']:.1f})")
    if "confidence" in check:
        value = folder_confidence(probs)
        if value < check["confidence"]["threshold"]:
            reasons.append(f"it is unsure of them (mean confidence {value:.0%}; its own labs' folders reach "
                           f"{check['confidence']['threshold']:.0%})")
    if not reasons:
        return None
    advice = ("check them against the lab it was calibrated on, or calibrate the base model to this lab"
              if card.get("calibration") else
              "calibrate the model to this lab from a few labelled cells (the app's Lab menu, or wbc calibrate)")
    why = "; ".join(reasons)
    return f"{UNLIKE_TRAINING}: {why}. Expect far lower accuracy; {advice}"
