"""*Calibrate to this lab*, guided: the app proposes a few cells per class
to label (uncertain and diverse ones), the technologist labels them with
the usual review keys, the app calibrates on a worker and shows the
estimated accuracy and how the count would change, and the lab model is
used only if the technologist says so. The base model stays in the model
list, one click away."""

from __future__ import annotations

import copy
import html
from collections import Counter
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QMessageBox, QVBoxLayout

from ..engine.review.calibration_set import PER_CLASS, propose_cells
from ..engine.review.differential import UNUSABLE
from ..engine.review.session import ReviewItem
from .app_state import AppState
from .cell_model import FILTER_CALIBRATION
from .dialogs import calibration_facts_html
from .review_page import ReviewPage
from .workers import Worker


def kept_class_caution(kept: list[str], called: dict[str, int]) -> str:
    """Why the lab model may still be wrong where no label reached: on labs
    the model never saw, up to a fifth of the cells were called a class only
    the training lab holds (training/RESULTS.md), and calibration leaves the
    classes without labels as the base model answers them."""
    listed = ", ".join(f"{html.escape(c)} ({called[c]})" for c in kept if called.get(c))
    if not listed:
        return ""
    return ("<p><b>Check the classes the lab model leaves to the base model.</b> The lab model still calls some "
            f"of this folder's cells {listed}: for these classes it keeps the base model's answers. On labs the "
            "model never saw, up to a fifth of the cells were wrongly called a class like these. Review them; if "
            "your lab has such cells, label a few and calibrate again.</p>")


class CalibrationResultDialog(QDialog):
    def __init__(self, html_text: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Calibrated to this lab")
        layout = QVBoxLayout(self)
        text = QLabel(html_text)
        text.setWordWrap(True)
        # a wrapped label's size hint is taken at its own preferred width, not the one the dialog gives it,
        # so its last lines were cut off: fix the width, then ask for the height that width needs
        width = min(max(text.sizeHint().width(), 520), 640)
        text.setFixedWidth(width)
        text.setMinimumHeight(text.heightForWidth(width))
        layout.addWidget(text)
        buttons = QDialogButtonBox()
        buttons.addButton("Use the lab model for this folder and future ones", QDialogButtonBox.AcceptRole)
        buttons.addButton("Keep the base model", QDialogButtonBox.RejectRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


class CalibrationFlow(QObject):
    applied = Signal(str)  # the lab model's file, once it is in use

    def __init__(self, state: AppState, review: ReviewPage, run_job: Callable, message: Callable[[str, int], None],
                 tta: Callable[[], bool], parent_widget=None):
        super().__init__(parent_widget)
        self.state, self.review, self.run_job, self.message, self.tta = state, review, run_job, message, tta
        self.parent_widget = parent_widget
        self.last = None  # (calibration, predictions, before) of the latest run

    def propose(self) -> int:
        """Mark the cells to label and show them; returns how many."""
        session = self.state.session
        rows = propose_cells(session)
        session.calibration_set = [session.items[r].key for r in rows]
        if not rows:
            self.message("Every class already has its labelled cells: Lab ▸ Calibrate now.", 8000)
            return 0
        self.review.show_filter(FILTER_CALIBRATION)
        self.review.select_row(rows[0])
        self.review.grid.setFocus()
        self.message(f"Label these {len(rows)} cells (about {PER_CLASS} per class) with the usual keys: 1-9 a class, "
                     "0 not a WBC; then Lab ▸ Calibrate now.", 0)
        self.review.review_changed.emit()  # the proposal is saved with the session
        return len(rows)

    def labelled_classes(self) -> list[str]:
        """The class of every cell the technologist labelled, one entry per cell."""
        return [it.reviewed for it in self.state.session.items
                if it.error is None and it.reviewed not in (None, UNUSABLE)]

    def calibrate(self, method: str | None = None) -> bool:
        from ..engine.train.calibrate import DEFAULT_METHOD, MIN_PER_CLASS, set_aside_classes

        few, ready = set_aside_classes(self.labelled_classes())
        if len(ready) < 2:
            short = ", ".join(f"{c} ({n})" for c, n in few.items()) or "none yet"
            QMessageBox.information(self.parent_widget, "Label a few more cells",
                                    f"Calibration needs at least {MIN_PER_CLASS} labelled cells of each of two "
                                    f"classes or more. Too few: {short}. Lab ▸ Propose cells to label shows good "
                                    "ones to label.")
            return False
        clf, session, tta = self.state.classifier, self.state.session, self.tta()
        before = session.differential()

        def job(cancel, emit):
            from ..engine.train.calibrate import calibrate_session

            return calibrate_session(clf, session, method=method or DEFAULT_METHOD, tta=tta, progress=emit,
                                     cancel=cancel)

        worker = Worker(job)
        worker.yielded.connect(lambda p: self.message(p.message, 0))
        worker.returned.connect(lambda result: self._show(result, before))
        return self.run_job(worker, "calibrate", "Calibrating")

    def _show(self, result, before: dict) -> None:
        calibration, predictions = result
        self.last = (calibration, predictions, before)
        after_session = self._with_predictions(copy.deepcopy(self.state.session), predictions, calibration)
        after = after_session.differential()
        called = Counter(it.final_label for it in after_session.items if it.error is None)
        cal = calibration.card["calibration"]
        rows = "".join(f"<tr><td>{html.escape(c)}</td><td align='right'>{before['counts'][c]}</td>"
                       f"<td align='right'>{after['counts'][c]}</td></tr>" for c in before["counts"])
        text = (calibration_facts_html(cal)
                + "<p>How the count of this folder changes (reviewed cells keep your labels):</p>"
                "<table border='1' cellspacing='0' cellpadding='3'><tr><th>class</th><th>base model</th>"
                f"<th>lab model</th></tr>{rows}<tr><td><b>Total WBC</b></td><td align='right'>{before['total']}</td>"
                f"<td align='right'>{after['total']}</td></tr></table>"
                + kept_class_caution(cal["classes_kept_from_base"], called)
                + "<p>The base model stays in the model list, one click away.</p>")
        if CalibrationResultDialog(text, self.parent_widget).exec():
            self.use(calibration, predictions)
        else:
            self.message("Calibration not used: the base model stays active.", 8000)

    @staticmethod
    def _with_predictions(session, predictions, calibration):
        for pred in predictions:
            session.add(ReviewItem.from_prediction(pred))
        session.model_name = calibration.card["name"]
        return session

    def use(self, calibration, predictions) -> Path:
        """Save the lab model, make it the active one, and show this folder as it classifies it."""
        from ..engine.io.files import free_name
        from ..engine.models.modelfile import save_model
        from ..engine.models.registry import user_models_dir

        name = calibration.card["name"]
        stamp = calibration.card["created"][:16].replace(":", "").replace("T", " ")
        path = save_model(calibration.model, calibration.card, free_name(user_models_dir(), f"lab model {stamp}.keras"))
        for pred in predictions:
            self.state.cells.add_item(ReviewItem.from_prediction(pred))
        self.state.session.model_name = name
        self.state.models_changed.emit()
        self.state.load_model(path)
        self.review.refresh_counts()
        self.review.refresh_detail()
        self.review.show_notice(None)  # the note was about the base model on this folder
        self.review.review_changed.emit()
        self.message(f"Using the lab model {path.name}; the base model is one click away in the model list.", 15000)
        self.applied.emit(str(path))
        return path
