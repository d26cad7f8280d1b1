"""CSV output through the csv module (paths may hold commas and quotes),
written atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable, Sequence

from .atomic import write_text

# where a cell lies in its file: the same columns in ``wbc classify``'s CSV and the review export
CELL_COLUMNS = ["path", "cell", "x", "y", "w", "h", "at_border"]


def cell_columns(path: str, index: int | None, box: Sequence[int] | None, at_border: bool) -> list:
    """``CELL_COLUMNS`` of one cell; blank place for a file with no cell."""
    if box is None:
        return [path] + [""] * 6
    return [path, index or 0, *box, "yes" if at_border else "no"]


# a spreadsheet runs a cell that starts so as a formula: a note typed as "-ve"
# shows #NAME?, one typed as "=HYPERLINK(...)" becomes a link
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def as_text(value):
    """``value`` as a spreadsheet will show it: text that would start a
    formula gets a leading apostrophe (OWASP's advice on CSV injection);
    numbers, negative ones too, stay numbers."""
    if not isinstance(value, str) or not value.startswith(FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([as_text(v) for v in row] for row in rows)
    write_text(path, buf.getvalue())
