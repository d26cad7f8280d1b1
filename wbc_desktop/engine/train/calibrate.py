"""Calibrate a model to a lab from a few labelled cells, with an estimate of
its accuracy there that can be trusted.

The network's pooled features (``features`` layer) are kept; only a new
head is fitted on them, on four views of each labelled cell (a few cells
go further that way, and the lab model classifies with the same four
views, whatever its base model's default). The
lab's classes that have no labelled cell keep the base model's answer: the
new head only shares out, among the labelled classes, the probability the
base model gave to them all (with the caution the base takes on a lab it
never saw, ``kept_caution``). The calibrated model is an ordinary model
file (standard Keras layers, safe-mode loadable) with a card saying what
it was made from. By default (``self_training``) the head is fitted again
with the lab's unlabelled cells it is sure of, each with the class it gave
them.

The estimate is cross-validated on the labelled cells themselves, with the
cells of one source image (or near-duplicate crops of one cell) always on
one side, so it is a fair guess of the accuracy on the lab's other cells;
its 95 % interval says how sure that guess is with this few cells.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..infer.domain_check import STAIN_SIDE, SURROUNDINGS, colour_stats, stain_view, with_lab
from ..models.class_offsets import CLASS_OFFSETS, UNFAMILIAR_OFFSETS, shift_head, unfamiliar_caution
from ..progress import CancelToken, Progress, ProgressFn, no_progress

METHODS = ("logistic", "self_training", "prototype", "adabn_logistic", "spreading")
DEFAULT_METHOD = "self_training"
LABELS_UNLABELLED = ("self_training", "spreading")  # the lab's unlabelled cells join the fit, labelled by it
USES_UNLABELLED = LABELS_UNLABELLED + ("adabn_logistic",)  # adabn: their normalisation statistics
# self-training: the lab's unlabelled cells the first head gives at least this probability join the refit
# with that class (k-shot protocol, training/RESULTS.md)
PSEUDO_LABEL_SURE = 0.8
# spreading: the share of its label distribution a propagated cell needs; stricter than self-training's,
# as a k-NN graph of 3-25 labelled cells spreads one cell's mistake to its neighbours
SPREAD_SURE = 0.9
# ... out of at most this many of them, drawn at random: on the protocol 150 did as well as all of a lab's
# 300-1,500, and each costs four views' features (200 added 45 s to a calibration on a 2-core PC)
PSEUDO_LABEL_POOL = 200
PROTOTYPE_SCALE = 16.0  # cosine similarity to logits: sharp enough to decide, soft enough to combine
MIN_PER_CLASS = 3


@dataclass
class Head:
    """Softmax over the labelled classes on L2-normalised features."""

    weight: np.ndarray  # D x k
    bias: np.ndarray  # k
    pseudo_labelled: int = 0  # the lab's unlabelled cells that joined the fit

    def probs(self, feats: np.ndarray) -> np.ndarray:
        logits = _unit(feats) @ self.weight + self.bias
        logits -= logits.max(axis=-1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=-1, keepdims=True)


LAB_MODEL_VIEWS = 4  # its head is fitted on four views; on the k-shot protocol four score 1-2 points above one


@dataclass
class LabFeatures:
    """Four views of each cell: features (views x cells x D) and the base
    model's probabilities (views x cells x classes)."""

    feats: np.ndarray
    base_probs: np.ndarray

    def take(self, rows) -> "LabFeatures":
        return LabFeatures(self.feats[:, rows], self.base_probs[:, rows])

    def first_view(self) -> "LabFeatures":
        """The cells as is: what a model classifying with one view sees."""
        return LabFeatures(self.feats[:1], self.base_probs[:1])


