"""Fixed offsets on some classes' logits, chosen on the cross-lab protocol.

The classes that only one training lab holds (ig, erythroblast and platelet:
PBC alone) were learned with that lab's look, and in a lab the model never
saw they attract its lymphocytes and monocytes. A negative offset asks for
more evidence before those answers. It lives in the head's bias, so the
model file, calibration and every view see it alike, and the card says how
much was added (``class_offsets``) so that it can be changed or taken back.

A card may also hold ``unfamiliar_offsets``: more of the same, added only to
a folder that the folder warning (``infer.domain_check``) finds unlike the
training labs. There the one-lab classes are least to be trusted, while on
the training labs' own folders they cost accuracy (PBC's ig recall). And an
``unfamiliar_temperature``: on such a folder every logit is divided by it,
because on a lab it never saw the model is surer than it is right (its
confidences, not its labels, change; more cells fall below the review flag).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

CLASS_OFFSETS = "class_offsets"  # the card's keys
UNFAMILIAR_OFFSETS = "unfamiliar_offsets"
UNFAMILIAR_TEMPERATURE = "unfamiliar_temperature"


def parse_offsets(items: Sequence[str]) -> dict[str, float]:
    """``["ig=-0.5", ...]``, as the training scripts take them."""
    return {c: float(v) for c, _, v in (item.partition("=") for item in items)}


def known(classes: Sequence[str], offsets: Mapping[str, float]) -> dict[str, float]:
    """The offsets of the classes a model has: a leave-one-lab-out model
    trained without PBC has no ig, erythroblast or platelet to shift."""
    return {c: v for c, v in offsets.items() if c in classes}


def unfamiliar_caution(card: Mapping) -> tuple[dict[str, float], float]:
    """What a card changes on a folder unlike its training labs: its
    ``unfamiliar_offsets`` for the classes it has, and its
    ``unfamiliar_temperature`` (1: none)."""
    return known(card["classes"], card.get(UNFAMILIAR_OFFSETS, {})), float(card.get(UNFAMILIAR_TEMPERATURE, 1.0))


def describe(offsets: Mapping[str, float]) -> str:
    return ", ".join(f"{c} {v:+g}" for c, v in offsets.items())


def offset_vector(classes: Sequence[str], offsets: Mapping[str, float]) -> np.ndarray:
    unknown = sorted(set(offsets) - set(classes))
    if unknown:
        raise ValueError(f"class offsets name classes the model does not have: {unknown}")
    return np.asarray([float(offsets.get(c, 0.0)) for c in classes], np.float32)


def shift_head(model, classes: Sequence[str], offsets: Mapping[str, float],
               applied: Mapping[str, float] | None = None) -> None:
    """Set the model's logit offsets to ``offsets``; ``applied``: those its
    card says are in its bias already (taken out first, so shifting twice
    does not add up)."""
    head = model.get_layer("predictions")
    weights, bias = head.get_weights()
    change = offset_vector(classes, offsets) - offset_vector(classes, applied or {})
    head.set_weights([weights, bias + change])


def shift_probs(probs: np.ndarray, classes: Sequence[str], offsets: Mapping[str, float]) -> np.ndarray:
    """Offsets added to the logits behind probabilities already computed:
    softmax(z + b) is p * exp(b), normalised. Exact for one view; four views
    average probabilities, which this then shifts as one."""
    shifted = np.asarray(probs, np.float64) * np.exp(offset_vector(classes, offsets))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Logits divided by ``temperature`` behind probabilities already
    computed: softmax(z / t) is p ** (1 / t), normalised. The order of the
    classes, so every label, stays."""
    logp = np.log(np.maximum(np.asarray(probs, np.float64), 1e-30)) / temperature
    softened = np.exp(logp - logp.max(axis=-1, keepdims=True))
    return (softened / softened.sum(axis=-1, keepdims=True)).astype(np.float32)
