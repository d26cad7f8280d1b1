"""A review session: the model's predictions for a folder plus what the
technologist decided, kept apart, saved atomically and restorable.

Plain Python (no Qt) so the CLI, reports and tests share it with the app.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from .. import paths
from .atomic import write_text

UNUSABLE = "unusable"  # "not a WBC / unusable": excluded from the differential count
SESSION_FORMAT = 1


@dataclass
class ReviewItem:
    path: str
    label: str | None = None  # the model's prediction
    confidence: float = 0.0
    probs: list[float] | None = None
    error: str | None = None
    reviewed: str | None = None  # the technologist's class, or UNUSABLE
    note: str = ""

    @property
    def final_label(self) -> str | None:
        return self.reviewed or self.label

    def is_flagged(self, threshold: float) -> bool:
        """Needs a human: low confidence and nobody has looked yet."""
        return self.error is None and self.reviewed is None and self.confidence < threshold


@dataclass
class ReviewSession:
    sources: list[str]
    classes: list[str]
    model_name: str = ""
    model_version: str = ""
    threshold: float = 0.7
    items: list[ReviewItem] = field(default_factory=list)
    created: str = field(default_factory=lambda: _dt.datetime.now().isoformat(timespec="seconds"))
    modified: str = ""

    def __post_init__(self):
        self._index = {it.path: i for i, it in enumerate(self.items)}

    def add(self, item: ReviewItem) -> int:
        """Add or replace (a re-run keeps the technologist's review)."""
        if item.path in self._index:
            i = self._index[item.path]
            old = self.items[i]
            item.reviewed, item.note = old.reviewed, old.note
            self.items[i] = item
            return i
        self._index[item.path] = len(self.items)
        self.items.append(item)
        return len(self.items) - 1

    def get(self, path: str) -> ReviewItem | None:
        i = self._index.get(path)
        return None if i is None else self.items[i]

    def index_of(self, path: str) -> int | None:
        return self._index.get(path)

    def set_review(self, index: int, reviewed: str | None) -> None:
        if reviewed is not None and reviewed not in self.classes and reviewed != UNUSABLE:
            raise ValueError(f"unknown class '{reviewed}'")
        self.items[index].reviewed = reviewed

    def differential(self) -> dict:
        """Counts and percentages per class, reviewed labels first."""
        counts = {c: 0 for c in self.classes}
        unusable = errors = flagged = unreviewed = 0
        for it in self.items:
            if it.error:
                errors += 1
                continue
            if it.reviewed is None:
                unreviewed += 1
                flagged += it.confidence < self.threshold
            if it.final_label == UNUSABLE:
                unusable += 1
            elif it.final_label in counts:
                counts[it.final_label] += 1
        total = sum(counts.values())
        return {
            "counts": counts,
            "percent": {c: (100.0 * n / total if total else 0.0) for c, n in counts.items()},
            "total": total,
            "unusable": unusable,
            "errors": errors,
            "flagged": flagged,
            "unreviewed": unreviewed,
            "reviewed": len(self.items) - errors - unreviewed,
        }

    def next_flagged(self, after: int, order: Iterable[int] | None = None) -> int | None:
        """The next flagged item after position ``after`` in ``order`` (the
        view's order), wrapping around."""
        order = list(order) if order is not None else list(range(len(self.items)))
        if not order:
            return None
        start = order.index(after) + 1 if after in order else 0
        for i in order[start:] + order[:start]:
            if self.items[i].is_flagged(self.threshold):
                return i
        return None

    # persistence -----------------------------------------------------------
    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items()}
        data["format"] = SESSION_FORMAT
        return json.dumps(data, indent=1)

    def save(self, path: str | os.PathLike) -> None:
        self.modified = _dt.datetime.now().isoformat(timespec="seconds")
        write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ReviewSession":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            data.pop("format", None)
            data["items"] = [ReviewItem(**it) for it in data.get("items", [])]
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a review session file ({exc})") from None


def autosave_path(sources: Iterable[str | os.PathLike]) -> Path:
    """One autosave file per opened folder (set), in the app's data folder,
    so reopening a folder restores its review and lab folders stay untouched."""
    key = "\n".join(sorted(str(Path(s).resolve()) for s in sources))
    folder = paths.user_data_dir() / "sessions"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"


def write_review_csv(session: ReviewSession, path: str | os.PathLike) -> None:
    """Every cell with the model's view and the reviewer's, one row each."""
    from .csvio import write_csv

    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    header = (["path", "predicted", "confidence"] + [f"prob_{c}" for c in session.classes]
              + ["reviewed", "final", "note", "model", "model_version", "timestamp", "error"])
    rows = (
        [it.path, it.label or "", f"{it.confidence:.4f}" if it.error is None else ""]
        + ([f"{p:.4f}" for p in it.probs] if it.probs else [""] * len(session.classes))
        + [it.reviewed or "", it.final_label or "", it.note, session.model_name, session.model_version, stamp, it.error or ""]
        for it in session.items
    )
    write_csv(path, header, rows)


def reviewed_cells(session: ReviewSession) -> list[tuple[str, str]]:
    """(path, class) of every cell a person labelled with a class: the
    lab's own ground truth, ready to become training data."""
    return [(it.path, it.reviewed) for it in session.items
            if it.error is None and it.reviewed and it.reviewed != UNUSABLE]