@dataclass
class Calibration:
    model: object  # keras.Model
    card: dict
    estimate: dict
    labelled_classes: list[str]
    extra: dict = field(default_factory=dict)
    # the calibrated model's answers (four views, one view) for the cells calibration already has the features
    # of, by row among the cells given (the labelled ones, then the unlabelled after them): a caller showing the
    # folder as the lab model sees it need not run the model on them again
    answers: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def members_unit(feats: np.ndarray, widths: Sequence[int], own: Sequence[int]) -> np.ndarray:
    """Each member's own features (the first ``own`` of its block of
    ``widths``, ``models.ensemble.own_widths``: a block joined with taps
    carries them after, and with them in its blocks the lab head lost 0.9
    points at k = 10, training/RESULTS.md) at unit length, the whole at unit
    length: every member has the same say in the lab head. Scaled as one
    block, a fourth member's 1,280 Lite0 features crowded the others out and
    the head lost a point at k = 10; block by block it gained 1.7."""
    parts = np.split(feats, np.cumsum(widths)[:-1], axis=-1)
    return np.concatenate([_unit(part[..., :n]) for part, n in zip(parts, own)], axis=-1) / np.sqrt(len(widths))


def lab_features(model, pixels: np.ndarray, batch_size: int = 32, cancel: CancelToken | None = None,
                 extractor=None) -> LabFeatures:
    """Features and probabilities of four views of uint8 cells (N x S x S x 3):
    each member's block of the model's features at unit length
    (``members_unit``); with a generic ``extractor``, its features of the
    same view join them, each part scaled to unit length so that neither
    swamps the other. Compiled calls (``predict_on_batch``): an eager call
    of the 224 px extractor held 3 GB more than the compiled one (0.4 GB)."""
    import keras

    from ..infer.classify import tta_views
    from ..models.ensemble import member_widths, own_widths

    widths, own_width = member_widths(model), own_widths(model)
    both = keras.Model(model.input, [model.get_layer("features").output, model.output])
    feats, probs = [], []
    for start in range(0, len(pixels), batch_size):
        if cancel is not None:
            cancel.raise_if_cancelled()
        x = pixels[start:start + batch_size].astype(np.float32)
        views = [np.ascontiguousarray(v) for v in tta_views(x)]
        outs = [both.predict_on_batch(v) for v in views]
        own = [members_unit(np.asarray(f), widths, own_width) for f, _ in outs]
        if extractor is not None:
            own = [np.concatenate([f, _unit(np.asarray(extractor.predict_on_batch(v)))], axis=-1)
                   for f, v in zip(own, views)]
        feats.append(np.stack(own))
        probs.append(np.stack([np.asarray(p) for _, p in outs]))
    if not feats:
        width = sum(own_width) + (extractor.output_shape[-1] if extractor else 0)
        return LabFeatures(np.zeros((4, 0, width), np.float32), np.zeros((4, 0, model.output_shape[-1]), np.float32))
    return LabFeatures(np.concatenate(feats, axis=1), np.concatenate(probs, axis=1))


def fit_head(method: str, feats: np.ndarray, y: np.ndarray, k: int, unlabelled: np.ndarray | None = None,
             seed: int = 0) -> Head:
    """``feats``: views x cells x D of the labelled cells, ``y`` their index
    among the ``k`` labelled classes; ``unlabelled``: views x cells x D of
    the lab's other cells, which ``self_training`` and ``spreading`` add to
    the fit with the labels they are sure of (a few labelled cells cannot
    show the head how widely a class varies in this lab; the lab's own
    cells can)."""
    if method == "prototype":
        means = np.stack([_unit(feats[:, y == c].reshape(-1, feats.shape[-1])).mean(axis=0) for c in range(k)])
        return Head(PROTOTYPE_SCALE * _unit(means).T, np.zeros(k))
    head = _logistic(feats, y, k, seed)
    if method not in LABELS_UNLABELLED or unlabelled is None or not unlabelled.shape[1]:
        return head
    if method == "spreading":
        sure, labels = _spread_labels(feats, y, unlabelled)
    else:
        probs = np.mean([head.probs(view) for view in unlabelled], axis=0)
        sure, labels = probs.max(axis=1) >= PSEUDO_LABEL_SURE, probs.argmax(axis=1)
    head = _logistic(np.concatenate([feats, unlabelled[:, sure]], axis=1), np.concatenate([y, labels[sure]]), k, seed)
    head.pseudo_labelled = int(sure.sum())
    return head


