"""The one owner of what the app holds: the cells under review, the active
model and the running jobs. Screens read it and ask it for changes; it
tells them through signals. No screen writes another screen's state."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from ..engine.review.session import ReviewSession
from .action_states import BUSY, HAS_CELLS, HAS_SOURCES, IDLE, MODEL_READY
from .cell_model import CellTableModel
from .workers import JobRegistry, call_in_thread


class AppState(QObject):
    model_loading = Signal(str)  # path
    model_changed = Signal(object)  # the Classifier now active
    model_failed = Signal(str, object)  # path, exception
    models_changed = Signal()  # model files were saved, imported or deleted
    session_changed = Signal()  # another review session is shown
    flags_changed = Signal()  # anything :meth:`flags` depends on

    def __init__(self, parent=None):
        super().__init__(parent)
        self.cells = CellTableModel()
        self.sources: list[str] = []
        self.classifier = None
        self.model_path: Path | None = None
        self.jobs = JobRegistry(self)
        self.jobs.busy_changed.connect(lambda _: self.flags_changed.emit())
        self.cells.modelReset.connect(self.flags_changed)
        self.cells.rowsInserted.connect(self.flags_changed)

    @property
    def session(self) -> ReviewSession:
        return self.cells.session

    def flags(self) -> set[str]:
        """The states actions depend on (see :mod:`.action_states`)."""
        flags = {BUSY} if self.jobs.busy else {IDLE}
        if self.session.items:
            flags.add(HAS_CELLS)
        if self.sources:
            flags.add(HAS_SOURCES)
        if self.classifier is not None:
            flags.add(MODEL_READY)
        return flags

    def set_session(self, session: ReviewSession, sources: list[str]) -> None:
        self.sources = list(sources)
        self.cells.set_session(session)
        self.session_changed.emit()
        self.flags_changed.emit()

    def load_model(self, path: str | Path) -> None:
        """Load on a worker: TensorFlow is imported there, never on the GUI thread."""
        from ..engine.infer.classify import Classifier

        path = Path(path)
        self.model_loading.emit(str(path))
        worker = call_in_thread(lambda: Classifier.open(path))
        worker.returned.connect(lambda clf: self._model_loaded(clf, path))
        worker.errored.connect(lambda exc: self.model_failed.emit(str(path), exc))
        self.jobs.start(worker, "load model", exclusive=False)

    def _model_loaded(self, classifier, path: Path) -> None:
        self.classifier, self.model_path = classifier, path
        self.model_changed.emit(classifier)
        self.flags_changed.emit()
        # usable now; a classification started meanwhile waits for the same trace
        self.jobs.start(call_in_thread(classifier.warm_up), "prepare model", exclusive=False)
