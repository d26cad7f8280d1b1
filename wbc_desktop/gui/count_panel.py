"""Live differential count by haematology conventions (see
``engine.review.differential``): leukocytes with %, NRBC per 100 WBC,
platelets seen, and a flag when a haematologist should look."""

from __future__ import annotations

from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHBoxLayout, QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)


def plot_differential(fig, diff: dict) -> None:
    """Draw the differential as bars into ``fig`` (the panel's canvas and the
    PDF report share this)."""
    fig.clear()
    ax = fig.add_subplot(111)
    names = list(diff["counts"])
    ax.bar(range(len(names)), [diff["percent"][n] for n in names], color="#3b7dd8")
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("% of WBC", fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_ylim(0, max([5.0] + [v * 1.15 for v in diff["percent"].values()]))
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()


class CountPanel(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Class", "Count", "%"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setMinimumWidth(230)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.referral = QLabel()
        self.referral.setWordWrap(True)
        self.referral.setStyleSheet("color: #a01919; font-weight: bold;")
        self.referral.setVisible(False)
        self.canvas = None
        self._row = QHBoxLayout()
        self._row.addWidget(self.table, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("<b>Differential count</b>"))
        layout.addLayout(self._row, 1)
        layout.addWidget(self.summary)
        layout.addWidget(self.referral)
        self.last = None

    def update_counts(self, diff: dict) -> None:
        self.last = diff
        rows = [(name, str(n), f"{diff['percent'][name]:.1f}") for name, n in diff["counts"].items()]
        rows += [("NRBC / 100 WBC", str(diff["nrbc"]), f"{diff['nrbc_per_100_wbc']:.1f}"),
                 ("Platelets seen", str(diff["platelets_seen"]), "")]
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                item = QTableWidgetItem(text)
                if r >= len(diff["counts"]):
                    item.setForeground(QColor("#555"))
                self.table.setItem(r, c, item)
        self.summary.setText(
            f"Total WBC: <b>{diff['total']}</b> · reviewed {diff['reviewed']} · unreviewed {diff['unreviewed']} · "
            f"<span style='color:#9a6b00'>flagged {diff['flagged']}</span> · unusable {diff['unusable']} · "
            f"unreadable {diff['errors']}"
            + (f" · photos without a white cell {diff['no_white_cell']}" if diff["no_white_cell"] else "")
            + (f" · cut by a photo edge (counted) {diff['at_border']}" if diff["at_border"] else "")
            + (f" · of grey images (less sure) {diff['grey']}" if diff["grey"] else "")
        )
        self.summary.setToolTip(diff["convention"])
        self.referral.setText("Needs a haematologist's look: " + "; ".join(diff["refer"]))
        self.referral.setVisible(bool(diff["refer"]))
        self._draw(diff)

    def _draw(self, diff: dict) -> None:
        if self.canvas is None:  # matplotlib is imported on first use, not at start-up
            from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
            from matplotlib.figure import Figure

            self.canvas = FigureCanvasQTAgg(Figure(figsize=(3.2, 2.2), dpi=100))
            self.canvas.setMinimumSize(260, 150)
            self._row.addWidget(self.canvas, 3)
        plot_differential(self.canvas.figure, diff)
        self.canvas.draw_idle()
