"""The Classify & review screen: the cells as a grid or a table, the
selected cell in detail, the live differential, and review by keyboard.

Every review change goes through :meth:`ReviewPage.review_current`, which
asks for the operator's name once and records the change in the session's
audit trail."""

from __future__ import annotations

import html
from typing import Callable

from PySide6.QtCore import QItemSelectionModel, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QFrame, QLabel, QListView, QScrollArea, QSlider, QSplitter, QStackedWidget,
    QTableView, QVBoxLayout, QWidget,
)

from ..engine.infer.domain_check import UNLIKE_TRAINING
from ..engine.review.differential import UNUSABLE, ReferralRules
from .app_state import AppState
from .cell_model import (
    FILTER_ALL, FILTER_CALIBRATION, FILTER_ERRORS, FILTER_FLAGGED, FILTER_REVIEWED, FILTER_UNREVIEWED, ITEM_ROLE,
    THUMBNAIL_PX, CellFilterProxy, GridLabelModel,
)
from .count_panel import CountPanel
from .detail_panel import DetailPanel



def _list_shows_whole_names(combo: QComboBox) -> None:
    """A box kept narrow for the toolbar still lists every choice in full."""
    view = combo.view()
    view.setMinimumWidth(view.sizeHintForColumn(0) + 24)

