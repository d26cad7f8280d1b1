"""The selected cell: large image, top-k probabilities, file and model, and
the review controls (accept, reassign, unusable, note)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPixmap
from PySide6.QtWidgets import (
    QFrame, QGridLayout, QGroupBox, QLabel, QLineEdit, QPushButton, QSizePolicy, QVBoxLayout, QWidget,
)

from ..engine.io.imageio import ImageReadError, read_rgb
from ..engine.review.session import UNUSABLE, ReviewItem
from .cell_model import pixmap_from_array


class TopKBars(QWidget):
    """Horizontal probability bars, largest first (painted: no plotting
    library needed for five bars)."""

    def __init__(self, k: int = 5, parent=None):
        super().__init__(parent)
        self.k = k
        self.rows: list[tuple[str, float]] = []
        self.setMinimumHeight(22 * k + 4)

    def set_probs(self, classes: list[str], probs) -> None:
        if probs is None:
            self.rows = []
        else:
            order = np.argsort(probs)[::-1][: self.k]
            self.rows = [(classes[i], float(probs[i])) for i in order]
        self.update()

    def sizeHint(self):
        return QSize(260, 22 * self.k + 4)

    def paintEvent(self, _):
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        label_w, h = 96, 18
        for i, (name, value) in enumerate(self.rows):
            y = 2 + i * 22
            p.setPen(self.palette().text().color())
            p.drawText(QRectF(0, y, label_w - 6, h), Qt.AlignRight | Qt.AlignVCenter, name)
            width = max(1.0, (self.width() - label_w - 48) * value)
            p.fillRect(QRectF(label_w, y + 2, width, h - 4), QColor("#3b7dd8") if i == 0 else QColor("#9bbbe6"))
            p.drawText(QRectF(label_w + width + 4, y, 44, h), Qt.AlignLeft | Qt.AlignVCenter, f"{value:.0%}")
        p.end()


class DetailPanel(QWidget):
    review_requested = Signal(object)  # class name, UNUSABLE, or None to clear
    accept_requested = Signal()
    note_changed = Signal(str)
    next_flagged_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.classes: list[str] = []
        self.item: ReviewItem | None = None
        self.image = QLabel("No cell selected")
        self.image.setAlignment(Qt.AlignCenter)
        self.image.setMinimumSize(240, 240)
        self.image.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.image.setFrameShape(QFrame.StyledPanel)
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.RichText)
        self.bars = TopKBars()
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.info.setStyleSheet("color: #555;")

        self.review_box = QGroupBox("Review (keys: Enter accept, 1-9 class, 0 unusable, N next flagged)")
        self.review_grid = QGridLayout(self.review_box)
        self.accept_button = QPushButton("Accept prediction")
        self.accept_button.clicked.connect(self.accept_requested)
        self.unusable_button = QPushButton("0  Not a WBC / unusable")
        self.unusable_button.clicked.connect(lambda: self.review_requested.emit(UNUSABLE))
        self.clear_button = QPushButton("Clear review")
        self.clear_button.clicked.connect(lambda: self.review_requested.emit(None))
        self.next_button = QPushButton("Next flagged ▶")
        self.next_button.clicked.connect(self.next_flagged_requested)
        self.note = QLineEdit()
        self.note.setPlaceholderText("Note for this cell")
        self.note.editingFinished.connect(lambda: self.note_changed.emit(self.note.text()))
        self.class_buttons: list[QPushButton] = []

        layout = QVBoxLayout(self)
        layout.addWidget(self.image, 3)
        layout.addWidget(self.title)
        layout.addWidget(self.bars)
        layout.addWidget(self.info)
        layout.addWidget(self.review_box)
        layout.addWidget(self.note)
        self.set_item(None, None)

    def set_classes(self, classes: list[str]) -> None:
        self.classes = list(classes)
        for b in self.class_buttons:
            b.deleteLater()
        for w in (self.accept_button, self.unusable_button, self.clear_button, self.next_button):
            self.review_grid.removeWidget(w)
        self.class_buttons = []
        for i, name in enumerate(self.classes):
            button = QPushButton(f"{i + 1}  {name}" if i < 9 else name)
            button.clicked.connect(lambda _=False, n=name: self.review_requested.emit(n))
            self.review_grid.addWidget(button, i // 2, i % 2)
            self.class_buttons.append(button)
        row = (len(self.classes) + 1) // 2
        self.review_grid.addWidget(self.unusable_button, row, 0)
        self.review_grid.addWidget(self.clear_button, row, 1)
        self.review_grid.addWidget(self.accept_button, row + 1, 0)
        self.review_grid.addWidget(self.next_button, row + 1, 1)

    def set_item(self, item: ReviewItem | None, model_name: str | None, thumbnail: QPixmap | None = None) -> None:
        self.item = item
        enabled = item is not None and item.error is None
        self.review_box.setEnabled(enabled)
        self.note.setEnabled(item is not None)
        if item is None:
            self.image.setPixmap(QPixmap())
            self.image.setText("No cell selected")
            self.title.setText("")
            self.info.setText("")
            self.bars.set_probs([], None)
            self.note.setText("")
            return
        self._show_image(item, thumbnail)
        if item.error:
            self.title.setText(f"<b>Unreadable file</b><br>{item.error}")
        else:
            reviewed = ""
            if item.reviewed:
                shown = "not a WBC / unusable" if item.reviewed == UNUSABLE else item.reviewed
                reviewed = f"<br><span style='color:#1b6e2d'><b>✔ Reviewed: {shown}</b></span>"
            self.title.setText(f"Model: <b>{item.label}</b> ({item.confidence:.1%}){reviewed}")
        self.bars.set_probs(self.classes, item.probs)
        self.info.setText(f"{item.path}\nmodel: {model_name or '—'}")
        self.note.setText(item.note)

    def _show_image(self, item: ReviewItem, thumbnail: QPixmap | None) -> None:
        try:
            pixmap = pixmap_from_array(read_rgb(item.path, max_side=1024))
        except ImageReadError as exc:
            pixmap = thumbnail
            if pixmap is None:
                self.image.setPixmap(QPixmap())
                self.image.setText(f"Cannot show {Path(item.path).name}:\n{exc.reason}")
                return
        side = min(self.image.width(), self.image.height(), 480)
        self.image.setPixmap(pixmap.scaled(max(side, 200), max(side, 200), Qt.KeepAspectRatio, Qt.SmoothTransformation))
