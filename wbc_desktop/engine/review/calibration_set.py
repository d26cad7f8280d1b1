"""Which cells to ask a technologist to label when calibrating to a lab:
for each class the model sees in the folder, a few cells chosen for
uncertainty and diversity, not the easy ones. Easy cells teach the new
head nothing the model did not know; cells spread over the model's doubt
show it where this lab differs."""

from __future__ import annotations

import numpy as np

from .session import ReviewSession

PER_CLASS = 5


def propose_cells(session: ReviewSession, per_class: int = PER_CLASS) -> list[int]:
    """Rows to label, per predicted class: the least confident first, then
    each next one the farthest (in the model's probabilities) from those
    already chosen. Cells already reviewed count towards their class."""
    rows = [i for i, it in enumerate(session.items) if it.error is None and it.probs is not None]
    chosen: list[int] = []
    for label in session.classes:
        done = sum(1 for i in rows if session.items[i].reviewed == label)
        candidates = [i for i in rows if session.items[i].label == label and session.items[i].reviewed is None]
        want = min(per_class - done, len(candidates))
        if want <= 0:
            continue
        probs = np.asarray([session.items[i].probs for i in candidates])
        picked = [int(np.argmin(probs.max(axis=1)))]
        nearest = np.linalg.norm(probs - probs[picked[0]], axis=1)
        while len(picked) < want:
            nxt = int(np.argmax(nearest))
            picked.append(nxt)
            nearest = np.minimum(nearest, np.linalg.norm(probs - probs[nxt], axis=1))
        chosen += [candidates[p] for p in picked]
    return sorted(chosen)
