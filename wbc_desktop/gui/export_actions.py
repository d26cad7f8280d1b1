"""The main window's file actions: export CSV and PDF, sort into class
folders (and undo a move), all written atomically or on a worker."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog

from ..engine.review.export import differential_csv_path, write_differential_csv, write_review_csv
from ..engine.review.sorting import sort_into_folders, undo_moves
from .dialogs import ExportReportDialog, SortDialog
from .workers import GeneratorWorker


class ExportActions:
    """Mixed into MainWindow; reads the session from its ``state``."""

    def export_csv(self, path: str | None = None) -> str | None:
        """The cells (one row each) and, beside them, the differential."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export CSV", "wbc_results.csv", "CSV (*.csv)")
            if not path:
                return None
        write_review_csv(self.state.session, path)
        write_differential_csv(self.state.session, differential_csv_path(path), self.referral_rules())
        self.statusBar().showMessage(f"Exported {path} and {differential_csv_path(path).name}", 8000)
        return path

    def export_pdf(self, path: str | None = None, fields: dict | None = None) -> str | None:
        from .report_pdf import write_pdf_report

        if fields is None:
            remembered = {"Laboratory": self.settings.value("report/Laboratory", ""),
                          "Operator": self.settings.value("review/operator", "")}
            dialog = ExportReportDialog(self, remembered)
            if not dialog.exec():
                return None
            fields = dialog.values()
            self.settings.setValue("report/Laboratory", fields["Laboratory"])
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export PDF report", "wbc_report.pdf", "PDF (*.pdf)")
            if not path:
                return None
        card = self.state.classifier.card if self.state.classifier else None
        write_pdf_report(path, self.state.session, fields, card, self.state.cells.thumbnails, self.referral_rules())
        self.statusBar().showMessage(f"Report written to {path}", 8000)
        return path

    def sort_into_folders(self, target: str | None = None, move: bool | None = None) -> None:
        items = [(it.path, it.final_label) for it in self.state.session.items if it.error is None and it.final_label]
        if target is None or move is None:
            dialog = SortDialog(self, len(items))
            if not dialog.exec():
                return
            target, move = dialog.target.text().strip(), dialog.move.isChecked()
        worker = GeneratorWorker(lambda cancel: sort_into_folders(items, target, move=move, cancel=cancel))
        manifest = []

        def on_progress(p):
            self._job_total, self._job_done = p.total, p.done
            self.progress.setRange(0, p.total)
            self._show_progress("Filing")
            manifest[:] = [p.info.get("manifest")]

        worker.yielded.connect(on_progress)
        if move:
            worker.returned.connect(lambda _: self.statusBar().showMessage(
                f"Moved files; the manifest {manifest[0] if manifest else ''} can undo it.", 15000))
        self._begin_job(worker, "sort", "Filing")

    def undo_sort(self, manifest: str | None = None) -> None:
        if manifest is None:
            manifest, _ = QFileDialog.getOpenFileName(self, "Manifest of the move to undo", "", "Sort manifests (sorted_*.csv)")
            if not manifest:
                return
        worker = GeneratorWorker(lambda cancel: undo_moves(manifest))

        def on_progress(p):
            self._job_total, self._job_done = p.total, p.done
            self.progress.setRange(0, max(p.total, 1))
            self._show_progress("Restoring")

        worker.yielded.connect(on_progress)
        self._begin_job(worker, "undo", "Restoring")
