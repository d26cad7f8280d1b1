"""Does a folder look like the model's training data? A model is far less
accurate on a lab it never saw, so the app and ``wbc classify`` say so once
per folder and suggest calibration. Two signals, each with a threshold set
when the model is trained (on folders drawn from its own validation cells)
and kept in the model card:

- **stain and optics**: the optical-density colour statistics (mean and
  spread per channel) of each cell's surroundings as a whole crop shows
  them (``SURROUNDINGS``); a folder whose average lies far, in units of the
  training lab's own spread, from every lab the model was trained on was
  stained or photographed differently. Not the model's own view: cut
  around the cell, that view is mostly the cell, whose colour says its
  class more than its lab (the cell-centred folds missed every BCCD
  folder on it);
- **confidence**: the folder's mean top-class probability; a model unsure
  of most cells of a folder does not know them.

Each threshold is the value only ``QUANTILE`` of the validation folders
pass, so on cells like the training data the warning fires rarely
(measured on the leave-one-lab-out protocol in training/RESULTS.md)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..locate.stain import PADDING_LEVEL

FOLDER_CELLS = 50  # the folder size the thresholds are set for
MIN_CELLS = 20  # fewer cells are not judged
QUANTILE = 0.01  # per signal: 2.5 % let 4-8 % of in-domain test folders warn (protocol), above the 5 % goal
DRAWS = 1000
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


def colour_distance(stats: np.ndarray, references: Sequence[dict]) -> float:
    """How far the folder's mean stain lies from the nearest training lab,
    in that lab's own standard deviations."""
    centre = stats.mean(axis=0)
    return float(min(np.linalg.norm((centre - np.asarray(r["mean"])) / np.asarray(r["std"])) for r in references))


def folder_confidence(probs: np.ndarray) -> float:
    return float(np.mean(np.max(probs, axis=1)))


def _folders(n: int, size: int, rng: np.random.Generator, draws: int = DRAWS):
    for _ in range(draws):
        yield rng.choice(n, min(size, n), replace=False)


def reference_from(train_stats: np.ndarray, train_sources: Sequence[str], val_stats: np.ndarray,
                   val_sources: Sequence[str], val_probs: np.ndarray, seed: int = 0) -> dict:
    """The card entry, from the training cells' colour statistics (per lab)
    and the validation cells' statistics and probabilities; the statistics
    are of the cells' ``SURROUNDINGS`` views."""
    rng = np.random.default_rng(seed)
    train_sources, val_sources = np.asarray(train_sources), np.asarray(val_sources)
    references = [_reference(train_stats[train_sources == s], str(s)) for s in np.unique(train_sources)]
    labs = [np.flatnonzero(val_sources == s) for s in np.unique(val_sources)]
    colour = [colour_distance(val_stats[rows[pick]], references)  # a lab's folder holds that lab's cells
              for rows in labs for pick in _folders(len(rows), FOLDER_CELLS, rng, DRAWS // len(labs))]
    confidence = [folder_confidence(val_probs[pick]) for pick in _folders(len(val_probs), FOLDER_CELLS, rng)]
    return {"folder_cells": FOLDER_CELLS, "quantile": QUANTILE,
            "colour": {"references": references, "threshold": round(float(np.quantile(colour, 1 - QUANTILE)), 4),
                       "view": SURROUNDINGS, "view_side": STAIN_SIDE},
            "confidence": {"threshold": round(float(np.quantile(confidence, QUANTILE)), 4)},
            "set_on": f"random folders of {FOLDER_CELLS} of the model's validation cells"}


def _reference(stats: np.ndarray, source: str) -> dict:
    """One lab's stain: the mean and spread of its cells' colour statistics."""
    return {"source": source, "mean": stats.mean(axis=0).round(5).tolist(),
            "std": (stats.std(axis=0) + 1e-3).round(5).tolist()}


def with_lab(check: dict | None, stats: np.ndarray, source: str) -> dict | None:
    """A model calibrated to a lab has seen that lab's stain: its cells join
    the colour references, so the lab's own folders stop raising the
    warning that told the user to calibrate."""
    if not check or "colour" not in check or len(stats) == 0:
        return check
    colour = dict(check["colour"], references=check["colour"]["references"] + [_reference(stats, source)])
    return dict(check, colour=colour)


def unlike_training(probs: np.ndarray, stats: np.ndarray | None, card: dict) -> str | None:
    """One line for the user when the folder looks unlike the training
    data, else None (also for a model without thresholds, or too few cells)."""
    check = card.get("domain_check")
    if not check or len(probs) < MIN_CELLS:
        return None
    reasons = []
    if stats is not None and len(stats) and "colour" in check:
        distance = colour_distance(stats, check["colour"]["references"])
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
    return f"these cells look unlike the model's training data: {why}. Expect far lower accuracy; {advice}"
