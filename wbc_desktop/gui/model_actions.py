"""The main window's model handling: the model list, the active model (the
app state loads it on a worker: TensorFlow loads there, after the window is
shown), the model card and About."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox

from .. import paths
from ..engine.models.modelfile import views_phrase
from ..engine.models.registry import list_models
from .dialogs import TextDialog, about_html, card_html
from .workers import describe_error


class ModelActions:
    """Mixed into MainWindow; asks its ``state`` for model changes."""

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
        if self.state.model_path is not None:
            self._show_active_in_combo()
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
        self.state.load_model(path)

    def _show_active_in_combo(self) -> None:
        path, name = str(self.state.model_path), self.state.classifier.name
        if self.model_combo.findData(path) < 0:
            self.model_combo.insertItem(self.model_combo.count() - 1, name, path)
        self.model_combo.setCurrentIndex(self.model_combo.findData(path))

    def _model_changed(self, classifier) -> None:
        self._show_active_in_combo()
        self.model_status.setText(f"Model: {classifier.name} ({len(classifier.classes)} classes, {classifier.size} px)")
        self.tta_box.setChecked(classifier.default_tta)
        self.tta_box.setToolTip(
            "Classify each cell as is, mirrored two ways and turned, and average the four, at 4x the computing time. "
            f"{classifier.name} classifies with {views_phrase(classifier.default_views)} by default: what scored best "
            "for it on labs it never saw (its card; a lab model: on its lab's cells).")
        self.settings.setValue("model/path", str(self.state.model_path))
        self.model_ready.emit()
        if self._pending_classify:
            self._pending_classify = False
            self.start_classification()

    def _model_failed(self, path: str, exc: Exception) -> None:
        self.model_status.setText("Model: none" if self.state.classifier is None
                                  else f"Model: {self.state.classifier.name}")
        QMessageBox.warning(self, "Model not loaded", f"{path} could not be loaded:\n\n{describe_error(exc)}")

    def _model_chosen(self, index: int) -> None:
        data = self.model_combo.itemData(index)
        if data is None:
            self.choose_model_file()
        elif self.state.model_path is None or Path(data) != self.state.model_path:
            self.load_model(data)

    def choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open model file", "", "WBC models (*.keras)")
        if path:
            extra = self.settings.value("model/extra", [])
            extra = [extra] if isinstance(extra, str) else list(extra or [])
            self.settings.setValue("model/extra", [path] + [p for p in extra if p != path])
            self.load_model(path)
        elif self.state.model_path:
            self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(str(self.state.model_path))))

    def show_model_card(self) -> None:
        if self.state.classifier:
            TextDialog("Model card", card_html(self.state.classifier.card), self).exec()

    def show_about(self) -> None:
        card = self.state.classifier.card if self.state.classifier else None
        TextDialog("About WBC Desktop", about_html(card), self).exec()
