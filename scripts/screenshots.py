"""Screenshots of the main window in its main states (offscreen), for the
README and for a person to look at after any change to a screen.

    python scripts/screenshots.py --folder DIR [--model M] [--out docs/screenshots]
        [--train-folder DIR] [--unseen-folder DIR] [--calibrate-folder DIR] [--fields-folder DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", required=True)
    parser.add_argument("--model")
    parser.add_argument("--out", default="docs/screenshots")
    parser.add_argument("--train-folder", help="labelled folder for the fine-tune screen shots")
    parser.add_argument("--calibrate-folder", help="a labelled folder of another lab: its cells are opened as one "
                                                   "folder, the proposed ones labelled from their sub-folder, and the "
                                                   "model calibrated (Lab menu)")
    parser.add_argument("--fields-folder", help="a folder of field photos: one is shown with its white cells boxed")
    parser.add_argument("--unseen-folder", help="cells or photos of a lab the model never saw: shown with the "
                                                "folder warning above them")
    args = parser.parse_args()
    os.environ.setdefault("WBC_DATA_DIR", tempfile.mkdtemp(prefix="wbc-shots-"))

    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from wbc_desktop import paths
    from wbc_desktop.gui.dialogs import ExportReportDialog
    from wbc_desktop.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = QSettings(str(Path(os.environ["WBC_DATA_DIR"]) / "s.ini"), QSettings.IniFormat)
    settings.setValue("review/operator", "A. Technologist")
    window = MainWindow(settings)
    window.resize(1400, 880)
    window.show()

    def wait_for(signal, ms=120000):
        loop = QEventLoop()
        signal.connect(loop.quit)
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def shot(name):
        app.processEvents()
        window.grab().save(str(out / f"{name}.png"))
        print("wrote", out / f"{name}.png")

    shot("1_empty")
    window.load_model(args.model or paths.default_model_path())
    wait_for(window.model_ready)
    window.open_paths([args.folder])
    while len(window.cells.session.items) < 40 and window.state.jobs.busy:
        app.processEvents()
    settle = QEventLoop()
    QTimer.singleShot(500, settle.quit)  # the live count redraws at most every 400 ms
    settle.exec()
    shot("2_classifying")
    if window.state.jobs.busy:
        wait_for(window.job_finished)
    review = window.review
    review.select_row(0)
    shot("3_results_detail")
    review.threshold.setValue(90)
    review.goto_next_flagged()
    if review.current_row() is not None:
        review.review_current(window.cells.session.classes[0])
    review.goto_next_flagged()
    shot("4_review_flagged")
    review.view_combo.setCurrentIndex(1)
    review._view_changed(1)
    shot("5_table_view")
    dialog = ExportReportDialog(window, {"Laboratory": "Haematology lab"})
    dialog.show()
    app.processEvents()
    dialog.grab().save(str(out / "6_export_dialog.png"))
    pdf = window.export_pdf(str(out / "report.pdf"), {"Laboratory": "Haematology lab", "Sample ID": "S-001"})
    print("wrote", pdf)
    if args.train_folder:
        page = window.ensure_train_page()
        page.form.data_edit.setText(args.train_folder)
        page.form.apply_preset("Quick adapt: head only")
        page.form.epochs.setValue(4)
        page.form.name_edit.setText("Lab fine-tune")
        shot("7_finetune_setup")
        page.start_training()
        while len(page.curves.history) < 2 and window.state.jobs.busy:
            app.processEvents()
        shot("8_finetune_running")
        if window.state.jobs.busy:
            wait_for(page.training_finished, 900000)
        app.processEvents()
        shot("9_finetune_evaluation")
        page.tabs.setCurrentIndex(3)
        shot("10_models")
    if args.unseen_folder:
        open_in_grid(window, Path(args.unseen_folder), wait_for)
        shot("11_folder_warning")
    if args.calibrate_folder:
        calibration_shots(window, app, Path(args.calibrate_folder), shot, wait_for, out)
    if args.fields_folder:
        field_shot(window, Path(args.fields_folder), shot, wait_for)
    window.close()
    return 0



def open_in_grid(window, folder: Path, wait_for) -> None:
    """Classify ``folder`` on the review tab, shown as a grid, to the end."""
    window.tabs.setCurrentIndex(0)
    window.review.view_combo.setCurrentIndex(0)
    window.review._view_changed(0)
    window.open_paths([str(folder)])
    if window.state.jobs.busy:
        wait_for(window.job_finished)

def calibration_shots(window, app, labelled: Path, shot, wait_for, out: Path) -> None:
    import shutil

    from wbc_desktop.gui import calibration_flow

    flat = Path(tempfile.mkdtemp(prefix="wbc-lab-")) / labelled.name
    flat.mkdir()
    truth = {}
    for cls in sorted(d for d in labelled.iterdir() if d.is_dir()):
        for f in sorted(cls.iterdir())[:14]:
            name = f"{cls.name}_{f.name}"  # labs reuse file names across class folders
            shutil.copy(f, flat / name)
            truth[name] = cls.name
    open_in_grid(window, flat, wait_for)
    window.calibration.propose()
    shot("12_cells_to_label")
    session = window.cells.session
    for path in list(session.calibration_set):
        session.set_review(session.index_of(path), truth[Path(path).name], "A. Technologist")
    for cls in set(truth.values()):  # every labelled class needs three cells
        rows = [i for i, it in enumerate(session.items) if truth.get(Path(it.path).name) == cls]
        for i in rows:
            if sum(it.reviewed == cls for it in session.items) >= 3:
                break
            session.set_review(i, cls, "A. Technologist")

    def grab_and_accept(dialog):
        dialog.show()
        app.processEvents()
        dialog.grab().save(str(out / "13_calibration_result.png"))
        print("wrote", out / "13_calibration_result.png")
        return 1

    calibration_flow.CalibrationResultDialog.exec = grab_and_accept
    if window.calibration.calibrate():
        wait_for(window.calibration.applied, 300000)
        wait_for(window.model_ready)
        window.review.show_filter("all")
        shot("14_lab_model_in_use")


def field_shot(window, folder: Path, shot, wait_for) -> None:
    """A field photo under review: its second white cell selected and boxed in yellow."""
    open_in_grid(window, folder, wait_for)
    session = window.cells.session
    photo = max(dict.fromkeys(it.path for it in session.items if it.in_field),
                key=lambda p: len(session.cells_of(p)), default=None)
    if photo is not None:
        window.review.select_row(session.cells_of(photo)[min(1, len(session.cells_of(photo)) - 1)])
    shot("15_field_photo")


if __name__ == "__main__":
    sys.exit(main())

