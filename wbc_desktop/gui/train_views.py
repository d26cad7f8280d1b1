"""Views of a training run: live loss and accuracy curves, and report
images that enlarge on a click."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QVBoxLayout, QWidget

from .scaled_picture import ScaledPicture


class CurveCanvas(QWidget):
    """Loss and accuracy per epoch, train and validation. The axes are made
    once and only their line data change per epoch: a full re-layout costs
    the GUI thread a few hundred milliseconds each time."""

    SERIES = (("loss", ""), ("loss", "val_"), ("accuracy", ""), ("accuracy", "val_"))

    def __init__(self, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        self.canvas = FigureCanvasQTAgg(Figure(figsize=(6, 2.6), dpi=100))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.history: list[dict] = []
        fig = self.canvas.figure
        self.axes = {}
        for i, key in enumerate(("loss", "accuracy")):
            ax = fig.add_subplot(1, 2, i + 1)
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            self.axes[key] = ax
        self.lines = {
            (key, prefix): self.axes[key].plot([], [], "-s" if prefix else "-o", markersize=3,
                                               label="validation" if prefix else "train")[0]
            for key, prefix in self.SERIES
        }
        for ax in self.axes.values():
            ax.legend(fontsize=7)
        fig.tight_layout()
        self.redraw()

    def set_history(self, history: list[dict]) -> None:
        self.history = list(history)
        self.redraw()

    def add_epoch(self, logs: dict) -> None:
        self.history.append(logs)
        self.redraw()

    def redraw(self) -> None:
        epochs = [h["epoch"] for h in self.history]
        for (key, prefix), line in self.lines.items():
            points = [(e, h[prefix + key]) for e, h in zip(epochs, self.history) if prefix + key in h]
            line.set_data([p[0] for p in points], [p[1] for p in points])
        for key, ax in self.axes.items():
            ax.set_autoscale_on(True)  # a fixed limit set below turns it off
            ax.relim()
            ax.autoscale_view()
            if not epochs:  # before the first epoch: the ranges a run starts in, not matplotlib's +-0.05
                ax.set_xlim(1, 5)
            if key == "accuracy":  # a fixed scale: one run's curve reads against another's
                ax.set_ylim(0, 1.02)
            else:
                ax.set_ylim(0, None if epochs else 1)
        self.canvas.draw_idle()


class ClickableImage(ScaledPicture):
    """A report figure, as large as the page allows; a click opens it whole."""

    clicked = Signal()

    def __init__(self):
        super().__init__("")
        self.setFrameShape(QFrame.NoFrame)

    def mousePressEvent(self, event):
        self.clicked.emit()
