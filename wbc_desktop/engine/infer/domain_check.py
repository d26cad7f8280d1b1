"""Does a folder look like the model's training data? A model is far less
accurate on a lab it never saw, and its cells' confidence shows it: on
its own labs' held-out cells the model is sure of most cells, on another
lab's stain and optics of far fewer. The signal is the folder's mean
top-class probability; the threshold is set per model, when it is
trained, on folders drawn from its own validation cells (the value only 5 %
of such folders fall below), and kept in the model card. Measured on the
leave-one-lab-out protocol in training/RESULTS.md."""

from __future__ import annotations

import numpy as np

FOLDER_CELLS = 50  # the folder size the threshold is set for; smaller folders are not judged
QUANTILE = 0.05
MIN_CELLS = 20


def folder_confidence(probs: np.ndarray) -> float:
    return float(np.mean(np.max(probs, axis=1)))


def threshold_from(val_probs: np.ndarray, folder_cells: int = FOLDER_CELLS, draws: int = 1000, seed: int = 0) -> dict:
    """The card entry: the ``QUANTILE`` of the mean confidence of random
    folders of in-domain (validation) cells."""
    rng = np.random.default_rng(seed)
    top = np.max(val_probs, axis=1)
    size = min(folder_cells, len(top))
    means = [float(top[rng.choice(len(top), size, replace=False)].mean()) for _ in range(draws)]
    return {"statistic": "mean top-class probability of a folder's cells", "threshold": round(float(
        np.quantile(means, QUANTILE)), 4), "folder_cells": size, "quantile": QUANTILE,
        "set_on": f"{draws} random folders of the model's validation cells"}


def unlike_training(probs: np.ndarray, card: dict) -> str | None:
    """One line for the user when the folder looks unlike the training
    data, else None (also when the model has no threshold or too few cells)."""
    check = card.get("domain_check")
    if not check or len(probs) < MIN_CELLS:
        return None
    value = folder_confidence(probs)
    if value >= check["threshold"]:
        return None
    return (f"these cells look unlike the model's training data (mean confidence {value:.0%}, where 95 % of "
            f"folders of its own labs reach {check['threshold']:.0%}): expect far lower accuracy; calibrate the "
            "model to this lab from a few labelled cells (the app's Lab menu, or wbc calibrate)")
