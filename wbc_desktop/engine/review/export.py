"""A review session as CSV files: one row per cell, and the differential
by the conventions of :mod:`.differential`."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from ..io.csvio import CELL_COLUMNS, cell_columns, write_csv
from ..infer.modes import NO_WHITE_CELL
from .differential import NRBC_CLASSES, PLATELET_CLASSES, UNUSABLE, ReferralRules
from .session import ReviewSession


def counted_as(item) -> str:
    """Where a cell goes in the differential."""
    if item.error == NO_WHITE_CELL:
        return "not counted (no white cell in the photo)"
    if item.error:
        return "not counted (unreadable)"
    label = item.final_label
    if label == UNUSABLE:
        return "not counted (unusable)"
    if label in NRBC_CLASSES:
        return "NRBC"
    if label in PLATELET_CLASSES:
        return "platelet"
    return "WBC"


def write_review_csv(session: ReviewSession, path: str | os.PathLike) -> None:
    """Every cell with the model's view and the reviewer's, one row each;
    a field photo's cells with their number and box (as ``wbc classify``)."""
    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    header = (CELL_COLUMNS + ["predicted", "confidence"]
              + [f"prob_{c}" for c in session.classes]
              + ["reviewed", "final", "counted_as", "note", "model", "model_version", "timestamp", "error"])
    rows = (
        cell_columns(it.path, it.cell, it.box, it.at_border)
        + [it.label or "", f"{it.confidence:.4f}" if it.error is None else ""]
        + ([f"{p:.4f}" for p in it.probs] if it.probs else [""] * len(session.classes))
        + [it.reviewed or "", it.final_label or "", counted_as(it), it.note, session.model_name,
           session.model_version, stamp, it.error or ""]
        for it in session.items
    )
    write_csv(path, header, rows)


def differential_csv_path(cells_csv: str | os.PathLike) -> Path:
    path = Path(cells_csv)
    return path.with_name(f"{path.stem}_differential.csv")


def write_differential_csv(session: ReviewSession, path: str | os.PathLike,
                           rules: ReferralRules = ReferralRules()) -> None:
    """The differential as a lab reads it: leukocytes with %, then NRBC per
    100 WBC, platelets seen, what was not counted, and the referral flags."""
    d = session.differential(rules)
    rows = [[c, n, f"{d['percent'][c]:.1f}"] for c, n in d["counts"].items()]
    rows += [["Total WBC", d["total"], "100.0" if d["total"] else ""],
             ["NRBC (per 100 WBC)", d["nrbc"], f"{d['nrbc_per_100_wbc']:.1f}"],
             ["Platelets seen (not white cells)", d["platelets_seen"], ""],
             ["Unusable (not counted)", d["unusable"], ""],
             ["Unreadable files (not counted)", d["errors"], ""],
             ["Field photos without a white cell", d["no_white_cell"], ""],
             ["Cells cut by a photo edge (counted above)", d["at_border"], ""],
             ["Cells of grey images (answers less sure)", d["grey"], ""],
             ["Needs a haematologist", "yes" if d["refer"] else "no", "; ".join(d["refer"])],
             ["Reviewed by", ", ".join(session.reviewers()), ""],
             ["Labels changed from the model's", session.changed_from_model(), ""],
             ["Convention", d["convention"], ""]]
    write_csv(path, ["class", "count", "percent_of_wbc"], rows)
