"""The main window's file actions: export CSV and PDF, sort into class
folders (and undo a move), all written atomically or on a worker."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QMessageBox

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
        items = [(it.path, it.final_label, it.field_box) for it in self.state.session.items
                 if it.error is None and it.final_label]
        if target is None or move is None:
            dialog = SortDialog(self, len(items))
            if not dialog.exec():
                return
            target, move = dialog.target.text().strip(), dialog.move.isChecked()
        worker = GeneratorWorker(lambda cancel: sort_into_folders(items, target, move=move, cancel=cancel))
        self._run_file_job(worker, "sort", "Filing", follow=(lambda info: (info["source"], info["destination"]))
                           if move else None)

    def undo_sort(self, manifest: str | None = None) -> None:
        if manifest is None:
            manifest, _ = QFileDialog.getOpenFileName(self, "Manifest of the move to undo", "", "Sort manifests (sorted_*.csv)")
            if not manifest:
                return
        worker = GeneratorWorker(lambda cancel: undo_moves(manifest))
        self._run_file_job(worker, "undo", "Restoring", follow=lambda info: (info["destination"], info["source"]))

    def _run_file_job(self, worker, name: str, verb: str, follow) -> None:
        """Progress, the review following moved files (``follow`` gives a
        done step's (old, new) path), and every failure shown at the end."""
        failures: list[str] = []
        manifest: list[str] = []

        def on_progress(p):
            self._job_total, self._job_done = p.total, p.done
            self.progress.setRange(0, max(p.total, 1))
            self._show_progress(verb)
            if p.info.get("manifest"):
                manifest[:] = [p.info["manifest"]]
            if p.info.get("error"):
                failures.append(f"{p.info['source']}: {p.info['error']}")
            elif follow is not None:
                row = self.state.session.relocate(*follow(p.info))
                if row is not None:
                    self.state.cells.row_changed(row)

        def on_finished(_name, _worker):
            if _worker is not worker:
                return
            self.state.jobs.job_finished.disconnect(on_finished)
            done = self._job_done - len(failures)
            text = f"{verb}: {done} of {self._job_total} done" + (f", {len(failures)} failed" if failures else "")
            if manifest and name == "sort":
                text += f"; the list of what was done is {manifest[0]}"
            self.statusBar().showMessage(text, 20000)
            if failures:
                shown = "\n".join(failures[:20]) + (f"\n… and {len(failures) - 20} more" if len(failures) > 20 else "")
                QMessageBox.warning(self, f"{verb}: {len(failures)} file{'s' if len(failures) != 1 else ''} failed", shown)

        worker.yielded.connect(on_progress)
        self.state.jobs.job_finished.connect(on_finished)
        self.run_job(worker, name, verb)
