"""The PDF report: lab and sample fields, model card summary, differential
count (table and chart), the count of each field photo, and a gallery of
flagged cells, through Qt's own PDF writer, written atomically."""

from __future__ import annotations

import datetime as _dt
import html
import io
from pathlib import Path

from PySide6.QtCore import QMarginsF, QUrl
from PySide6.QtGui import QImage, QPageLayout, QPageSize, QPdfWriter, QPixmap, QTextDocument

from ..engine.io.atomic import atomic_path
from ..engine.review.differential import ReferralRules, counts_per_photo, leukocyte_classes
from ..engine.review.session import ReviewSession
from .count_panel import plot_differential

REPORT_FIELDS = ("Laboratory", "Sample ID", "Patient / specimen", "Operator", "Comments")


def _figure_image(fig) -> QImage:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150)
    image = QImage()
    image.loadFromData(buf.getvalue(), "PNG")
    return image


def build_report_html(session: ReviewSession, fields: dict[str, str], card: dict | None, gallery: list[str],
                      rules: ReferralRules = ReferralRules()) -> str:
    diff = session.differential(rules)
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(c)}</td><td align='right'>{n}</td><td align='right'>{diff['percent'][c]:.1f}</td></tr>"
        for c, n in diff["counts"].items()
    )
    info = "".join(f"<tr><td><b>{esc(k)}</b></td><td>{esc(fields.get(k, ''))}</td></tr>" for k in REPORT_FIELDS)
    metrics = ""
    if card and card.get("test_metrics"):
        tm = card["test_metrics"]
        metrics = f"; test accuracy {tm['accuracy']:.1%}, macro-F1 {tm['macro_f1']:.3f} (n={tm['n']})"
    model = (f"{esc(session.model_name)} (engine {esc(session.model_version)}){esc(metrics)}"
             if session.model_name else "—")
    reviewers = ", ".join(session.reviewers()) or "nobody yet"
    refer = ("<p style='color:#a01919'><b>Needs a haematologist's look:</b> " + esc("; ".join(diff["refer"])) + "</p>"
             if diff["refer"] else "<p>No finding that needs a haematologist by the lab's rules.</p>")
    cells = "".join(
        f"<td align='center'><img src='cell{i}' width='88' height='88'><br><small>{esc(session.get(k).display_name)}<br>"
        f"{esc(session.get(k).label or '')} {session.get(k).confidence:.0%}</small></td>"
        + ("</tr><tr>" if i % 6 == 5 else "")
        for i, k in enumerate(gallery)
    )
    photos = _photo_table(session)
    grey = (f"; {diff['grey']} cells come from grey images (no stain colour), whose answers are less sure"
            if diff["grey"] else "")
    return f"""
<h2>White blood cell differential</h2>
<p>Report date {_dt.datetime.now():%Y-%m-%d %H:%M} · source: {esc(', '.join(session.sources))}</p>
<table cellpadding='3'>{info}</table>
<p><b>Model:</b> {model}<br>
<b>Reviewed by:</b> {esc(reviewers)}; {session.changed_from_model()} labels differ from the model's.<br>
Reviewed labels replace model predictions where a technologist set them. This is decision support: results
must be confirmed by qualified staff.</p>
{refer}
<h3>Differential count</h3>
<table border='1' cellspacing='0' cellpadding='4'>
<tr><th>Class</th><th>Count</th><th>% of WBC</th></tr>{rows}
<tr><td><b>Total WBC</b></td><td align='right'><b>{diff['total']}</b></td><td></td></tr>
<tr><td>NRBC per 100 WBC</td><td align='right'>{diff['nrbc']}</td><td align='right'>{diff['nrbc_per_100_wbc']:.1f}</td></tr>
<tr><td>Platelets seen (not white cells)</td><td align='right'>{diff['platelets_seen']}</td><td></td></tr></table>
<p><small>{esc(diff['convention'])}</small></p>
<p>Reviewed {diff['reviewed']}, unreviewed {diff['unreviewed']}, flagged (confidence below
{session.threshold:.0%}, not reviewed) {diff['flagged']}, unusable {diff['unusable']}, unreadable files {diff['errors']}{grey}.</p>
<img src='chart' width='420'>
{photos}
<h3>Flagged cells ({len(gallery)} shown)</h3>
<table cellpadding='2'><tr>{cells}</tr></table>
"""


def _photo_table(session: ReviewSession) -> str:
    """Counts per field photo, with the cells its edge cuts (each counted once)."""
    per_photo = counts_per_photo(session.items, session.classes)
    if not per_photo:
        return ""
    esc = html.escape
    wbc = leukocyte_classes(session.classes)
    empty = session.differential()["no_white_cell"]
    head = "".join(f"<th>{esc(c[:5])}</th>" for c in wbc)
    body = "".join(
        f"<tr><td>{esc(Path(path).name)}</td>" + "".join(f"<td align='right'>{counts[c] or ''}</td>" for c in wbc)
        + f"<td align='right'><b>{sum(counts.values())}</b></td><td align='right'>{cut or ''}</td></tr>"
        for path, counts, cut in per_photo)
    return (f"<h3>Field photos ({len(per_photo)} with white cells"
            + (f", {empty} without" if empty else "") + ")</h3>"
            "<p><small>Every white cell found in a photo is one cell of the count; a cell cut by the photo's edge is "
            "counted and listed under 'edge'.</small></p>"
            f"<table border='1' cellspacing='0' cellpadding='2'><tr><th>photo</th>{head}<th>WBC</th><th>edge</th></tr>"
            f"{body}</table>")


def write_pdf_report(path: str | Path, session: ReviewSession, fields: dict[str, str], card: dict | None,
                     thumbnails: dict[str, QPixmap], rules: ReferralRules = ReferralRules(),
                     gallery_limit: int = 36) -> Path:
    flagged = [it.key for it in session.items if it.is_flagged(session.threshold)][:gallery_limit]
    doc = QTextDocument()
    from matplotlib.figure import Figure

    chart = Figure(figsize=(5.5, 2.8))
    plot_differential(chart, session.differential(rules))
    doc.addResource(QTextDocument.ImageResource, QUrl("chart"), _figure_image(chart))
    for i, p in enumerate(flagged):
        pix = thumbnails.get(p)
        if pix is not None:
            doc.addResource(QTextDocument.ImageResource, QUrl(f"cell{i}"), pix.toImage())
    doc.setHtml(build_report_html(session, fields, card, flagged, rules))
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = QPdfWriter(str(tmp))
        writer.setPageSize(QPageSize(QPageSize.A4))
        writer.setPageMargins(QMarginsF(15, 15, 15, 15), QPageLayout.Millimeter)
        writer.setTitle("WBC differential report")
        writer.setCreator("WBC Desktop")
        doc.print_(writer)
        del writer  # closes the file before it is moved into place
    return path
