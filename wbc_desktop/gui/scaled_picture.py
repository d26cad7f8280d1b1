"""A picture that fills the space a layout gives it, however the window is
sized, and never holds the layout open at its last size."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QFrame, QLabel, QSizePolicy


class ScaledPicture(QLabel):
    """A picture as large as its space allows, rescaled whenever the panel is
    resized; ``overlay`` draws on each rescaled copy (boxes and labels keep
    their size in screen pixels)."""

    def __init__(self, text: str, minimum: int = 160):
        super().__init__(text)
        self._source = QPixmap()
        self._largest: int | None = None
        self._overlay: Callable[[QPixmap], QPixmap] | None = None
        self.setAlignment(Qt.AlignCenter)
        self.setMinimumSize(minimum, minimum)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setFrameShape(QFrame.StyledPanel)

    def show_picture(self, pixmap: QPixmap, largest: int | None = None,
                     overlay: Callable[[QPixmap], QPixmap] | None = None) -> None:
        """``largest``: the most pixels a side may grow to (a 96 px cell blown
        up to a whole screen shows only its pixels)."""
        self._source, self._largest, self._overlay = pixmap, largest, overlay
        self._rescale()

    def show_text(self, text: str) -> None:
        self._source = QPixmap()
        self.setPixmap(QPixmap())
        self.setText(text)

    def minimumSizeHint(self) -> QSize:  # the shown copy must not hold the layout open
        return self.minimumSize()

    def sizeHint(self) -> QSize:
        return QSize(240, 200)  # grows into whatever the screen offers; on a small one the buttons come first

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._source.isNull():
            return
        width, height = self.width() - 4, self.height() - 4
        if self._largest:
            width, height = min(width, self._largest), min(height, self._largest)
        shown = self._source.scaled(max(width, 1), max(height, 1), Qt.KeepAspectRatio, Qt.SmoothTransformation)
        self.setPixmap(self._overlay(shown) if self._overlay else shown)
