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

from ... import paths
from ..io.atomic import write_text
from .differential import UNUSABLE, ReferralRules, differential

SESSION_FORMAT = 4  # 2: the audit trail of review changes; 3: cells within field photos; 4: grey files


@dataclass
class ReviewItem:
    path: str
    label: str | None = None  # the model's prediction
    confidence: float = 0.0
    probs: list[float] | None = None
    error: str | None = None
    reviewed: str | None = None  # the technologist's class, or UNUSABLE
    note: str = ""
    cell: int | None = None  # index of the white cell within its field photo (None: a single-cell crop)
    box: list[int] | None = None  # x, y, w, h of the cell in the file's pixels
    at_border: bool = False  # the photo's edge cuts the cell: counted, and flagged
    grey: bool = False  # the file has no stain colour: a less sure answer (``CellCut.grey``)

    @classmethod
    def from_prediction(cls, pred) -> "ReviewItem":
        """A classifier's prediction as a cell to review."""
        probs = None if pred.probs is None else [float(v) for v in pred.probs]
        cut = pred.cell
        return cls(pred.path, pred.label, float(pred.confidence), probs, pred.error,
                   cell=cut.index if cut is not None and cut.in_field else None,
                   box=list(cut.box) if cut is not None else None, at_border=bool(cut and cut.at_border),
                   grey=bool(cut and cut.grey))

    @property
    def key(self) -> str:
        """Unique within a session: the file, and the cell's number in a field photo."""
        return self.path if self.cell is None else f"{self.path}#{self.cell}"

    @property
    def in_field(self) -> bool:
        return self.cell is not None

    @property
    def field_box(self) -> list[int] | None:
        """Where to cut the cell from its file: None for a single-cell crop."""
        return self.box if self.cell is not None else None

    @property
    def display_name(self) -> str:
        return Path(self.path).name + (f" #{self.cell + 1}" if self.cell is not None else "")

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
    audit: list[dict] = field(default_factory=list)  # every review change: time, operator, path, old, new
    calibration_set: list[str] = field(default_factory=list)  # cells proposed for labelling (calibration)
    mode: str = "auto"  # how the images were taken: single cells, field photos, or told apart (infer.cells)

    def __post_init__(self):
        self._index = {it.key: i for i, it in enumerate(self.items)}

    def add(self, item: ReviewItem) -> int:
        """Add or replace (a re-run keeps the technologist's review)."""
        if item.key in self._index:
            i = self._index[item.key]
            old = self.items[i]
            item.reviewed, item.note = old.reviewed, old.note
            self.items[i] = item
            return i
        self._index[item.key] = len(self.items)
        self.items.append(item)
        return len(self.items) - 1

    def relocate(self, old: str, new: str) -> int | None:
        """A single-cell file was moved (sort into folders, or its undo):
        the review follows it. Returns its row, or None for a file not here."""
        i = self._index.pop(old, None)
        if i is not None:
            self.items[i].path = new
            self._index[new] = i
        return i

    def get(self, key: str) -> ReviewItem | None:
        i = self._index.get(key)
        return None if i is None else self.items[i]

    def index_of(self, key: str) -> int | None:
        return self._index.get(key)

    def cells_of(self, path: str) -> list[int]:
        """Rows of every cell found in one file (one for a crop), in order."""
        return [i for i, it in enumerate(self.items) if it.path == path]

    def set_review(self, index: int, reviewed: str | None, operator: str) -> None:
        """Set (or clear, with None) the technologist's label; every change
        is kept in the audit trail with its time and operator."""
        if reviewed is not None and reviewed not in self.classes and reviewed != UNUSABLE:
            raise ValueError(f"unknown class '{reviewed}'")
        if not operator.strip():
            raise ValueError("a review change needs the operator's name")
        item = self.items[index]
        if item.reviewed == reviewed:
            return
        self.audit.append({"time": _dt.datetime.now().isoformat(timespec="seconds"), "operator": operator.strip(),
                           "path": item.path, "cell": item.cell, "model": item.label, "old": item.reviewed, "new": reviewed})
        item.reviewed = reviewed

    def reviewers(self) -> list[str]:
        return list(dict.fromkeys(entry["operator"] for entry in self.audit))

    def changed_from_model(self) -> int:
        """Cells whose final label a person set to something else than the model said."""
        return sum(1 for it in self.items if it.reviewed is not None and it.reviewed != it.label)

    def differential(self, rules: ReferralRules = ReferralRules()) -> dict:
        return differential(self.items, self.classes, self.threshold, rules)

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


def reviewed_cells(session: ReviewSession) -> list[tuple[str, str, list[int] | None]]:
    """(path, class, box in a field photo or None) of every cell a person
    labelled with a class: the lab's own ground truth, ready to become
    training data (``sorting.sort_into_folders``)."""
    return [(it.path, it.reviewed, it.field_box) for it in session.items
            if it.error is None and it.reviewed and it.reviewed != UNUSABLE]
