"""CSV output through the csv module (paths may hold commas and quotes),
written atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable, Sequence

from .atomic import write_text


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buf.getvalue())
