"""Qt item model over a review session: one row per cell, shared by the
thumbnail grid and the table, with a filter/sort proxy in front."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSize, QSortFilterProxyModel, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QIcon, QImage, QPixmap

from ..engine.infer.modes import GREY_IMAGE, NO_WHITE_CELL
from ..engine.review.session import UNUSABLE, ReviewItem, ReviewSession

COLUMNS = ("File", "Predicted", "Confidence", "Reviewed", "Note")
SORT_ROLE = Qt.UserRole + 1
ITEM_ROLE = Qt.UserRole + 2
FLAGGED_BG = QColor("#fff1cc")
ERROR_BG = QColor("#f8d7da")
REVIEWED_FG = QColor("#1b6e2d")
CUT_BY_EDGE = "cut by the photo edge (counted)"


def pixmap_from_array(pixels: np.ndarray) -> QPixmap:
    pixels = np.ascontiguousarray(pixels)
    h, w = pixels.shape[:2]
    image = QImage(pixels.data, w, h, 3 * w, QImage.Format_RGB888)
    return QPixmap.fromImage(image.copy())


THUMBNAIL_PX = 96  # the grid's icon size, whatever the model's input size


def thumbnail(pixels: np.ndarray) -> QPixmap:
    pixmap = pixmap_from_array(pixels)
    if max(pixmap.width(), pixmap.height()) <= THUMBNAIL_PX:
        return pixmap
    return pixmap.scaled(THUMBNAIL_PX, THUMBNAIL_PX, Qt.KeepAspectRatio, Qt.SmoothTransformation)


class CellTableModel(QAbstractTableModel):
    def __init__(self, session: ReviewSession | None = None, parent=None):
        super().__init__(parent)
        self.session = session or ReviewSession([], [])
        self.thumbnails: dict[str, QPixmap] = {}

    # structure ---------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.session.items)

    def columnCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if orientation == Qt.Horizontal and role == Qt.DisplayRole:
            return COLUMNS[section]
        return None

    def set_session(self, session: ReviewSession) -> None:
        self.beginResetModel()
        self.session = session
        self.thumbnails = {k: v for k, v in self.thumbnails.items() if session.get(k)}
        self.endResetModel()

    def add_item(self, item: ReviewItem, pixels: np.ndarray | None = None) -> None:
        existing = self.session.index_of(item.key)
        if pixels is not None:
            self.thumbnails[item.key] = thumbnail(pixels)
        if existing is None:
            row = len(self.session.items)
            self.beginInsertRows(QModelIndex(), row, row)
            self.session.add(item)
            self.endInsertRows()
        else:
            self.session.add(item)
            self.row_changed(existing)

    def set_thumbnail(self, key: str, pixels: np.ndarray) -> None:
        row = self.session.index_of(key)
        if row is not None:
            self.thumbnails[key] = thumbnail(pixels)
            self.row_changed(row)

    def row_changed(self, row: int) -> None:
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def all_changed(self) -> None:
        if self.session.items:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.session.items) - 1, len(COLUMNS) - 1))

    # data --------------------------------------------------------------------
    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        item = self.session.items[index.row()]
        col = index.column()
        flagged = item.is_flagged(self.session.threshold)
        if role == ITEM_ROLE:
            return item
        if role == Qt.DisplayRole:
            if col == 0:
                return item.display_name
            if col == 1:
                return item.label or (("no white cell" if item.error == NO_WHITE_CELL else "unreadable") if item.error else "")
            if col == 2:
                return f"{item.confidence:.0%}" if item.error is None else ""
            if col == 3:
                return "not a WBC / unusable" if item.reviewed == UNUSABLE else (item.reviewed or "")
            if col == 4:
                return item.note or (item.error or "") or (CUT_BY_EDGE if item.at_border else "") or (
                    GREY_IMAGE if item.grey else "")
        if role == Qt.ToolTipRole:
            text = item.path + (f"\nwhite cell {item.cell + 1} of this photo" if item.in_field else "")
            text += f"\n{CUT_BY_EDGE}" if item.at_border else ""
            text += f"\n{GREY_IMAGE}" if item.grey else ""
            if item.error:
                return f"{text}\n{item.error}"
            return f"{text}\npredicted {item.label} ({item.confidence:.1%})" + (f"\nreviewed: {item.reviewed}" if item.reviewed else "")
        if role == SORT_ROLE:
            if col == 0:
                return (item.path, item.cell or 0)
            return (item.confidence if item.error is None else -1.0) if col == 2 else str(self.data(index) or "")
        if role == Qt.DecorationRole and col == 0:
            # an icon, not the pixmap: each view draws it at its own icon size
            # (a pixmap is drawn whole, and a table row showed a slice of it)
            thumbnail = self.thumbnails.get(item.key)
            return QIcon(thumbnail) if thumbnail is not None else None
        if role == Qt.BackgroundRole:
            if item.error:
                return QBrush(ERROR_BG)
            if flagged:
                return QBrush(FLAGGED_BG)
        if role == Qt.ForegroundRole and item.reviewed and col in (0, 3):
            return QBrush(REVIEWED_FG)
        if role == Qt.FontRole and item.reviewed and col in (0, 3):
            font = QFont()
            font.setBold(True)
            return font
        return None


class GridLabelModel(QSortFilterProxyModel):
    """The grid shows one text line per cell: the label and confidence, or a
    tick and the reviewer's class. Flagged cells are marked by their amber
    background alone, so the line fits under the thumbnail."""

    item_size: QSize | None = None  # every cell's: the view's uniform size would be the first cell's

    def data(self, index, role=Qt.DisplayRole):
        if role == Qt.SizeHintRole and self.item_size is not None:
            return self.item_size
        if role == Qt.DisplayRole and index.column() == 0:
            item: ReviewItem = super().data(index, ITEM_ROLE)
            if item is None:
                return None
            if item.error:
                return "○ no white cell" if item.error == NO_WHITE_CELL else "⚠ unreadable"
            if item.reviewed:
                return f"✔ {'unusable' if item.reviewed == UNUSABLE else item.reviewed}"
            return f"{item.label} {item.confidence:.0%}"
        return super().data(index, role)


FILTER_ALL, FILTER_FLAGGED, FILTER_REVIEWED, FILTER_UNREVIEWED, FILTER_ERRORS = "all", "flagged", "reviewed", "unreviewed", "errors"
FILTER_CALIBRATION = "calibration"


class CellFilterProxy(QSortFilterProxyModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.mode = FILTER_ALL
        self.class_name: str | None = None
        self.setSortRole(SORT_ROLE)

    def set_filter(self, mode: str, class_name: str | None = None) -> None:
        self.mode, self.class_name = mode, class_name
        self.invalidateFilter()

    def filterAcceptsRow(self, row, parent):
        model: CellTableModel = self.sourceModel()
        item = model.session.items[row]
        if self.class_name and item.final_label != self.class_name:
            return False
        if self.mode == FILTER_FLAGGED:
            return item.is_flagged(model.session.threshold)
        if self.mode == FILTER_REVIEWED:
            return item.reviewed is not None
        if self.mode == FILTER_UNREVIEWED:
            return item.reviewed is None and item.error is None
        if self.mode == FILTER_ERRORS:
            return item.error is not None
        if self.mode == FILTER_CALIBRATION:
            return item.key in model.session.calibration_set
        return True
