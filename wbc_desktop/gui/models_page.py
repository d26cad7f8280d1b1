"""The models the app knows: shipped and the lab's own, each with its card;
use one for classification, export, import or delete (never the shipped
one). Changes are announced through the app state."""

from __future__ import annotations

import shutil

from PySide6.QtWidgets import (
    QFileDialog, QHBoxLayout, QListWidget, QListWidgetItem, QMessageBox, QPushButton, QTextBrowser, QVBoxLayout, QWidget,
)

from ..engine.models.registry import delete_model, import_model, list_models
from .app_state import AppState
from .dialogs import card_html
from .workers import describe_error


class ModelsPage(QWidget):
    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.state = state
        self.entries = []
        self.problems: list[str] = []
        self.model_list = QListWidget()
        self.model_list.currentRowChanged.connect(self._show_model_card)
        self.model_card = QTextBrowser()
        buttons = QVBoxLayout()
        for text, slot in (("Use for classification", self.activate_selected), ("Export file…", self.export_selected),
                           ("Import model file…", self.import_model_file), ("Delete", self.delete_selected),
                           ("Refresh", self.refresh_models)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            buttons.addWidget(b)
            if text == "Delete":
                self.delete_button = b
        buttons.addStretch()
        layout = QHBoxLayout(self)
        layout.addWidget(self.model_list, 2)
        layout.addWidget(self.model_card, 3)
        layout.addLayout(buttons)
        state.models_changed.connect(self.refresh_models)
        self.refresh_models()

    def refresh_models(self) -> None:
        self.entries, self.problems = list_models()
        self.model_list.clear()
        for e in self.entries:
            tm = e.card.get("test_metrics") or {}
            extra = f" — test acc {tm['accuracy']:.1%}" if tm else ""
            self.model_list.addItem(QListWidgetItem(f"{e.title}{extra}"))
        if self.entries:
            self.model_list.setCurrentRow(0)

    def _selected(self):
        row = self.model_list.currentRow()
        return self.entries[row] if 0 <= row < len(self.entries) else None

    def _show_model_card(self, _row: int) -> None:
        entry = self._selected()
        self.model_card.setHtml(card_html(entry.card) if entry else "")
        self.delete_button.setEnabled(bool(entry and not entry.shipped))

    def activate_selected(self) -> None:
        entry = self._selected()
        if entry:
            self.state.load_model(entry.path)

    def export_selected(self) -> None:
        entry = self._selected()
        if entry:
            dest, _ = QFileDialog.getSaveFileName(self, "Export model", entry.path.name, "WBC models (*.keras)")
            if dest:
                shutil.copy2(entry.path, dest)

    def import_model_file(self) -> None:
        src, _ = QFileDialog.getOpenFileName(self, "Import model", "", "WBC models (*.keras)")
        if src:
            try:
                import_model(src)
            except Exception as exc:
                QMessageBox.warning(self, "Not imported", describe_error(exc))
            self.state.models_changed.emit()

    def delete_selected(self) -> None:
        entry = self._selected()
        if entry is None or entry.shipped:
            return
        if QMessageBox.question(self, "Delete model", f"Delete {entry.title}? This cannot be undone.") == QMessageBox.Yes:
            delete_model(entry)
            self.state.models_changed.emit()
