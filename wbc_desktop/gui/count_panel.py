"""Live differential count: table and matplotlib bar chart, reviewed labels
counted in place of predictions."""

from __future__ import annotations

from PySide6.QtWidgets import QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget


def differential_figure(diff: dict, figsize=(4.2, 2.4)):
    """A matplotlib Figure of the differential (also used by the PDF report)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    ax = fig.add_subplot(111)
    names = list(diff["counts"])
    ax.bar(range(len(names)), [diff["percent"][n] for n in names], color="#3b7dd8")
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("% of WBC", fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_ylim(0, max([5.0] + [v * 1.15 for v in diff["percent"].values()]))
    fig.tight_layout()
    return fig


class CountPanel(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Class", "Count", "%"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.canvas = None
        self._layout = QVBoxLayout(self)
        self._layout.addWidget(QLabel("<b>Differential count</b>"))
        self._layout.addWidget(self.table)
        self._layout.addWidget(self.summary)
        self.last = None

    def update_counts(self, diff: dict) -> None:
        self.last = diff
        self.table.setRowCount(len(diff["counts"]))
        for r, (name, n) in enumerate(diff["counts"].items()):
            for c, text in enumerate((name, str(n), f"{diff['percent'][name]:.1f}")):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.summary.setText(
            f"Total WBC: <b>{diff['total']}</b> · reviewed {diff['reviewed']} · unreviewed {diff['unreviewed']} · "
            f"<span style='color:#9a6b00'>flagged {diff['flagged']}</span> · unusable {diff['unusable']} · "
            f"unreadable {diff['errors']}"
        )
        self._draw(diff)

    def _draw(self, diff: dict) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg

        fig = differential_figure(diff)
        if self.canvas is None:
            self.canvas = FigureCanvasQTAgg(fig)
            self.canvas.setMinimumHeight(200)
            self._layout.addWidget(self.canvas)
        else:
            self.canvas.figure = fig
            fig.set_canvas(self.canvas)
            self.canvas.draw_idle()