class ReviewPage(QWidget):
    review_changed = Signal()  # a label or a note changed: time to autosave
    calibrate_requested = Signal()  # the notice's link: propose cells to label
    message = Signal(str, int)  # status-bar text, milliseconds

    def __init__(self, state: AppState, operator: Callable[[], str | None], rules: Callable[[], ReferralRules],
                 parent=None):
        """``operator``: the name of whoever reviews (None: they declined to
        give it, so nothing is changed); ``rules``: the referral thresholds."""
        super().__init__(parent)
        self.state, self.operator, self.rules = state, operator, rules
        self.cells = state.cells
        self.proxy = CellFilterProxy(self)
        self.proxy.setSourceModel(self.cells)
        self.grid_model = GridLabelModel(self)
        self.grid_model.setSourceModel(self.proxy)
        self._counts_timer = QTimer(self, singleShot=True, interval=400)  # the chart redraws at most this often
        self._counts_timer.timeout.connect(self.refresh_counts)
        self._build()
        self._build_review_keys()
        state.session_changed.connect(self._session_changed)
        state.model_changed.connect(self._model_changed)
        self.cells.rowsInserted.connect(self._cells_added)

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        self.grid = QListView()
        self.grid.setViewMode(QListView.IconMode)
        self.grid.setIconSize(QSize(THUMBNAIL_PX, THUMBNAIL_PX))
        self.grid.setResizeMode(QListView.Adjust)
        self.grid.setMovement(QListView.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setWordWrap(True)
        self.grid.setSelectionMode(QAbstractItemView.SingleSelection)
        self.grid.setModel(self.grid_model)
        self.fit_grid_to([])
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.AscendingOrder)
        self.proxy.sort(-1)  # file order until the user asks for another
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setDefaultSectionSize(28)
        self.table.setIconSize(QSize(24, 24))  # the whole cell, small, beside its file name
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
        # a lab PC's 1366x768 screen is shorter than the panel's controls:
        # they scroll rather than overlap or push the window off the screen
        detail_area = QScrollArea()
        detail_area.setWidget(self.detail)
        detail_area.setWidgetResizable(True)
        detail_area.setFrameShape(QFrame.NoFrame)
        right = QSplitter(Qt.Vertical)
        right.addWidget(detail_area)
        right.addWidget(self.counts)
        right.setSizes([560, 300])  # on a 880-pixel window both panes show whole
        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.addWidget(self.views)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("background: #fff3cd; color: #664d03; border: 1px solid #e0c46c; padding: 6px;")
        self.notice.setVisible(False)
        self.notice.setTextInteractionFlags(Qt.TextBrowserInteraction)
        self.notice.linkActivated.connect(self._notice_link)
        self._notice_text: str | None = None
        self._notice_open = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.notice)
        layout.addWidget(self.splitter, 1)  # the notice keeps the height of its text

        # the view controls; the main window places them in its toolbar
        self.threshold = QSlider(Qt.Horizontal)
        self.threshold.setRange(30, 99)
        self.threshold.setFixedWidth(120)
        self.threshold.valueChanged.connect(self._threshold_changed)
        self.threshold_label = QLabel()
        self.filter_combo = QComboBox()
        self.filter_combo.activated.connect(self._filter_changed)
        self.sort_combo = QComboBox()
        self.sort_combo.addItems(["File order", "Confidence ↑ (least sure first)", "Confidence ↓"])
        self.sort_combo.activated.connect(self._sort_changed)
        self.view_combo = QComboBox()
        self.view_combo.addItems(["Grid", "Table"])
        self.view_combo.activated.connect(self._view_changed)
        self._fill_filter_combo([])
        for combo in (self.filter_combo, self.sort_combo):  # the toolbar fits a 1366-pixel-wide screen
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(14)
        _list_shows_whole_names(self.sort_combo)

    def _build_review_keys(self) -> None:
        """Review keys act on the cell views only, so typing a note never reviews a cell."""
        for view in (self.grid, self.table):
            for key in range(1, 10):
                QShortcut(QKeySequence(str(key)), view, activated=lambda k=key: self._review_by_number(k),
                          context=Qt.WidgetShortcut)
            QShortcut(QKeySequence("0"), view, activated=lambda: self.review_current(UNUSABLE), context=Qt.WidgetShortcut)
            for key in ("Return", "Enter", "A"):
                QShortcut(QKeySequence(key), view, activated=self.accept_current, context=Qt.WidgetShortcut)
            QShortcut(QKeySequence("Backspace"), view, activated=lambda: self.review_current(None),
                      context=Qt.WidgetShortcut)

    def fit_grid_to(self, classes: list[str]) -> None:
        """Grid cells as wide as the longest line a cell can show, so no
        label is cut to "lymphocyte ..." (a lab's own classes can be longer)."""
        lines = [f"{c} 100%" for c in classes] + ["✔ unusable", "⚠ unreadable", "○ no white cell"]
        width = max(130, max(self.grid.fontMetrics().horizontalAdvance(t) for t in lines) + 20)
        self.grid_model.item_size = QSize(width - 8, 126)
        self.grid.setGridSize(QSize(width, 134))

    def _fill_filter_combo(self, classes: list[str]) -> None:
        self.filter_combo.clear()
        for text, data in (("All cells", (FILTER_ALL, None)), ("Needs review (flagged)", (FILTER_FLAGGED, None)),
                           ("Reviewed", (FILTER_REVIEWED, None)), ("Unreviewed", (FILTER_UNREVIEWED, None)),
                           ("Unreadable files", (FILTER_ERRORS, None)),
                           ("Cells to label for calibration", (FILTER_CALIBRATION, None))):
            self.filter_combo.addItem(text, data)
        for c in classes:
            self.filter_combo.addItem(f"Class: {c}", (FILTER_ALL, c))
        self.filter_combo.addItem("Class: unusable", (FILTER_ALL, UNUSABLE))
        _list_shows_whole_names(self.filter_combo)

    # -------------------------------------------------------- state events
    def _model_changed(self, classifier) -> None:
        self.detail.set_classes(classifier.classes)
        self._fill_filter_combo(classifier.classes)
        self.fit_grid_to(classifier.classes)

    def show_notice(self, text: str | None) -> None:
        """A warning about the whole folder above the cells (None hides it):
        one plain line, and the measurements and steps behind it (the
        engine's whole notice) on request."""
        self._notice_text, self._notice_open = text, False
        self._show_notice_text()

    def _show_notice_text(self) -> None:
        text = self._notice_text
        if text and self._notice_open:
            body = f"{html.escape(text[0].upper() + text[1:])}. <a href='details'>Fewer details</a>"
        elif text:
            body = (f"{UNLIKE_TRAINING[0].upper()}{UNLIKE_TRAINING[1:]}: expect far lower accuracy, and review "
                    "the flagged cells. <a href='details'>Details…</a>")
        self.notice.setText(f"<b>Note:</b> {body} · <a href='calibrate'>Propose cells to label for calibration</a>"
                            if text else "")
        self.notice.setVisible(bool(text))

    def _notice_link(self, link: str) -> None:
        if link == "details":
            self._notice_open = not self._notice_open
            self._show_notice_text()
        else:
            self.calibrate_requested.emit()

    def _session_changed(self) -> None:
        self.show_notice(None)
        self.state.session.threshold = self.threshold.value() / 100
        self.detail.set_item(None, None)
        self.refresh_counts()
        self.show_current_view()

    def _cells_added(self, *_) -> None:
        if not self._counts_timer.isActive():  # throttle, not debounce: the count moves while results arrive
            self._counts_timer.start()
        if self.views.currentWidget() is self.empty_hint:
            self.show_current_view()

    def show_current_view(self) -> None:
        if not self.state.session.items:
            self.views.setCurrentWidget(self.empty_hint)
        else:
            self.views.setCurrentWidget(self.grid if self.view_combo.currentIndex() == 0 else self.table)

    def refresh_counts(self) -> None:
        self.counts.update_counts(self.state.session.differential(self.rules()))

    # -------------------------------------------------------------- review
    def _on_current(self, index, model) -> None:
        self._show_detail(model.data(index, ITEM_ROLE) if index.isValid() else None)
        self.state.flags_changed.emit()

    def refresh_detail(self) -> None:
        """Show the current cell again (its prediction may have changed)."""
        row = self.current_row()
        self._show_detail(self.state.session.items[row] if row is not None else None)

    def _show_detail(self, item) -> None:
        session = self.state.session
        photo = [session.items[r] for r in session.cells_of(item.path)] if item is not None and item.in_field else []
        self.detail.set_item(item, session.model_name, self.cells.thumbnails.get(item.key) if item else None, photo)

    def current_row(self) -> int | None:
        view = self.views.currentWidget()
        if view not in (self.grid, self.table):
            return None
        index = view.currentIndex()
        if not index.isValid():
            return None
        item = index.data(ITEM_ROLE)
        return None if item is None else self.state.session.index_of(item.key)

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
        classes = self.state.session.classes
        if number <= len(classes):
            self.review_current(classes[number - 1])

    def review_current(self, label) -> None:
        row = self.current_row()
        if row is None or self.state.session.items[row].error:
            return
        operator = self.operator()
        if not operator:
            self.message.emit("Not changed: a review needs the operator's name (Review ▸ Operator…).", 8000)
            return
        self.state.session.set_review(row, label, operator)
        self.cells.row_changed(row)
        self.refresh_detail()
        self.refresh_counts()
        self.review_changed.emit()

    def accept_current(self) -> None:
        row = self.current_row()
        if row is not None and self.state.session.items[row].label:
            self.review_current(self.state.session.items[row].label)

    def _set_note(self, text: str) -> None:
        row = self.current_row()
        if row is not None and self.state.session.items[row].note != text:
            self.state.session.items[row].note = text
            self.cells.row_changed(row)
            self.review_changed.emit()

    def _view_order(self) -> list[int]:
        return [self.proxy.mapToSource(self.proxy.index(r, 0)).row() for r in range(self.proxy.rowCount())]

    def goto_next_flagged(self) -> None:
        current = self.current_row()
        nxt = self.state.session.next_flagged(current if current is not None else -1, self._view_order())
        if nxt is None:
            self.message.emit("No flagged cells left to review.", 5000)
        else:
            self.select_row(nxt)
            (self.grid if self.views.currentWidget() is self.grid else self.table).setFocus()

    # ------------------------------------------------------- view controls
    def _threshold_changed(self, value: int) -> None:
        self.threshold_label.setText(f"{value}% ")
        self.state.session.threshold = value / 100
        self.cells.all_changed()
        self.proxy.invalidateFilter()
        self.refresh_counts()

    def show_filter(self, mode: str) -> None:
        index = next(i for i in range(self.filter_combo.count()) if self.filter_combo.itemData(i)[0] == mode)
        self.filter_combo.setCurrentIndex(index)
        self._filter_changed(index)

    def _filter_changed(self, index: int) -> None:
        mode, cls = self.filter_combo.itemData(index) or (FILTER_ALL, None)
        self.proxy.set_filter(mode, cls)

    def _sort_changed(self, index: int) -> None:
        column = -1 if index == 0 else 2
        order = Qt.DescendingOrder if index == 2 else Qt.AscendingOrder
        self.table.horizontalHeader().setSortIndicator(column, order)
        self.proxy.sort(column, order)

    def _view_changed(self, _index: int) -> None:
        row = self.current_row()
        self.show_current_view()
        if row is not None:
            self.select_row(row)
