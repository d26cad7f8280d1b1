"""The WBC differential by haematology conventions, for the count panel,
the reports and the CLI alike.

- The differential is over leukocytes only; immature granulocytes (IG) are
  leukocytes and part of it.
- Nucleated red cells (erythroblasts) are not: they are reported as NRBC
  per 100 WBC.
- Platelets are not white cells: they are reported as "platelets seen".
- Cells a technologist marked unusable, and unreadable files, count nowhere.
- A count needs a haematologist's look when it holds any cell of the
  refer-on classes (IG, erythroblasts) or too many unusable cells.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..infer.modes import NO_WHITE_CELL

UNUSABLE = "unusable"  # "not a WBC / unusable": excluded from every count
NRBC_CLASSES = ("erythroblast",)
PLATELET_CLASSES = ("platelet",)
CONVENTION = ("Differential over leukocytes only (immature granulocytes included); nucleated red cells as NRBC per "
              "100 WBC; platelets are not white cells and are listed as platelets seen; cells marked unusable and "
              "unreadable files are not counted.")


@dataclass(frozen=True)
class ReferralRules:
    """When a count is flagged for a haematologist (configurable in the app)."""

    refer_on_any: tuple[str, ...] = ("ig", "erythroblast")
    max_unusable_percent: float = 10.0  # of the cells looked at (counted + unusable)


def leukocyte_classes(classes: Sequence[str]) -> list[str]:
    return [c for c in classes if c not in NRBC_CLASSES and c not in PLATELET_CLASSES]


def differential(items: Iterable, classes: Sequence[str], threshold: float,
                 rules: ReferralRules = ReferralRules()) -> dict:
    """``items``: review items (``final_label``, ``reviewed``, ``confidence``,
    ``error``). Reviewed labels replace predictions."""
    wbc = leukocyte_classes(classes)
    counts = {c: 0 for c in wbc}
    nrbc = platelets = unusable = errors = empty = flagged = unreviewed = looked_at = at_border = grey = 0
    tally: Counter[str] = Counter()
    for it in items:
        if it.error:
            empty += it.error == NO_WHITE_CELL
            errors += it.error != NO_WHITE_CELL
            continue
        looked_at += 1
        at_border += bool(getattr(it, "at_border", False))
        grey += bool(getattr(it, "grey", False))
        if it.reviewed is None:
            unreviewed += 1
            flagged += it.confidence < threshold
        label = it.final_label
        tally[label] += 1
        if label == UNUSABLE:
            unusable += 1
        elif label in NRBC_CLASSES:
            nrbc += 1
        elif label in PLATELET_CLASSES:
            platelets += 1
        elif label in counts:
            counts[label] += 1
    total = sum(counts.values())
    reasons = [f"{c} present ({tally[c]})" for c in rules.refer_on_any if tally[c]]
    unusable_percent = 100.0 * unusable / looked_at if looked_at else 0.0
    if unusable_percent > rules.max_unusable_percent:
        reasons.append(f"{unusable_percent:.0f} % of cells unusable (limit {rules.max_unusable_percent:g} %)")
    return {
        "counts": counts,
        "percent": {c: (100.0 * n / total if total else 0.0) for c, n in counts.items()},
        "total": total,
        "nrbc": nrbc,
        "nrbc_per_100_wbc": 100.0 * nrbc / total if total else 0.0,
        "platelets_seen": platelets,
        "unusable": unusable,
        "errors": errors,
        "no_white_cell": empty,  # field photos in which no white cell was found
        "at_border": at_border,  # cells cut by a photo's edge: counted, flagged here
        "grey": grey,  # cells of grey images (no stain colour): their answers less sure
        "flagged": flagged,
        "unreviewed": unreviewed,
        "reviewed": looked_at - unreviewed,
        "refer": reasons,
        "convention": CONVENTION,
    }


def counts_per_photo(items: Iterable, classes: Sequence[str]) -> list[tuple[str, dict[str, int], int]]:
    """Per field photo: its leukocyte counts by final label and how many of
    its cells the edge cuts, in the order the photos were classified. Each
    detected cell is one row of the session, so no cell counts twice."""
    wbc = leukocyte_classes(classes)
    photos: dict[str, tuple[Counter, list[int]]] = {}
    for it in items:
        if it.error is None and getattr(it, "cell", None) is not None:
            tally, cut = photos.setdefault(it.path, (Counter(), [0]))
            if it.final_label in wbc:
                tally[it.final_label] += 1
            cut[0] += bool(it.at_border)
    return [(path, {c: tally[c] for c in wbc}, cut[0]) for path, (tally, cut) in photos.items()]
