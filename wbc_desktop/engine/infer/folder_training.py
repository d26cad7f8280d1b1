"""Self-training on a folder unlike the training data, without a label.

On a lab it never saw, the model's classes lie elsewhere in its feature
space than on its training labs, and its head draws their borders where
they were. The model's surest calls on the folder's own cells show where
they lie now: a new head fitted on them (the lab head of ``wbc calibrate``,
with the model's calls in place of a technologist's labels) answers the
folder again, half and half with the model's own answer. Only
where the folder warning fires: on the labs the model knows it could only
lose, and the warning stays silent there.
Measured on the leave-one-lab-out protocol in training/RESULTS.md."""

from __future__ import annotations

import numpy as np

from ..models.class_offsets import temper
from ..train.calibrate import MIN_PER_CLASS, PSEUDO_LABEL_SURE, combine, fit_head

# below this many cells a folder holds too few sure cells per class: on the protocol's cached features,
# 50-cell folders gained 0.6 points on average and lost 0.9 on the worst lab; 100-cell ones gained 1.7
MIN_CELLS = 100
# the folder's answer is this much the self-trained head's, the rest the model's own: where the two disagree
# the cell's confidence drops. Alone, the head was as accurate but surer than right
WEIGHT = 0.5
# ... and that answer, surer than the model's own, is softened by this (logits divided by it; in place of a
# card's unfamiliar_temperature, v8's 1.75): at 2 the default review flag (70 %) flags as many cells of an
# unseen lab as before and misses no more wrong labels (8.1 % of the cells against 8.3 %); at 1.75 it
# missed 10.4 % (probe on the protocol's cached features, 100-cell folders, training/RESULTS.md)
TEMPERATURE = 2.0


def self_trained(feats: np.ndarray, calls: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
    """``feats``: the folder's cells' features (cells x D), ``calls``: the
    model's probabilities (with any caution the folder gets). Returns the
    folder's new probabilities and how many sure cells taught each class
    (class index: cells); where too few cells, or too few classes, left
    nothing to learn, ``calls`` as they were and no class."""
    if len(feats) < MIN_CELLS:
        return calls, {}
    label, sure = calls.argmax(axis=1), calls.max(axis=1) >= PSEUDO_LABEL_SURE
    taught = {int(c): int(n) for c, n in zip(*np.unique(label[sure], return_counts=True)) if n >= MIN_PER_CLASS}
    if len(taught) < 2:
        return calls, {}
    present = sorted(taught)
    keep = sure & np.isin(label, present)
    feats = feats.astype(np.float32)
    head = fit_head("logistic", feats[None, keep], np.searchsorted(present, label[keep]), len(present))
    return temper((1 - WEIGHT) * calls + WEIGHT * combine(calls, head.probs(feats), present), TEMPERATURE), taught
