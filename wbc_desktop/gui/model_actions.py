"""The main window's model handling: the model list, loading a model on a
worker thread (TensorFlow loads there, after the window is shown), the
model card and About."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox

from .. import paths
from ..engine.model_registry import list_models
from .dialogs import TextDialog, about_html, card_html
from .workers import call_in_thread


class ModelActions:
    """Mixed into MainWindow; uses its widgets, settings and workers."""

    def refresh_models(self) -> None:
        entries, problems = list_models()
        extra = self.settings.value("model/extra", [])
        extra = [extra] if isinstance(extra, str) else list(extra or [])
        self.model_combo.clear()
        for e in entries:
            self.model_combo.addItem(e.title, str(e.path))
        for p in extra:
            if Path(p).exists() and self.model_combo.findData(p) < 0:
                self.model_combo.addItem(Path(p).name, p)
        self.model_combo.addItem("Open model file…", None)
        for msg in problems:
            self.statusBar().showMessage(msg, 8000)

    def load_initial_model(self) -> None:
        """The remembered model if it still exists, else the shipped one."""
        self.refresh_models()
        remembered = self.settings.value("model/path")
        path = Path(remembered) if remembered and Path(remembered).exists() else paths.default_model_path()
        if path.exists():
            self.load_model(path)
        else:
            self.model_status.setText("Model: none — use Model ▸ Open model file…")

    def load_model(self, path: str | Path) -> None:
        from ..engine.classify import Classifier  # TensorFlow loads on the worker, not before the window shows

        path = Path(path)
        self.model_status.setText(f"Model: loading {path.name}…")
        self.act_classify.setEnabled(False)
        worker = call_in_thread(lambda: Classifier.open(path))
        worker.returned.connect(lambda clf: self._model_loaded(clf, path))
        worker.errored.connect(lambda msg: self._model_failed(path, msg))
        self._start_worker(worker)

    def _model_loaded(self, classifier, path: Path) -> None:
        self.classifier, self.model_path = classifier, path
        index = self.model_combo.findData(str(path))
        if index < 0:
            self.model_combo.insertItem(self.model_combo.count() - 1, classifier.name, str(path))
            index = self.model_combo.findData(str(path))
        self.model_combo.setCurrentIndex(index)
        self.model_status.setText(f"Model: {classifier.name} ({len(classifier.classes)} classes, {classifier.size} px)")
        self.detail.set_classes(classifier.classes)
        self._fill_filter_combo(classifier.classes)
        self._fit_grid_to(classifier.classes)
        self.settings.setValue("model/path", str(path))
        self._update_state()
        self.model_ready.emit()
        if self._pending_classify:
            self._pending_classify = False
            self.start_classification()

    def _model_failed(self, path: Path, message: str) -> None:
        self.model_status.setText("Model: none")
        QMessageBox.warning(self, "Model not loaded", f"{path} could not be loaded:\n\n{message}")
        self._update_state()

    def _model_chosen(self, index: int) -> None:
        data = self.model_combo.itemData(index)
        if data is None:
            self.choose_model_file()
        elif self.model_path is None or Path(data) != self.model_path:
            self.load_model(data)

    def choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open model file", "", "WBC models (*.keras)")
        if path:
            extra = self.settings.value("model/extra", [])
            extra = [extra] if isinstance(extra, str) else list(extra or [])
            self.settings.setValue("model/extra", [path] + [p for p in extra if p != path])
            self.load_model(path)
        elif self.model_path:
            self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(str(self.model_path))))

    def show_model_card(self) -> None:
        if self.classifier:
            TextDialog("Model card", card_html(self.classifier.card), self).exec()

    def show_about(self) -> None:
        TextDialog("About WBC Desktop", about_html(self.classifier.card if self.classifier else None), self).exec()
