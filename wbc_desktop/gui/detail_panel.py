"""The selected cell: large image (a cell of a field photo is shown in its
photo, every white cell boxed and labelled), top-k probabilities, file and
model, and the review controls (accept, reassign, unusable, note)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QGridLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSizePolicy, QVBoxLayout, QWidget,
)

from ..engine.infer.modes import GREY_IMAGE
from ..engine.io.imageio import ImageReadError, read_rgb_scaled
from ..engine.review.session import UNUSABLE, ReviewItem
from .cell_model import pixmap_from_array
from .scaled_picture import ScaledPicture

CELL_LARGEST = 480  # pixels a single cell's side may grow to
CLASS_COLUMNS = 3  # eight classes in three rows: the panel fits a 768-pixel-high screen


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
        self.photo_cells: list[ReviewItem] = []
        self._decoded: tuple[str, QPixmap, float] | None = None  # the last photo: moving between its cells is instant
        self.image = ScaledPicture("No cell selected")
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.RichText)
        self.bars = TopKBars()
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.info.setStyleSheet("color: #555;")
        self.info.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Minimum)  # the image gives way, not the file name

        self.review_box = QGroupBox("Review (keys: Enter accept, 1-9 class, 0 unusable, N next flagged)")
        review = QVBoxLayout(self.review_box)
        self.review_grid = QGridLayout()
        actions = QHBoxLayout()
        review.addLayout(self.review_grid)
        review.addLayout(actions)
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
        for button in (self.unusable_button, self.clear_button, self.accept_button, self.next_button):
            actions.addWidget(button)

        # the picture beside its probabilities: the panel is wider than high
        about = QVBoxLayout()
        about.addWidget(self.title)
        about.addWidget(self.bars)
        about.addWidget(self.info)
        about.addStretch(1)
        top = QHBoxLayout()
        top.addWidget(self.image, 3)
        top.addLayout(about, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(top, 1)
        layout.addWidget(self.review_box)
        layout.addWidget(self.note)
        self.set_item(None, None)

    def set_classes(self, classes: list[str]) -> None:
        self.classes = list(classes)
        for b in self.class_buttons:
            b.deleteLater()
        self.class_buttons = []
        for i, name in enumerate(self.classes):
            button = QPushButton(f"{i + 1}  {name}" if i < 9 else name)
            button.clicked.connect(lambda _=False, n=name: self.review_requested.emit(n))
            self.review_grid.addWidget(button, i // CLASS_COLUMNS, i % CLASS_COLUMNS)
            self.class_buttons.append(button)

    def set_item(self, item: ReviewItem | None, model_name: str | None, thumbnail: QPixmap | None = None,
                 photo_cells: list[ReviewItem] = ()) -> None:
        """``photo_cells``: every cell found in the item's field photo, to box them all."""
        self.item, self.photo_cells = item, list(photo_cells)
        enabled = item is not None and item.error is None
        self.review_box.setEnabled(enabled)
        self.note.setEnabled(item is not None)
        if item is None:
            self.image.show_text("No cell selected")
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
        where = ""
        if item.in_field:
            where = f"White cell {item.cell + 1} of {len(self.photo_cells)} in this photo (yellow box)"
            where += ", cut by the photo's edge (counted)\n" if item.at_border else "\n"
        grey = f"{GREY_IMAGE[0].upper()}{GREY_IMAGE[1:]}\n" if item.grey else ""
        self.info.setText(f"{where}{grey}{item.path}\nmodel: {model_name or '—'}")
        self.note.setText(item.note)

    def _show_image(self, item: ReviewItem, thumbnail: QPixmap | None) -> None:
        try:
            if self._decoded is None or self._decoded[0] != item.path:
                rgb, scale = read_rgb_scaled(item.path, max_side=1024)
                self._decoded = (item.path, pixmap_from_array(rgb), scale)
            pixmap, scale = self._decoded[1], self._decoded[2]
        except ImageReadError as exc:
            if thumbnail is None:
                self.image.show_text(f"Cannot show {Path(item.path).name}:\n{exc.reason}")
                return
            self.image.show_picture(thumbnail, CELL_LARGEST)
            return
        if item.in_field:  # the whole photo, every white cell boxed
            def boxed(shown: QPixmap) -> QPixmap:
                return self._boxed(shown, item, shown.width() / pixmap.width() / scale)
            self.image.show_picture(pixmap, overlay=boxed)
        else:
            self.image.show_picture(pixmap, CELL_LARGEST)

    def _boxed(self, pixmap: QPixmap, current: ReviewItem, factor: float) -> QPixmap:
        """Every white cell of the photo boxed with its label; the selected one in yellow."""
        pixmap = QPixmap(pixmap)
        p = QPainter(pixmap)
        p.setRenderHint(QPainter.Antialiasing)
        font = QFont()
        font.setPointSize(8)
        p.setFont(font)
        for other in self.photo_cells:
            if not other.box:
                continue
            x, y, w, h = (v * factor for v in other.box)
            selected = other.key == current.key
            colour = QColor("#ffd400") if selected else QColor("#16a34a" if other.reviewed else "#2563eb")
            p.setPen(QPen(colour, 3 if selected else 1.5))
            p.drawRect(QRectF(x, y, w, h))
            text = f"{other.cell + 1} {other.final_label or '?'}"
            label_w = max(w, 7.0 * len(text))
            label = QRectF(min(x, pixmap.width() - label_w), max(0.0, y - 14), label_w, 14)
            p.fillRect(label, QColor(0, 0, 0, 140))
            p.setPen(QColor("white"))
            p.drawText(label, Qt.AlignLeft | Qt.AlignVCenter, text)
        p.end()
        return pixmap
