"""The classification and review screen a technologist uses all day."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QFileDialog, QLabel, QListView, QMainWindow, QMessageBox,
    QProgressBar, QPushButton, QSlider, QSplitter, QStackedWidget, QTableView, QTabWidget, QToolBar, QVBoxLayout,
    QWidget,
)

from .. import __version__, paths
from ..engine.dataset import collect_images
from ..engine.review import UNUSABLE, ReviewItem, ReviewSession, autosave_path
from .cell_model import (
    FILTER_ALL, FILTER_ERRORS, FILTER_FLAGGED, FILTER_REVIEWED, FILTER_UNREVIEWED, ITEM_ROLE, CellFilterProxy,
    CellTableModel, GridLabelModel,
)
from .count_panel import CountPanel
from .detail_panel import DetailPanel
from .export_actions import ExportActions
from .model_actions import ModelActions
from .workers import GeneratorWorker, Worker

MAX_RECENT = 8


class MainWindow(ModelActions, ExportActions, QMainWindow):
    model_ready = Signal()
    job_finished = Signal(str)  # the job's name

    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        self.settings = settings or QSettings("WBC Desktop", "WBC Desktop")
        self.setWindowTitle(f"{paths.APP_NAME} {__version__}")
        self.setAcceptDrops(True)
        self.classifier = None
        self.model_path: Path | None = None
        self.sources: list[str] = []
        self.workers: set[Worker] = set()
        self.job: Worker | None = None
        self._pending_classify = False
        self._last_manifest: str | None = None
        self._job_total = 0
        self._job_done = 0
        self._job_started = 0.0
        self.cells = CellTableModel()
        self.proxy = CellFilterProxy(self)
        self.proxy.setSourceModel(self.cells)
        self.grid_model = GridLabelModel(self)
        self.grid_model.setSourceModel(self.proxy)
        self._autosave_timer = QTimer(self, singleShot=True, interval=1500)
        self._autosave_timer.timeout.connect(self.autosave)
        self._counts_timer = QTimer(self, singleShot=True, interval=400)  # the chart redraws at most this often
        self._counts_timer.timeout.connect(self._refresh_counts)
        self._build_ui()
        self._build_actions()
        self._restore_settings()
        self._update_state()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        self.grid = QListView()
        self.grid.setViewMode(QListView.IconMode)
        self.grid.setIconSize(QSize(96, 96))
        self._fit_grid_to([])
        self.grid.setResizeMode(QListView.Adjust)
        self.grid.setMovement(QListView.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setWordWrap(True)
        self.grid.setSelectionMode(QAbstractItemView.SingleSelection)
        self.grid.setModel(self.grid_model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.AscendingOrder)
        self.proxy.sort(-1)  # file order until the user asks for another
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setDefaultSectionSize(28)
        self.table.setColumnWidth(0, 260)
        self.views = QStackedWidget()
        self.views.addWidget(self.grid)
        self.views.addWidget(self.table)
        self.empty_hint = QLabel(
            "<h2>No cells yet</h2><p>Open a folder of single-cell images (File ▸ Open folder…, Ctrl+O)<br>"
            "or drop a folder or images here. Sub-folders are included.</p>")
        self.empty_hint.setAlignment(Qt.AlignCenter)
        self.views.addWidget(self.empty_hint)
        self.grid.selectionModel().currentChanged.connect(lambda cur, _: self._on_current(cur, self.grid_model))
        self.table.selectionModel().currentChanged.connect(lambda cur, _: self._on_current(cur, self.proxy))

        self.detail = DetailPanel()
        self.detail.review_requested.connect(self.review_current)
        self.detail.accept_requested.connect(self.accept_current)
        self.detail.note_changed.connect(self._set_note)
        self.detail.next_flagged_requested.connect(self.goto_next_flagged)
        self.counts = CountPanel()
        right = QSplitter(Qt.Vertical)
        right.addWidget(self.detail)
        right.addWidget(self.counts)
        right.setSizes([600, 260])
        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.addWidget(self.views)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)

        self.review_page = QWidget()
        page = QVBoxLayout(self.review_page)
        page.setContentsMargins(4, 4, 4, 4)
        page.addWidget(self.splitter)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.review_page, "Classify && review")
        self.train_page = None  # built on first visit: it imports matplotlib's Qt canvas
        self.train_placeholder = QWidget()
        self.tabs.addTab(self.train_placeholder, "Fine-tune && models")
        self.tabs.currentChanged.connect(self._tab_changed)
        self.setCentralWidget(self.tabs)

        self.progress = QProgressBar()
        self.progress.setMaximumWidth(320)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_job)
        self.model_status = QLabel("Model: —")
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.cancel_button)
        self.statusBar().addPermanentWidget(self.model_status)

    def _build_actions(self) -> None:
        def action(text, slot, shortcut=None, tip=None):
            a = QAction(text, self)
            a.triggered.connect(slot)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
            if tip:
                a.setStatusTip(tip)
            return a

        self.act_open = action("Open folder…", self.choose_folder, "Ctrl+O", "Open a folder of cell images")
        self.act_open_files = action("Open images…", self.choose_files, "Ctrl+Shift+O")
        self.act_classify = action("Classify", self.start_classification, "F5", "Classify (again) with the active model")
        self.act_cancel = action("Cancel", self.cancel_job, "Esc")
        self.act_save_session = action("Save session as…", self.save_session_as, "Ctrl+S")
        self.act_open_session = action("Open session…", self.open_session)
        self.act_csv = action("Export CSV…", self.export_csv, "Ctrl+E")
        self.act_pdf = action("Export PDF report…", self.export_pdf, "Ctrl+P")
        self.act_sort = action("Sort into class folders…", self.sort_into_folders)
        self.act_undo_sort = action("Undo a move from its manifest…", self.undo_sort)
        self.act_open_model = action("Open model file…", self.choose_model_file)
        self.act_card = action("Model card…", self.show_model_card)
        self.act_about = action("About WBC Desktop", self.show_about)
        self.act_quit = action("Quit", self.close, "Ctrl+Q")
        self.act_next = action("Next flagged cell", self.goto_next_flagged, "N")

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
        for a in (self.act_classify, self.act_cancel, self.act_next):
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
                                  "cells (no labels needed). Helps on another lab's stain and camera; needs 32+ cells.")
        bar.addWidget(self.adapt_box)
        self.tta_box = QCheckBox("Average 4 views")
        self.tta_box.setToolTip("Classify each cell as is, mirrored two ways and turned, and average the four: more "
                                "accurate on every lab measured (training/RESULTS.md), at 4x the computing time.")
        bar.addWidget(self.tta_box)
        bar.addSeparator()
        bar.addWidget(QLabel(" Flag below "))
        self.threshold = QSlider(Qt.Horizontal)
        self.threshold.setRange(30, 99)
        self.threshold.setFixedWidth(120)
        self.threshold.valueChanged.connect(self._threshold_changed)
        self.threshold_label = QLabel()
        bar.addWidget(self.threshold)
        bar.addWidget(self.threshold_label)
        bar.addSeparator()
        self.filter_combo = QComboBox()
        self.filter_combo.activated.connect(self._filter_changed)
        bar.addWidget(self.filter_combo)
        self.sort_combo = QComboBox()
        self.sort_combo.addItems(["File order", "Confidence ↑ (least sure first)", "Confidence ↓"])
        self.sort_combo.activated.connect(self._sort_changed)
        bar.addWidget(self.sort_combo)
        self.view_combo = QComboBox()
        self.view_combo.addItems(["Grid", "Table"])
        self.view_combo.activated.connect(self._view_changed)
        bar.addWidget(self.view_combo)
        self._fill_filter_combo([])

        # review keys act on the cell views only, so typing a note never reviews a cell
        for view in (self.grid, self.table):
            for key in range(1, 10):
                QShortcut(QKeySequence(str(key)), view, activated=lambda k=key: self._review_by_number(k),
                          context=Qt.WidgetShortcut)
            QShortcut(QKeySequence("0"), view, activated=lambda: self.review_current(UNUSABLE), context=Qt.WidgetShortcut)
            for key in ("Return", "Enter", "A"):
                QShortcut(QKeySequence(key), view, activated=self.accept_current, context=Qt.WidgetShortcut)
            QShortcut(QKeySequence("Backspace"), view, activated=lambda: self.review_current(None), context=Qt.WidgetShortcut)

    def _fit_grid_to(self, classes: list[str]) -> None:
        """Grid cells as wide as the longest line a cell can show, so no
        label is cut to "lymphocyte ..." (a lab's own classes can be longer)."""
        lines = [f"{c} 100%" for c in classes] + ["✔ unusable", "⚠ unreadable"]
        width = max(130, max(self.grid.fontMetrics().horizontalAdvance(t) for t in lines) + 20)
        self.grid_model.item_size = QSize(width - 8, 126)
        self.grid.setGridSize(QSize(width, 134))

    def _fill_filter_combo(self, classes: list[str]) -> None:
        self.filter_combo.clear()
        for text, data in (("All cells", (FILTER_ALL, None)), ("Needs review (flagged)", (FILTER_FLAGGED, None)),
                           ("Reviewed", (FILTER_REVIEWED, None)), ("Unreviewed", (FILTER_UNREVIEWED, None)),
                           ("Unreadable files", (FILTER_ERRORS, None))):
            self.filter_combo.addItem(text, data)
        for c in classes:
            self.filter_combo.addItem(f"Class: {c}", (FILTER_ALL, c))
        self.filter_combo.addItem("Class: unusable", (FILTER_ALL, UNUSABLE))

    def _tab_changed(self, index: int) -> None:
        if index == 1:
            self.ensure_train_page()

    def ensure_train_page(self):
        if self.train_page is None:
            from .train_page import TrainPage

            self.train_page = TrainPage(self)
            self.tabs.blockSignals(True)
            self.tabs.removeTab(1)
            self.tabs.insertTab(1, self.train_page, "Fine-tune && models")
            self.tabs.setCurrentIndex(1)
            self.tabs.blockSignals(False)
        return self.train_page

    # ------------------------------------------------------------ settings
    def _restore_settings(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1360, 860)
        state = self.settings.value("window/splitter")
        if state is not None:
            self.splitter.restoreState(state)
        self.threshold.setValue(int(self.settings.value("review/threshold", 70)))
        self.view_combo.setCurrentIndex(int(self.settings.value("view/mode", 0)))
        self.adapt_box.setChecked(self.settings.value("classify/adapt", "false") in (True, "true"))
        self.tta_box.setChecked(self.settings.value("classify/tta", "true") in (True, "true"))
        self._rebuild_recent_menu()

    def _save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/splitter", self.splitter.saveState())
        self.settings.setValue("review/threshold", self.threshold.value())
        self.settings.setValue("view/mode", self.view_combo.currentIndex())
        self.settings.setValue("classify/adapt", self.adapt_box.isChecked())
        self.settings.setValue("classify/tta", self.tta_box.isChecked())
        if self.model_path:
            self.settings.setValue("model/path", str(self.model_path))
        self.settings.sync()

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

    def open_paths(self, sources: list[str]) -> None:
        """Open a folder or files: restore its autosaved review if there is
        one, else classify it."""
        if self.job is not None:
            QMessageBox.information(self, "Busy", "Wait for the running job to finish, or cancel it first.")
            return
        self.autosave()
        self.sources = [str(Path(s).resolve()) for s in sources]
        if len(self.sources) == 1 and Path(self.sources[0]).is_dir():
            self._remember_folder(self.sources[0])
        saved = autosave_path(self.sources)
        session = None
        if saved.exists():
            try:
                session = ReviewSession.load(saved)
            except ValueError as exc:
                self.statusBar().showMessage(str(exc), 8000)
        if session is not None:
            self._set_session(session)
            self.statusBar().showMessage(f"Restored the saved review of {', '.join(self.sources)} "
                                         f"({len(session.items)} cells)", 8000)
            self._load_thumbnails()
        else:
            classes = self.classifier.classes if self.classifier else []
            self._set_session(ReviewSession(self.sources, classes, threshold=self.threshold.value() / 100))
            self.start_classification()
        self.setWindowTitle(f"{paths.APP_NAME} — {', '.join(Path(s).name for s in self.sources)}")

    def _set_session(self, session: ReviewSession) -> None:
        session.threshold = self.threshold.value() / 100
        self.cells.set_session(session)
        if session.classes and self.classifier and session.classes != self.classifier.classes:
            self.statusBar().showMessage("This review was made with a model of other classes; "
                                         "classify again to use the active model.", 10000)
        self.detail.set_item(None, None)
        self._refresh_counts()
        self._update_state()

    def _load_thumbnails(self) -> None:
        from ..engine.preprocess import load_square
        from ..engine.imageio import ImageReadError

        items = [it.path for it in self.cells.session.items if it.error is None]

        def job(cancel):
            for p in items:
                if cancel.cancelled:
                    return
                try:
                    yield p, load_square(p, 96)
                except ImageReadError:
                    continue

        worker = GeneratorWorker(job)
        worker.yielded.connect(lambda pair: self.cells.set_thumbnail(*pair))
        self._start_worker(worker)

    # ------------------------------------------------------------ classify
    def start_classification(self) -> None:
        if not self.sources:
            return
        if self.classifier is None:
            self._pending_classify = True
            self.statusBar().showMessage("Classification starts as soon as the model is loaded…")
            return
        if self.job is not None:
            return
        from ..engine.classify import Prediction

        clf = self.classifier
        adapt, tta = self.adapt_box.isChecked(), self.tta_box.isChecked()
        sources = list(self.sources)
        session = self.cells.session
        if session.classes != clf.classes:
            kept = ReviewSession(sources, clf.classes, threshold=session.threshold)
            self._set_session(kept)
        session = self.cells.session
        session.model_name = clf.name + (" (adapted to this folder)" if adapt else "")
        session.model_version = str(clf.card.get("engine_version", ""))

        def job(cancel):
            files, skipped = collect_images(sources)
            yield len(files) + len(skipped)
            model = clf.adapted_to(files) if adapt else clf
            chunk = [Prediction(s.path, error=s.reason) for s in skipped]
            last = time.monotonic()
            # results travel in chunks: one GUI update per chunk keeps the event loop free
            for pred in model.classify_files(files, batch_size=32, tta=tta, cancel=cancel, keep_pixels=True):
                chunk.append(pred)
                if len(chunk) >= 64 or time.monotonic() - last > 0.25:
                    yield chunk
                    chunk, last = [], time.monotonic()
            if chunk:
                yield chunk

        worker = GeneratorWorker(job)
        worker.yielded.connect(self._on_classified)
        self._begin_job(worker, "classify", "Classifying")

    def _on_classified(self, chunk) -> None:
        if isinstance(chunk, int):
            self._job_total = chunk
            self.progress.setRange(0, max(chunk, 1))
            return
        for item in chunk:
            probs = None if item.probs is None else [float(v) for v in item.probs]
            self.cells.add_item(ReviewItem(item.path, item.label, float(item.confidence), probs, item.error), item.pixels)
        self._job_done += len(chunk)
        self._show_progress("Classifying")
        if not self._counts_timer.isActive():  # throttle, not debounce: the count moves while results arrive
            self._counts_timer.start()
        if self.views.currentWidget() is self.empty_hint:
            self._update_state()
        self._schedule_autosave()

    # ---------------------------------------------------------------- jobs
    def _start_worker(self, worker: Worker) -> None:
        self.workers.add(worker)
        worker.finished.connect(lambda: self.workers.discard(worker))
        worker.start()

    def _begin_job(self, worker: Worker, name: str, verb: str) -> None:
        self.job = worker
        self._job_total, self._job_done, self._job_started = 0, 0, time.monotonic()
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.cancel_button.setEnabled(True)
        self.statusBar().showMessage(f"{verb}…")
        worker.errored.connect(lambda msg: QMessageBox.warning(self, f"{verb} failed", msg))
        worker.finished.connect(lambda: self._end_job(worker, name))
        self._start_worker(worker)
        self._update_state()

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
        if self.job is not None:
            self.job.abort()
            self.cancel_button.setEnabled(False)
            self.statusBar().showMessage("Cancelling… (results so far are kept)")

    def _end_job(self, worker: Worker, name: str) -> None:
        if worker is not self.job:
            return
        self.job = None
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        done = self._job_done
        message = {"classify": f"Classified {done} of {self._job_total} files",
                   "sort": f"Filed {done} of {self._job_total} images",
                   "undo": f"Undo finished ({done} entries)"}.get(name, "Done")
        if worker.aborted:
            message += " — cancelled"
        self.statusBar().showMessage(message, 10000)
        self._refresh_counts()
        self.autosave()
        self._update_state()
        self.job_finished.emit(name)

    # -------------------------------------------------------------- review
    def _on_current(self, index, model) -> None:
        item = model.data(index, ITEM_ROLE) if index.isValid() else None
        self.detail.set_item(item, self.cells.session.model_name, self.cells.thumbnails.get(item.path) if item else None)

    def current_row(self) -> int | None:
        view = self.views.currentWidget()
        if view not in (self.grid, self.table):
            return None
        index = view.currentIndex()
        if not index.isValid():
            return None
        item = index.data(ITEM_ROLE)
        return self.cells.session.index_of(item.path)

    def select_row(self, row: int) -> None:
        source = self.cells.index(row, 0)
        proxy_index = self.proxy.mapFromSource(source)
        if not proxy_index.isValid():  # filtered out: show everything again
            self.filter_combo.setCurrentIndex(0)
            self._filter_changed(0)
            proxy_index = self.proxy.mapFromSource(source)
        if self.views.currentWidget() is self.grid:
            index = self.grid_model.mapFromSource(proxy_index)
            self.grid.setCurrentIndex(index)
            self.grid.scrollTo(index)
        else:
            self.table.setCurrentIndex(proxy_index)
            self.table.selectionModel().select(proxy_index, QItemSelectionModel.ClearAndSelect | QItemSelectionModel.Rows)
            self.table.scrollTo(proxy_index)

    def _review_by_number(self, number: int) -> None:
        classes = self.cells.session.classes
        if number <= len(classes):
            self.review_current(classes[number - 1])

    def review_current(self, label) -> None:
        row = self.current_row()
        if row is None or self.cells.session.items[row].error:
            return
        self.cells.session.set_review(row, label)
        self._after_review(row)

    def accept_current(self) -> None:
        row = self.current_row()
        if row is not None and self.cells.session.items[row].label:
            self.review_current(self.cells.session.items[row].label)

    def _set_note(self, text: str) -> None:
        row = self.current_row()
        if row is not None and self.cells.session.items[row].note != text:
            self.cells.session.items[row].note = text
            self.cells.row_changed(row)
            self._schedule_autosave()

    def _after_review(self, row: int) -> None:
        self.cells.row_changed(row)
        item = self.cells.session.items[row]
        self.detail.set_item(item, self.cells.session.model_name, self.cells.thumbnails.get(item.path))
        self._refresh_counts()
        self._schedule_autosave()

    def _view_order(self) -> list[int]:
        return [self.proxy.mapToSource(self.proxy.index(r, 0)).row() for r in range(self.proxy.rowCount())]

    def goto_next_flagged(self) -> None:
        current = self.current_row()
        order = self._view_order()
        nxt = self.cells.session.next_flagged(current if current is not None else -1, order)
        if nxt is None:
            self.statusBar().showMessage("No flagged cells left to review.", 5000)
        else:
            self.select_row(nxt)
            (self.grid if self.views.currentWidget() is self.grid else self.table).setFocus()

    # ---------------------------------------------------- toolbar handlers
    def _threshold_changed(self, value: int) -> None:
        self.threshold_label.setText(f"{value}% ")
        self.cells.session.threshold = value / 100
        self.cells.all_changed()
        self.proxy.invalidateFilter()
        self._refresh_counts()

    def _filter_changed(self, index: int) -> None:
        mode, cls = self.filter_combo.itemData(index) or (FILTER_ALL, None)
        self.proxy.set_filter(mode, cls)

    def _sort_changed(self, index: int) -> None:
        column = -1 if index == 0 else 2
        order = Qt.DescendingOrder if index == 2 else Qt.AscendingOrder
        self.table.horizontalHeader().setSortIndicator(column, order)
        self.proxy.sort(column, order)

    def _view_changed(self, index: int) -> None:
        row = self.current_row()
        self._update_state()
        if row is not None:
            self.select_row(row)

    def _refresh_counts(self) -> None:
        self.counts.update_counts(self.cells.session.differential())

    def _update_state(self) -> None:
        has_cells = bool(self.cells.session.items)
        busy = self.job is not None
        if not has_cells:
            self.views.setCurrentWidget(self.empty_hint)
        else:
            self.views.setCurrentWidget(self.grid if self.view_combo.currentIndex() == 0 else self.table)
        self.act_classify.setEnabled(bool(self.sources) and self.classifier is not None and not busy)
        self.act_cancel.setEnabled(busy)
        for a in (self.act_csv, self.act_pdf, self.act_sort, self.act_save_session):
            a.setEnabled(has_cells and not busy)
        self.act_open.setEnabled(not busy)
        self.act_open_files.setEnabled(not busy)

    # ---------------------------------------------------------- persistence
    def _schedule_autosave(self) -> None:
        self._autosave_timer.start()

    def autosave(self) -> None:
        self._autosave_timer.stop()
        if self.sources and self.cells.session.items:
            self.cells.session.save(autosave_path(self.sources))

    def save_session_as(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save review session", "review.wbcsession.json", "Review sessions (*.json)")
        if path:
            self.cells.session.save(path)
            self.statusBar().showMessage(f"Saved {path}", 5000)

    def open_session(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open review session", "", "Review sessions (*.json)")
        if not path:
            return
        try:
            session = ReviewSession.load(path)
        except ValueError as exc:
            QMessageBox.warning(self, "Not opened", str(exc))
            return
        self.sources = session.sources
        self._set_session(session)
        self._load_thumbnails()

    # --------------------------------------------------------------- close
    def shutdown(self) -> None:
        for w in list(self.workers):
            w.abort()
        for w in list(self.workers):
            w.wait(20000)
        self.autosave()
        self._save_settings()

    def closeEvent(self, event):
        self.shutdown()
        super().closeEvent(event)