def pseudo_labeller(method: str | None) -> str:
    """What gave a lab model's unlabelled cells their classes, as the CLI and
    the model dialog name it."""
    return "label spreading" if method == "spreading" else "the head"


def _spread_labels(feats: np.ndarray, y: np.ndarray, unlabelled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label propagation over a k-NN graph of the labelled and unlabelled
    cells: which unlabelled cells it is sure of, and their labels."""
    from sklearn.semi_supervised import LabelSpreading

    pooled_l, pooled_u = _unit(feats.mean(axis=0)), _unit(unlabelled.mean(axis=0))
    spread = LabelSpreading(kernel="knn", n_neighbors=min(7, len(pooled_l) + len(pooled_u) - 1), alpha=0.2)
    spread.fit(np.concatenate([pooled_l, pooled_u]), np.concatenate([y, -np.ones(len(pooled_u), int)]))
    dist = spread.label_distributions_[len(pooled_l):]
    return dist.max(axis=1) >= SPREAD_SURE, dist.argmax(axis=1)


def _logistic(feats: np.ndarray, y: np.ndarray, k: int, seed: int) -> Head:
    from sklearn.linear_model import LogisticRegression

    x = _unit(feats.reshape(-1, feats.shape[-1]))
    labels = np.tile(y, feats.shape[0])
    # centred, and scaled by one spread for all features: a spread per
    # feature, estimated from 3 cells a class, added noise (k-shot protocol:
    # 0.760 -> 0.783 at k = 3, level at k = 10 and 25)
    mean = x.mean(axis=0)
    std = np.sqrt(np.mean(x.var(axis=0))) + 1e-6
    clf = LogisticRegression(C=1.0, max_iter=3000, random_state=seed)
    clf.fit((x - mean) / std, labels)
    coef = np.zeros((k, x.shape[1]))
    intercept = np.full(k, -30.0)  # a class absent from the fit is never chosen
    present = clf.classes_
    if len(present) == 2:  # sklearn's binary case: one row for the second class
        coef[present[1]], intercept[present[1]] = clf.coef_[0], clf.intercept_[0]
        coef[present[0]], intercept[present[0]] = 0.0, 0.0
    else:
        coef[present], intercept[present] = clf.coef_, clf.intercept_
    weight = (coef / std).T
    return Head(weight, intercept - (coef / std) @ mean)


def combine(base_probs: np.ndarray, head_probs: np.ndarray, labelled_idx: Sequence[int]) -> np.ndarray:
    """Base answers for the unlabelled classes; the head shares out the
    base probability of the labelled ones."""
    out = base_probs.copy()
    mass = base_probs[:, labelled_idx].sum(axis=1, keepdims=True)
    out[:, labelled_idx] = mass * head_probs
    return out


def predict(head: Head, lab: LabFeatures, labelled_idx: Sequence[int]) -> np.ndarray:
    """The calibrated model's probabilities averaged over ``lab``'s views, as
    the saved model gives them."""
    per_view = [combine(p, head.probs(f), labelled_idx) for f, p in zip(lab.feats, lab.base_probs)]
    return np.mean(per_view, axis=0)


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def cross_validated_estimate(method: str, lab: LabFeatures, y: np.ndarray, groups: np.ndarray,
                             labelled_idx: Sequence[int], unlabelled: np.ndarray | None = None, seed: int = 0) -> dict:
    """Out-of-fold accuracy on the labelled cells (``y``: index into the base
    classes), folds by source group and stratified by class."""
    from sklearn.model_selection import StratifiedGroupKFold

    local = np.asarray([list(labelled_idx).index(v) for v in y])
    per_class_groups = min(len(np.unique(groups[local == c])) for c in range(len(labelled_idx)))
    folds = max(2, min(5, per_class_groups))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = np.zeros(len(y), int)
    fold_acc = []
    for train_rows, test_rows in splitter.split(np.zeros(len(y)), local, groups):
        head = fit_head(method, lab.feats[:, train_rows], local[train_rows], len(labelled_idx), unlabelled, seed)
        predicted[test_rows] = predict(head, lab.take(test_rows), labelled_idx).argmax(axis=1)
        fold_acc.append(float(np.mean(predicted[test_rows] == y[test_rows])))
    correct = int(np.sum(predicted == y))
    low, high = wilson_interval(correct, len(y))
    return {"accuracy": correct / len(y), "ci95": [round(low, 4), round(high, 4)], "n": int(len(y)),
            "folds": folds, "fold_accuracy": [round(a, 4) for a in fold_acc],
            "method": "stratified group k-fold on the labelled cells (one source image on one side)"}


def base_of(model):
    """The base model inside a lab model (or the model itself): a lab model
    calibrated again starts over from its base, with the new labels, instead
    of stacking a second head and a second generic extractor on the first."""
    import keras

    if "lab_predictions" not in {layer.name for layer in model.layers}:
        return model
    return keras.Model(model.input, model.get_layer("predictions").output, name=model.name.removesuffix("_lab"))


def build_model(base_model, head: Head, labelled_idx: Sequence[int], extractor=None):
    """base probabilities P and features f -> P * keep + (P . m) * scatter(head(f)),
    in standard Keras layers with fixed weights; f is :func:`lab_features`'
    (the model's own, and the generic ``extractor``'s beside them)."""
    import keras
    from keras import layers

    from ..models.ensemble import member_widths, own_widths

    n, k = base_model.output_shape[-1], len(labelled_idx)
    mask = np.zeros(n, np.float32)
    mask[list(labelled_idx)] = 1.0
    scatter = np.zeros((k, n), np.float32)
    scatter[np.arange(k), list(labelled_idx)] = 1.0

    def fixed(name, units, weights, activation=None, bias=None):
        layer = layers.Dense(units, use_bias=bias is not None, activation=activation, name=name, trainable=False,
                             dtype="float32")
        return layer, [weights.astype(np.float32)] + ([bias.astype(np.float32)] if bias is not None else [])

    joined, widths, own = base_model.get_layer("features"), member_widths(base_model), own_widths(base_model)
    taken = []  # each member's own features out of a block that also holds its taps
    if len(widths) > 1 or own != widths:  # as members_unit
        blocks = []
        for i, (x, width, mine) in enumerate(zip(joined.input, widths, own)):
            if mine < width:
                taken.append(fixed(f"member{i}_own", mine, np.eye(width, mine, dtype=np.float32)))
                x = taken[-1][0](x)
            blocks.append(layers.UnitNormalization(name=f"member{i}_unit")(x))
        feats = layers.Rescaling(1 / np.sqrt(len(widths)), name="own_unit")(layers.Concatenate(name="own_blocks")(blocks))
    else:
        feats = layers.UnitNormalization(name="own_unit")(joined.output)
    if extractor is not None:
        feats = layers.Concatenate(name="lab_features")([
            feats, layers.UnitNormalization(name="generic_unit")(extractor(base_model.input))])
    probs = base_model.output
    head_layer, head_w = fixed("lab_head", k, head.weight, "softmax", head.bias)
    mass_layer, mass_w = fixed("lab_mass", n, np.outer(mask, np.ones(n)))
    keep_layer, keep_w = fixed("lab_keep", n, np.diag(1.0 - mask))
    scatter_layer, scatter_w = fixed("lab_scatter", n, scatter)
    q = head_layer(layers.UnitNormalization(name="lab_unit")(feats))
    out = layers.Add(name="lab_predictions")([keep_layer(probs), layers.Multiply(name="lab_share")(
        [mass_layer(probs), scatter_layer(q)])])
    model = keras.Model(base_model.input, out, name=f"{base_model.name}_lab")
    for layer, weights in ((head_layer, head_w), (mass_layer, mass_w), (keep_layer, keep_w),
                           (scatter_layer, scatter_w), *taken):
        layer.set_weights(weights)
    return model


def kept_caution(card: dict, labelled: Sequence[str]) -> dict[str, float]:
    """The base card's ``unfamiliar_offsets`` of the classes the lab did not
    label. A lab model keeps the base's answers for those classes, but its
    folder warning knows the lab (``with_lab``), so the caution the base took
    on that lab's folders would be lost exactly there; it stays in the lab
    model's head instead (k-shot protocol, training/RESULTS.md)."""
    return {c: v for c, v in unfamiliar_caution(card)[0].items() if c not in labelled}


def base_offsets(card: dict) -> dict:
    """The class and unfamiliar offsets of a lab model's base (a model's own
    where it is no lab model): calibrating again starts from them, not from
    the lab model's, so the kept classes' caution is never added twice."""
    kept = card.get("calibration", {}).get("kept_caution", {})
    classes = {c: round(v - kept.get(c, 0.0), 6) for c, v in card.get(CLASS_OFFSETS, {}).items()}
    return {CLASS_OFFSETS: {c: v for c, v in classes.items() if v != 0.0},
            UNFAMILIAR_OFFSETS: {**card.get(UNFAMILIAR_OFFSETS, {}), **kept}}


def set_aside_classes(labelled_classes: Sequence[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Labelled cells per class, split into the classes with too few to fit
    (left to the base model) and those the head is fitted on."""
    counts = Counter(labelled_classes)
    return ({c: n for c, n in counts.items() if n < MIN_PER_CLASS},
            {c: n for c, n in counts.items() if n >= MIN_PER_CLASS})


def calibrate(classifier, labelled_paths: Sequence[Path], labelled_classes: Sequence[str], pixels: np.ndarray,
              groups: np.ndarray, *, method: str = "logistic", unlabelled_pixels: np.ndarray | None = None,
              lab_stain: np.ndarray | None = None, generic: bool = True, progress: ProgressFn = no_progress,
              cancel: CancelToken | None = None, seed: int = 0) -> Calibration:
    """``pixels``: the labelled cells as the model sees them, ``labelled_classes``
    their class names (known to the base model), ``groups`` their source
    groups; ``lab_stain``: the lab's cells' stain statistics (``stain_of_lab``;
    the labelled cells first, in order, then any unlabelled ones), which join
    the folder warning's references; ``generic``: fit on the shipped generic
    image features beside the model's own, where they are installed.
    Returns the calibrated model, its card and the estimate."""
    from ..data.dataset import sample_in_order
    from ..models.batchnorm import recalibrate_batchnorm
    from ..models.generic_features import DESCRIPTION, load_generic_extractor
    from ..models.modelfile import inference_copy

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    classes = list(classifier.classes)
    unknown = sorted(set(labelled_classes) - set(classes))
    if unknown:
        raise ValueError(f"the base model does not know the classes {unknown}; its classes are {classes}")
    few, counts = set_aside_classes(labelled_classes)
    if len(counts) < 2:
        short = "; too few: " + ", ".join(f"{c} ({n})" for c, n in few.items()) if few else ""
        raise ValueError(f"calibration needs at least {MIN_PER_CLASS} labelled cells of each of two classes or "
                         f"more{short}")
    # a class with too few labelled cells (a lab's one basophil) is left to the base model,
    # its cells counted as the lab's unlabelled ones, and the card says so
    given = len(labelled_classes)
    fitted = [i for i, c in enumerate(labelled_classes) if c in counts]
    stain_labels = [classes.index(c) if c in counts else -1 for c in labelled_classes]
    labelled_paths = [labelled_paths[i] for i in fitted]
    labelled_classes = [labelled_classes[i] for i in fitted]
    pixels, groups = pixels[fitted], np.asarray(groups)[fitted]
    labelled_idx = [classes.index(c) for c in classes if c in counts]
    y = np.asarray([classes.index(c) for c in labelled_classes])
    model = base_of(classifier.model)
    base = dict(classifier.card, **base_offsets(classifier.card))
    caution = kept_caution(base, counts)
    offsets = {c: base[CLASS_OFFSETS].get(c, 0.0) + caution.get(c, 0.0)
               for c in classes if c in base[CLASS_OFFSETS] or c in caution}
    applied = classifier.card.get(CLASS_OFFSETS, {})
    if offsets != applied or method == "adabn_logistic":
        model = inference_copy(model, always=True)  # the caller's model stays as it is
        shift_head(model, classes, offsets, applied)
    before = classifier.card.get("calibration", {})
    base_name = before.get("base_model", classifier.name)
    base_file = before.get("base_model_file") or (str(classifier.model_path) if classifier.model_path else None)
    lab_pixels = pixels if unlabelled_pixels is None else np.concatenate([pixels, unlabelled_pixels])
    if method == "adabn_logistic":
        progress(Progress("calibrate", 0, 3, "re-estimating normalisation statistics on the lab's cells"))
        recalibrate_batchnorm(model, lab_pixels)
    extractor = load_generic_extractor() if generic else None
    progress(Progress("calibrate", 1, 3, f"features of {len(pixels)} labelled cells"))
    lab = lab_features(model, pixels, cancel=cancel, extractor=extractor)
    unlabelled, known, rows = None, lab, fitted
    if method in LABELS_UNLABELLED and unlabelled_pixels is not None and len(unlabelled_pixels):
        pool = sample_in_order(range(len(unlabelled_pixels)), PSEUDO_LABEL_POOL, seed)
        progress(Progress("calibrate", 1, 3, f"features of {len(pool)} of the lab's unlabelled cells"))
        looked_at = lab_features(model, unlabelled_pixels[pool], cancel=cancel, extractor=extractor)
        unlabelled = looked_at.feats
        known = LabFeatures(np.concatenate([lab.feats, looked_at.feats], axis=1),
                            np.concatenate([lab.base_probs, looked_at.base_probs], axis=1))
        rows = fitted + [given + i for i in pool]
    progress(Progress("calibrate", 2, 3, "cross-validating the estimate"))
    estimate = cross_validated_estimate(method, lab, y, groups, labelled_idx, unlabelled, seed)
    local = np.asarray([labelled_idx.index(v) for v in y])
    head = fit_head(method, lab.feats, local, len(labelled_idx), unlabelled, seed)
    calibrated = build_model(model, head, labelled_idx, extractor)
    card = dict(classifier.card)
    card.update({
        "name": f"{base_name} — calibrated to the lab",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "weights_origin": f"calibrated from {base_name}",
        "calibration": {
            "base_model": base_name,
            "base_model_file": base_file,
            "method": method,
            "features": "the base model's features" + (f" and generic image features ({DESCRIPTION})"
                                                         if extractor is not None else ""),
            "labelled_cells": {c: counts.get(c, 0) for c in classes if c in counts},
            "set_aside": few,
            "labelled_files": [str(p) for p in labelled_paths],
            "unlabelled_cells": 0 if unlabelled_pixels is None else int(len(unlabelled_pixels)),
            "unlabelled_cells_looked_at": 0 if unlabelled is None else int(unlabelled.shape[1]),
            "pseudo_labelled_cells": head.pseudo_labelled,
            "pseudo_label_sure": {"self_training": PSEUDO_LABEL_SURE, "spreading": SPREAD_SURE}.get(method),
            "classes_kept_from_base": [c for c in classes if c not in counts],
            "kept_caution": caution,
            "estimate": estimate,
        },
        "test_views": LAB_MODEL_VIEWS,
        CLASS_OFFSETS: offsets,
        UNFAMILIAR_OFFSETS: {c: v for c, v in base[UNFAMILIAR_OFFSETS].items() if c not in caution},
    })
    for stale in ("test_metrics", "test_metrics_by_source", "test_metrics_one_view_by_source",
                  "test_metrics_four_views_by_source", "unseen_lab_evaluations", "test_time_options"):
        card.pop(stale, None)  # the base model's figures are not this model's
    if lab_stain is not None:
        labels = np.concatenate([stain_labels, np.full(len(lab_stain) - len(stain_labels), -1)])
        card["domain_check"] = with_lab(card.get("domain_check"), lab_stain, labels, len(classes),
                                        "the calibration lab")
    progress(Progress("calibrate", 3, 3, f"estimated accuracy {estimate['accuracy']:.1%} "
                                         f"(95 % interval {estimate['ci95'][0]:.0%}-{estimate['ci95'][1]:.0%})"))
    answers = zip(predict(head, known, labelled_idx), predict(head, known.first_view(), labelled_idx))
    return Calibration(calibrated, card, estimate, [classes[i] for i in labelled_idx],
                       answers=dict(zip(rows, answers)))


MAX_UNLABELLED = 2000


def stain_of_lab(classifier, cells: Sequence[tuple[Path, tuple | None]], views: np.ndarray) -> np.ndarray:
    """Stain statistics of a lab's cells (file, box in a field photo or None)
    in the view the base model's folder-warning references describe; ``views``
    are the same cells as the model sees them, for cards written before."""
    from ..infer.cells import views_of

    if stain_view(classifier.card) != SURROUNDINGS:
        return colour_stats(views)
    rows_of: dict = {}
    for row, (path, _) in enumerate(cells):
        rows_of.setdefault(path, []).append(row)
    around = np.zeros((len(cells), STAIN_SIDE, STAIN_SIDE, 3), np.uint8)
    for path, rows in rows_of.items():  # a photo with several labelled cells is decoded once
        around[rows] = views_of(path, STAIN_SIDE, "as_is", [cells[row][1] for row in rows])
    return colour_stats(around)


def calibrate_folder(classifier, labelled_dir: str | Path, *, unlabelled: Sequence[str | Path] = (),
                     method: str = "logistic", group_by: str | None = None, generic: bool = True,
                     progress: ProgressFn = no_progress, cancel: CancelToken | None = None,
                     seed: int = 0) -> Calibration:
    """``labelled_dir``/<class>/<image>: decode, group (by ``group_by`` on the
    file names and by near-duplicate crops), then :func:`calibrate`."""
    from ..data.dataset import collect_images, decode_images, sample_in_order, scan_labeled
    from ..data.prepare import duplicate_groups

    data = scan_labeled(labelled_dir)
    decoded = decode_images(data.paths, classifier.size, progress, cancel, framing=classifier.framing)
    ok = np.flatnonzero(decoded.ok)
    groups = duplicate_groups(data.paths, decoded, group_by)[ok]
    names = [data.classes[data.labels[i]] for i in ok]
    unlabelled_pixels = None
    if unlabelled:
        files = sample_in_order(collect_images(unlabelled)[0], MAX_UNLABELLED, seed)
        extra = decode_images(files, classifier.size, progress, cancel, framing=classifier.framing)
        unlabelled_pixels = extra.pixels[extra.ok]
    lab_cells = [(data.paths[i], None) for i in ok]
    lab_views = decoded.pixels[ok]
    if unlabelled:
        lab_cells += [(files[i], None) for i in np.flatnonzero(extra.ok)]
        lab_views = np.concatenate([lab_views, unlabelled_pixels])
    result = calibrate(classifier, [data.paths[i] for i in ok], names, decoded.pixels[ok], groups, method=method,
                       unlabelled_pixels=unlabelled_pixels, lab_stain=stain_of_lab(classifier, lab_cells, lab_views),
                       generic=generic, progress=progress, cancel=cancel, seed=seed)
    result.extra["unreadable"] = decoded.errors
    return result


def _read_cells(classifier, items, what: str, progress: ProgressFn, cancel: CancelToken | None):
    """Review items' cells as the model sees them, and the items whose image
    could be read (one unreadable file does not stop the calibration)."""
    from ..io.imageio import ImageReadError

    pixels, read = [], []
    for i, it in enumerate(items):
        if cancel is not None:
            cancel.raise_if_cancelled()
        try:
            pixels.append(classifier.view(it.path, it.field_box))
        except ImageReadError:
            continue
        read.append(it)
        progress(Progress("decode", i + 1, len(items), f"reading {what} ({i + 1}/{len(items)})"))
    return pixels, read


def calibrate_session(classifier, session, *, method: str = DEFAULT_METHOD, tta: bool = True,
                      progress: ProgressFn = no_progress, cancel: CancelToken | None = None, seed: int = 0):
    """Calibrate to the cells of a review session: its reviewed cells are the
    labelled ones, its other readable cells the lab's unlabelled ones.
    Returns the calibration and the calibrated model's predictions for every
    readable cell of the session (to show how the count changes)."""
    from ..data.dataset import near_duplicate_pairs, perceptual_hash, sample_in_order
    from ..data.splits import source_groups
    from ..infer.classify import Classifier
    from ..review.differential import UNUSABLE
    from ..review.session import ReviewItem

    labelled = [it for it in session.items if it.error is None and it.reviewed not in (None, UNUSABLE)
                and it.reviewed in classifier.classes]
    others = [it for it in session.items if it.error is None and it.reviewed is None]
    pixels, read = _read_cells(classifier, labelled, "labelled cells", progress, cancel)
    if not pixels:
        raise ValueError("no reviewed cells to calibrate on: label a few cells per class first")
    paths, names = [it.path for it in read], [it.reviewed for it in read]
    pixels = np.stack(pixels)
    hashes = np.stack([perceptual_hash(p) for p in pixels])
    groups = source_groups(paths, None, near_duplicate_pairs(hashes, np.ones(len(paths), bool)))
    # the cells a pseudo-labelling method looks at, or adabn's normalisation statistics
    unlabelled = sample_in_order(others, PSEUDO_LABEL_POOL if method in LABELS_UNLABELLED else MAX_UNLABELLED, seed)
    extra, read_extra = _read_cells(classifier, unlabelled if method in USES_UNLABELLED else [],
                                    "the folder's other cells", progress, cancel)
    lab_cells = [(it.path, it.field_box) for it in read + read_extra]
    stain = stain_of_lab(classifier, lab_cells, np.concatenate([pixels] + ([np.stack(extra)] if extra else [])))
    result = calibrate(classifier, paths, names, pixels, groups, method=method,
                       unlabelled_pixels=np.stack(extra) if extra else None, lab_stain=stain, progress=progress,
                       cancel=cancel, seed=seed)
    calibrated = Classifier(result.model, result.card)
    cells = read + read_extra
    answered = {}  # the cells calibration has the features of: answered without running the model again
    for row, (four, one) in result.answers.items():
        answered[cells[row].key] = _answered(cells[row], four if tta else one, calibrated.classes)
    items = [it for it in session.items if it.error is None]
    files = [Path(p) for p in dict.fromkeys(it.path for it in items if it.key not in answered)]
    predictions, done = list(answered.values()), set()
    # the same cells as the session's: finding them is deterministic
    for pred in calibrated.classify_files(files, tta=tta, cancel=cancel, mode=session.mode):
        if ReviewItem.from_prediction(pred).key not in answered:
            predictions.append(pred)
        done.add(pred.path)
        if len(done) % 64 == 0 or len(done) == len(files):
            progress(Progress("classify", len(done), len(files),
                              f"classifying the folder's other cells with the calibrated model "
                              f"({len(done)}/{len(files)} images)"))
    if cancel is not None:
        cancel.raise_if_cancelled()
    return result, predictions


def _answered(item, probs: np.ndarray, classes: Sequence[str]):
    """A review item's cell as a prediction with ``probs``."""
    from ..infer.cells import CellCut
    from ..infer.classify import Prediction

    k = int(probs.argmax())
    cut = CellCut(item.cell or 0, tuple(item.box), item.at_border, item.in_field, item.grey) if item.box else None
    return Prediction(item.path, classes[k], float(probs[k]), probs, cell=cut)
