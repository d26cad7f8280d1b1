"""The application window: menus, toolbar, status bar, the two screens, and
the work that opens folders, classifies them and saves reviews.

Where things live: the cells, the active model and the running jobs in
:class:`~.app_state.AppState`; a cell's prediction and review on the
:class:`~.review_page.ReviewPage`; the count in ``count_panel``; model
files in ``model_actions``; exports in ``export_actions``."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QFileDialog, QInputDialog, QLabel, QMainWindow, QMessageBox, QProgressBar, QPushButton,
    QTabWidget, QToolBar, QWidget,
)

from .. import __version__, paths
from ..engine.review.differential import ReferralRules
from ..engine.review.session import ReviewItem, ReviewSession, autosave_path
from .action_states import BUSY, HAS_CELLS, HAS_SELECTION, HAS_SOURCES, IDLE, MODEL_READY, ActionStates
from .app_state import AppState
from .calibration_flow import CalibrationFlow
from .cell_model import THUMBNAIL_PX
from .classify_job import classification
from .export_actions import ExportActions
from .model_actions import ModelActions
from .review_page import ReviewPage
from .workers import GeneratorWorker, Worker, describe_error

MAX_RECENT = 8


class MainWindow(ModelActions, ExportActions, QMainWindow):
    model_ready = Signal()
    job_finished = Signal(str)  # the job's name, after the window has taken its results in

    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        self.settings = settings or QSettings("WBC Desktop", "WBC Desktop")
        self.setWindowTitle(f"{paths.APP_NAME} {__version__}")
        self.setAcceptDrops(True)
        self.state = AppState(self)
        self.review = ReviewPage(self.state, self.operator, self.referral_rules)
        self.review.review_changed.connect(self._schedule_autosave)
        self.review.calibrate_requested.connect(lambda: self.calibration.propose())
        self.review.message.connect(lambda text, ms: self.statusBar().showMessage(text, ms))
        self.action_states = ActionStates()
        self._pending_classify = False
        self._job_total = self._job_done = 0
        self._job_started = 0.0
        self._autosave_timer = QTimer(self, singleShot=True, interval=1500)
        self._autosave_timer.timeout.connect(self.autosave)
        self._build_ui()
        self._build_actions()
        self._restore_settings()
        self.state.flags_changed.connect(self._update_state)
        self.state.model_loading.connect(lambda path: self.model_status.setText(f"Model: loading {Path(path).name}…"))
        self.state.model_changed.connect(self._model_changed)
        self.state.model_failed.connect(self._model_failed)
        self.state.models_changed.connect(self.refresh_models)
        self.state.jobs.job_finished.connect(self._end_job)
        self.state.cells.rowsInserted.connect(lambda *_: self._schedule_autosave())
        self._update_state()

    @property
    def cells(self):
        return self.state.cells

    @property
    def classifier(self):
        return self.state.classifier

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        self.tabs = QTabWidget()
        self.tabs.addTab(self.review, "Classify && review")
        self.train_page = None  # built on first visit: it imports matplotlib's Qt canvas
        self.tabs.addTab(QWidget(), "Fine-tune && models")
        self.tabs.currentChanged.connect(lambda index: index == 1 and self.ensure_train_page())
        self.setCentralWidget(self.tabs)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(320)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_job)
        self.model_status = QLabel("Model: —")
        for w in (self.progress, self.cancel_button, self.model_status):
            self.statusBar().addPermanentWidget(w)

    def _build_actions(self) -> None:
        def action(text, slot, needs, shortcut=None, tip=None):
            a = QAction(text, self)
            a.triggered.connect(slot)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
            if tip:
                a.setStatusTip(tip)
            return self.action_states.add(a, *needs)

        self.act_open = action("Open folder…", self.choose_folder, [IDLE], "Ctrl+O", "Open a folder of cell images")
        self.act_open_files = action("Open images…", self.choose_files, [IDLE], "Ctrl+Shift+O")
        self.act_classify = action("Classify", self.start_classification, [IDLE, HAS_SOURCES, MODEL_READY], "F5",
                                   "Classify (again) with the active model")
        self.act_cancel = action("Cancel", self.cancel_job, [BUSY], "Esc")
        self.act_save_session = action("Save session as…", self.save_session_as, [IDLE, HAS_CELLS], "Ctrl+S")
        self.act_open_session = action("Open session…", self.open_session, [IDLE])
        self.act_csv = action("Export CSV…", self.export_csv, [IDLE, HAS_CELLS], "Ctrl+E")
        self.act_pdf = action("Export PDF report…", self.export_pdf, [IDLE, HAS_CELLS], "Ctrl+P")
        self.act_sort = action("Sort into class folders…", self.sort_into_folders, [IDLE, HAS_CELLS])
        self.act_undo_sort = action("Undo a move from its manifest…", self.undo_sort, [IDLE])
        self.act_open_model = action("Open model file…", self.choose_model_file, [])
        self.act_card = action("Model card…", self.show_model_card, [MODEL_READY])
        self.act_about = action("About WBC Desktop", self.show_about, [])
        self.act_quit = action("Quit", self.close, [], "Ctrl+Q")
        self.act_next = action("Next flagged cell", self.review.goto_next_flagged, [HAS_CELLS], "N")
        self.act_accept = action("Accept the prediction", self.review.accept_current, [HAS_SELECTION])
        self.act_operator = action("Operator…", self.change_operator, [],
                                   tip="The name recorded with every review change")
        self.calibration = CalibrationFlow(self.state, self.review, self.run_job,
                                           lambda text, ms: self.statusBar().showMessage(text, ms),
                                           self.tta_box_checked, self)
        self.act_propose = action("Propose cells to label…", self.calibration.propose, [IDLE, HAS_CELLS, MODEL_READY],
                                  tip="About 5 cells per class, chosen where the model is unsure, to label for "
                                      "calibration")
        self.act_calibrate = action("Calibrate now", lambda: self.calibration.calibrate(),
                                    [IDLE, HAS_CELLS, MODEL_READY],
                                    tip="Adapt the model to this lab from the cells you labelled (3+ per class)")

        menu = self.menuBar().addMenu("&File")
        for a in (self.act_open, self.act_open_files):
            menu.addAction(a)
        self.recent_menu = menu.addMenu("Recent folders")
        menu.addSeparator()
        for a in (self.act_open_session, self.act_save_session):
            menu.addAction(a)
        menu.addSeparator()
        for a in (self.act_csv, self.act_pdf, self.act_sort, self.act_undo_sort):
            menu.addAction(a)
        menu.addSeparator()
        menu.addAction(self.act_quit)
        menu = self.menuBar().addMenu("&Classify")
        for a in (self.act_classify, self.act_cancel):
            menu.addAction(a)
        self._add_mode_menu(menu.addMenu("Images are"), action)
        self.act_self_training = action(
            "Learn an unfamiliar folder's look", lambda on: self.settings.setValue("classify/self_training", on),
            [IDLE], tip="On a folder of 100+ cells unlike the training data, the cells the model is 80 %+ sure of "
                        "teach it the folder's look, and it answers the folder again (decided once it is classified)")
        self.act_self_training.setCheckable(True)
        self.act_self_training.setChecked(self.settings.value("classify/self_training", "true") in (True, "true"))
        menu.addAction(self.act_self_training)
        menu = self.menuBar().addMenu("&Review")
        for a in (self.act_next, self.act_accept, self.act_operator):
            menu.addAction(a)
        menu = self.menuBar().addMenu("&Lab")
        for a in (self.act_propose, self.act_calibrate):
            menu.addAction(a)
        menu = self.menuBar().addMenu("&Model")
        for a in (self.act_open_model, self.act_card):
            menu.addAction(a)
        self.menuBar().addMenu("&Help").addAction(self.act_about)

        bar = QToolBar("Main")
        bar.setObjectName("main_toolbar")
        bar.setMovable(False)
        self.addToolBar(bar)
        bar.addAction(self.act_open)
        bar.addAction(self.act_classify)
        bar.addSeparator()
        bar.addWidget(QLabel(" Model "))
        self.model_combo = QComboBox()
        self.model_combo.setMinimumWidth(240)
        self.model_combo.activated.connect(self._model_chosen)
        bar.addWidget(self.model_combo)
        self.adapt_box = QCheckBox("Adapt to stain")
        self.adapt_box.setToolTip("Before classifying, re-estimate the model's normalisation statistics on this folder's "
                                  "cells (no labels needed; 32+ cells). It can help on a lab far from the training "
                                  "data, but the statistics also follow the folder's mix of cell types: on single "
                                  "patients' folders it lowered accuracy on most labs measured. Check reviewed cells.")
        bar.addWidget(self.adapt_box)
        self.tta_box = QCheckBox("Average 4 views")
        self.tta_box.setToolTip("Set to the model's own default when a model has loaded")
        bar.addWidget(self.tta_box)
        bar.addSeparator()
        bar.addWidget(QLabel(" Flag below "))
        for w in (self.review.threshold, self.review.threshold_label):
            bar.addWidget(w)
        bar.addSeparator()
        for w in (self.review.filter_combo, self.review.sort_combo, self.review.view_combo):
            bar.addWidget(w)

    def tta_box_checked(self) -> bool:
        return self.tta_box.isChecked()

    def ensure_train_page(self):
        if self.train_page is None:
            from .train_page import TrainPage

            self.train_page = TrainPage(self.state)
            self.tabs.blockSignals(True)
            self.tabs.removeTab(1)
            self.tabs.insertTab(1, self.train_page, "Fine-tune && models")
            self.tabs.setCurrentIndex(1)
            self.tabs.blockSignals(False)
        return self.train_page

    def _update_state(self) -> None:
        flags = self.state.flags()
        if self.review.current_row() is not None:
            flags.add(HAS_SELECTION)
        self.action_states.update(flags)
        self.review.show_current_view()

    # ------------------------------------------------------------ settings
    def _restore_settings(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:  # first start: a roomy window, but never larger than the screen
            free = self.screen().availableGeometry()
            self.resize(min(1360, free.width()), min(860, free.height() - 40))  # 40: the title bar
        state = self.settings.value("window/splitter")
        if state is not None:
            self.review.splitter.restoreState(state)
        self.review.threshold.setValue(int(self.settings.value("review/threshold", 70)))
        self.review.view_combo.setCurrentIndex(int(self.settings.value("view/mode", 0)))
        self.adapt_box.setChecked(self.settings.value("classify/adapt", "false") in (True, "true"))
        self._rebuild_recent_menu()

    def _save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/splitter", self.review.splitter.saveState())
        self.settings.setValue("review/threshold", self.review.threshold.value())
        self.settings.setValue("view/mode", self.review.view_combo.currentIndex())
        self.settings.setValue("classify/adapt", self.adapt_box.isChecked())
        if self.state.model_path:
            self.settings.setValue("model/path", str(self.state.model_path))
        self.settings.sync()

    def operator(self) -> str | None:
        """The reviewer's name, asked for once and then kept in the settings."""
        name = str(self.settings.value("review/operator", "") or "").strip()
        return name or self.change_operator()

    def change_operator(self) -> str | None:
        current = str(self.settings.value("review/operator", "") or "")
        name, ok = QInputDialog.getText(self, "Operator", "Your name or initials, recorded with every review change:",
                                        text=current)
        if not ok or not name.strip():
            return None
        self.settings.setValue("review/operator", name.strip())
        return name.strip()

    def referral_rules(self) -> ReferralRules:
        """When a count needs a haematologist: ``review/refer_on`` (classes)
        and ``review/max_unusable_percent`` in the settings."""
        default = ReferralRules()
        refer_on = self.settings.value("review/refer_on", list(default.refer_on_any))
        refer_on = [refer_on] if isinstance(refer_on, str) else list(refer_on or [])
        limit = float(self.settings.value("review/max_unusable_percent", default.max_unusable_percent))
        return ReferralRules(tuple(refer_on), limit)

    def recent_folders(self) -> list[str]:
        value = self.settings.value("recent/folders", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _remember_folder(self, folder: str) -> None:
        recent = [folder] + [f for f in self.recent_folders() if f != folder]
        self.settings.setValue("recent/folders", recent[:MAX_RECENT])
        self._rebuild_recent_menu()

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        for folder in self.recent_folders():
            self.recent_menu.addAction(folder, lambda f=folder: self.open_paths([f]))
        self.recent_menu.setEnabled(bool(self.recent_folders()))

    # ----------------------------------------------------------- open work
    def choose_folder(self) -> None:
        start = (self.recent_folders() or [""])[0]
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of cell images", start)
        if folder:
            self.open_paths([folder])

    def choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open cell images", "",
                                                "Images (*.jpg *.jpeg *.png *.bmp *.tif *.tiff *.gif *.webp);;All files (*)")
        if files:
            self.open_paths(files)

    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event):
        local = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if local:
            self.open_paths(local)

    def _refuse_while_busy(self) -> bool:
        if self.state.jobs.busy:
            QMessageBox.information(self, "Busy", "Wait for the running job to finish, or cancel it first.")
            return True
        return False

    def open_paths(self, sources: list[str]) -> None:
        """Open a folder or files: restore its autosaved review if there is
        one, else classify it."""
        if self._refuse_while_busy():
            return
        self.autosave()
        sources = [str(Path(s).resolve()) for s in sources]
        if len(sources) == 1 and Path(sources[0]).is_dir():
            self._remember_folder(sources[0])
        saved = autosave_path(sources)
        session = None
        if saved.exists():
            try:
                session = ReviewSession.load(saved)
            except ValueError as exc:
                self.statusBar().showMessage(str(exc), 8000)
        if session is not None:
            self._show_session(session, sources)
            self.statusBar().showMessage(f"Restored the saved review of {', '.join(sources)} "
                                         f"({len(session.items)} cells)", 8000)
        else:
            classes = self.classifier.classes if self.classifier else []
            self.state.set_session(ReviewSession(sources, classes, threshold=self.review.threshold.value() / 100),
                                   sources)
            self.start_classification()
        self.setWindowTitle(f"{paths.APP_NAME} — {', '.join(Path(s).name for s in sources)}")

    def _show_session(self, session: ReviewSession, sources: list[str]) -> None:
        self.state.set_session(session, sources)
        if session.classes and self.classifier and session.classes != self.classifier.classes:
            self.statusBar().showMessage("This review was made with a model of other classes; "
                                         "classify again to use the active model.", 10000)
        self._load_thumbnails()

    def _load_thumbnails(self) -> None:
        from ..engine.infer.cells import views_of
        from ..engine.io.imageio import ImageReadError

        by_file: dict[str, list] = {}
        for it in self.state.session.items:
            if it.error is None:
                by_file.setdefault(it.path, []).append(it)

        def job(cancel):
            for path, items in by_file.items():
                if cancel.cancelled:
                    return
                try:
                    views = views_of(path, THUMBNAIL_PX, "as_is", [it.field_box for it in items])
                except ImageReadError:
                    continue
                for it, view in zip(items, views):
                    yield it.key, view

        worker = GeneratorWorker(job)
        worker.yielded.connect(lambda pair: self.state.cells.set_thumbnail(*pair))
        self.state.jobs.start(worker, "thumbnails", exclusive=False)

    def _add_mode_menu(self, menu, action) -> None:
        """How images are taken (``engine.infer.cells``), kept in the settings."""
        group = QActionGroup(self)
        self.mode_actions = {}
        for mode, text, tip in (
                ("auto", "Told apart per image (automatic)", "An image of at most 400 px, or with one white cell in "
                                                             "its middle, is a crop; anything else a field photo"),
                ("cells", "Single-cell crops", "Each image is one cell"),
                ("fields", "Field photos", "Find and classify every white cell in each image")):
            a = action(text, lambda _=False, m=mode: self.settings.setValue("classify/mode", m), [IDLE], tip=tip)
            a.setCheckable(True)
            group.addAction(a)
            menu.addAction(a)
            self.mode_actions[mode] = a
        current = str(self.settings.value("classify/mode", "auto"))
        self.mode_actions.get(current, self.mode_actions["auto"]).setChecked(True)

    def image_mode(self) -> str:
        return next(m for m, a in self.mode_actions.items() if a.isChecked())

    # ------------------------------------------------------------ classify
    def start_classification(self) -> None:
        if not self.state.sources or self.state.jobs.busy:
            return
        clf = self.classifier
        if clf is None:
            self._pending_classify = True
            self.statusBar().showMessage("Classification starts as soon as the model is loaded…")
            return
        adapt, tta = self.adapt_box.isChecked(), self.tta_box.isChecked()
        session = self.state.session
        if session.classes != clf.classes:
            session = ReviewSession(list(self.state.sources), clf.classes, threshold=session.threshold)
            self.state.set_session(session, self.state.sources)
        session.mode = self.image_mode()
        worker = GeneratorWorker(classification(clf, list(self.state.sources), adapt=adapt, tta=tta, mode=session.mode,
                                                self_training=self.act_self_training.isChecked()))
        worker.yielded.connect(lambda chunk: self._on_classified(session, chunk))
        self.run_job(worker, "classify", "Classifying")

    def _on_classified(self, session: ReviewSession, chunk) -> None:
        """Results of a classification job, for the session it was started
        on: a session opened since cannot receive them (and the app refuses
        to open one while a job runs)."""
        if session is not self.state.session:
            return
        if isinstance(chunk, dict) and "notice" in chunk:  # the job's last word: is the folder unlike training?
            self._relabel(session, chunk["revised"], chunk["caution"])
            if chunk["notice"]:
                self.review.show_notice(chunk["notice"])
            return
        if isinstance(chunk, dict):  # the job's header: file count and the model actually used
            self._job_total = chunk["total"]
            self.progress.setRange(0, max(chunk["total"], 1))
            session.model_name, session.model_version = chunk["model_name"], chunk["model_version"]
            return
        for item in chunk:
            self.state.cells.add_item(ReviewItem.from_prediction(item), item.pixels)
        self._job_done += sum(1 for p in chunk if p.cell is None or p.cell.index == 0)  # files: a photo has many cells
        self._show_progress("Classifying")

    def _relabel(self, session: ReviewSession, revised: list, caution: str | None) -> None:
        """The folder's verdict re-weighed its cells (``folder_check``: some
        labels, or every confidence); the technologist's review of them
        stays, and the session's model name records how the labels were made."""
        if caution:
            session.model_name = f"{session.model_name}; {caution}"
        for pred in revised:
            self.state.cells.add_item(ReviewItem.from_prediction(pred))
        if revised:
            self.review.refresh_counts()
            self.review.refresh_detail()
            self.review.review_changed.emit()

    # ---------------------------------------------------------------- jobs
    def run_job(self, worker: Worker, name: str, verb: str) -> bool:
        """``worker`` as the app's exclusive job, with the status bar's progress and Cancel."""
        if not self.state.jobs.start(worker, name):
            return False
        self._job_total, self._job_done, self._job_started = 0, 0, time.monotonic()
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.cancel_button.setEnabled(True)
        self.statusBar().showMessage(f"{verb}…")
        worker.errored.connect(lambda exc: QMessageBox.warning(self, f"{verb} failed", describe_error(exc)))
        return True

    def _show_progress(self, verb: str) -> None:
        done, total = self._job_done, self._job_total
        self.progress.setValue(done)
        elapsed = time.monotonic() - self._job_started
        eta = ""
        if 0 < done < total:
            eta = f", about {max(1, round(elapsed / done * (total - done)))} s left"
        self.progress.setFormat(f"{done}/{total}")
        self.statusBar().showMessage(f"{verb} {done} of {total}{eta}")

    def cancel_job(self) -> None:
        if self.state.jobs.cancel_current():
            self.cancel_button.setEnabled(False)
            self.statusBar().showMessage("Cancelling… (results so far are kept)")

    def _end_job(self, name: str, worker: Worker) -> None:
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        if name == "classify":  # file jobs and the training screen report their own
            message = f"Classified {self._job_done} of {self._job_total} files"
            self.statusBar().showMessage(message + (" — cancelled" if worker.is_aborted else ""), 10000)
        self.review.refresh_counts()
        self.autosave()
        self.job_finished.emit(name)

    # ---------------------------------------------------------- persistence
    def _schedule_autosave(self) -> None:
        self._autosave_timer.start()

    def autosave(self) -> None:
        self._autosave_timer.stop()
        if self.state.sources and self.state.session.items:
            self.state.session.save(autosave_path(self.state.sources))

    def save_session_as(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save review session", "review.wbcsession.json", "Review sessions (*.json)")
        if path:
            self.state.session.save(path)
            self.statusBar().showMessage(f"Saved {path}", 5000)

    def open_session(self, path: str | None = None) -> None:
        if self._refuse_while_busy():
            return
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Open review session", "", "Review sessions (*.json)")
            if not path:
                return
        try:
            session = ReviewSession.load(path)
        except ValueError as exc:
            QMessageBox.warning(self, "Not opened", str(exc))
            return
        self.autosave()
        self._show_session(session, session.sources)

    # --------------------------------------------------------------- close
    def shutdown(self) -> None:
        self.state.jobs.stop_all()
        self.autosave()
        self._save_settings()

    def closeEvent(self, event):
        self.shutdown()
        super().closeEvent(event)
