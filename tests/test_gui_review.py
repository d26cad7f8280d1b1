"""The classification screen driven for real (offscreen) with pytest-qt."""

import csv
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, QSize, Qt

from conftest import heavy_modules_after, open_window
from synth import cell_image, make_labeled_folder

pytest.importorskip("pytestqt")

from wbc_desktop.engine.review.session import UNUSABLE, ReviewSession, autosave_path  # noqa: E402
from wbc_desktop.gui.cell_model import ITEM_ROLE  # noqa: E402


@pytest.fixture
def slide(tmp_path):
    """A flat folder of cells as a lab would have it, plus one broken file."""
    folder = tmp_path / "slide 42"
    src = make_labeled_folder(tmp_path / "labelled", per_class=6, seed=9)
    folder.mkdir()
    for f in sorted(src.rglob("*.png")):
        f.rename(folder / f.name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return folder


_window = open_window


def _classify(qtbot, window, paths):
    with qtbot.waitSignal(window.job_finished, timeout=60000):
        window.open_paths(paths)


def test_main_window_appears_without_tensorflow():
    assert heavy_modules_after(
        "from PySide6.QtWidgets import QApplication; app=QApplication([]);"
        "from wbc_desktop.gui.main_window import MainWindow; w=MainWindow(); w.show(); app.processEvents()") == []


def test_classify_folder_review_with_keys_and_count(qtbot, settings, slide, trained_model_path):
    window = _window(qtbot, settings, trained_model_path)
    _classify(qtbot, window, [str(slide)])
    session = window.cells.session
    assert len(session.items) == 19
    broken = session.get(str(slide / "broken.jpg"))
    assert broken.error and broken.label is None
    assert window.review.counts.table.rowCount() == 3 + 2  # the classes, NRBC per 100 WBC, platelets seen
    assert window.review.counts.last["total"] == 18 and window.review.counts.last["errors"] == 1
    # every grid cell is wide enough for the longest line any cell can show
    metrics, model = window.review.grid.fontMetrics(), window.review.grid_model
    longest = max(metrics.horizontalAdvance(f"{c} 100%") for c in session.classes)
    assert all(model.data(model.index(r, 0), Qt.SizeHintRole).width() > longest for r in range(model.rowCount()))

    # review from the keyboard in the grid
    window.review.grid.setFocus()
    row = next(i for i, it in enumerate(session.items) if it.error is None)
    window.review.select_row(row)
    assert window.review.current_row() == row
    qtbot.keyClick(window.review.grid, Qt.Key_2)
    assert session.items[row].reviewed == session.classes[1]
    assert "Reviewed" in window.review.detail.title.text()
    qtbot.keyClick(window.review.grid, Qt.Key_0)
    assert session.items[row].reviewed == UNUSABLE
    assert window.review.counts.last["unusable"] == 1 and window.review.counts.last["total"] == 17
    qtbot.keyClick(window.review.grid, Qt.Key_Return)
    assert session.items[row].reviewed == session.items[row].label

    # flag everything, then walk the flagged cells with N
    window.review.threshold.setValue(99)
    flagged_before = window.review.counts.last["flagged"]
    assert flagged_before >= 17
    qtbot.keyClick(window.review.grid, Qt.Key_N)
    nxt = window.review.current_row()
    assert nxt != row and session.items[nxt].is_flagged(0.99)
    qtbot.keyClick(window.review.grid, Qt.Key_1)
    assert session.items[nxt].reviewed == session.classes[0]
    assert window.review.counts.last["flagged"] == flagged_before - 1

    # a note typed in the note field must not review anything
    window.review.detail.note.setFocus()
    qtbot.keyClicks(window.review.detail.note, "3 lobes")
    qtbot.keyClick(window.review.detail.note, Qt.Key_Return)
    assert session.items[nxt].note == "3 lobes" and session.items[nxt].reviewed == session.classes[0]

    # filters
    window.review.filter_combo.setCurrentIndex(window.review.filter_combo.findText("Reviewed"))
    window.review._filter_changed(window.review.filter_combo.currentIndex())
    assert window.review.proxy.rowCount() == 2
    window.review.filter_combo.setCurrentIndex(window.review.filter_combo.findText("Unreadable files"))
    window.review._filter_changed(window.review.filter_combo.currentIndex())
    assert window.review.proxy.rowCount() == 1


def test_cancel_keeps_results_and_stays_responsive(qtbot, settings, tmp_path, trained_model_path):
    folder = tmp_path / "big"
    folder.mkdir()
    rng = np.random.default_rng(0)
    big = cell_image("lymphocyte", rng, 640)  # large files: decoding takes a while
    for i in range(600):
        big.save(folder / f"c{i:04d}.jpg", quality=95)
    window = _window(qtbot, settings, trained_model_path)
    window.open_paths([str(folder)])
    qtbot.waitUntil(lambda: len(window.cells.session.items) >= 64, timeout=60000)
    assert window.state.jobs.busy
    worst = 0.0
    for _ in range(5):  # the event loop keeps turning while the worker runs
        t = time.perf_counter()
        qtbot.wait(1)
        worst = max(worst, time.perf_counter() - t)
    t0 = time.monotonic()
    with qtbot.waitSignal(window.job_finished, timeout=5000):
        window.cancel_button.click()
    assert time.monotonic() - t0 < 2.0
    kept = len(window.cells.session.items)
    assert 64 <= kept < 600
    assert worst < 0.5
    assert "cancelled" in window.statusBar().currentMessage()


def test_autosave_and_reopen_restores_review(qtbot, settings, slide, trained_model_path):
    window = _window(qtbot, settings, trained_model_path)
    _classify(qtbot, window, [str(slide)])
    window.review.select_row(3)
    assert window.review.current_row() == 3
    window.review.review_current("eosinophil")
    window.review.detail.note.setText("check smear")
    window.review.detail.note.editingFinished.emit()
    window.close()
    saved = ReviewSession.load(autosave_path([str(slide)]))
    assert saved.items[3].reviewed == "eosinophil" and saved.items[3].note == "check smear"

    again = _window(qtbot, settings, trained_model_path)
    again.open_paths([str(slide)])  # restored, not classified again
    assert not again.state.jobs.busy  # restored, not classified again
    assert again.cells.session.items[3].reviewed == "eosinophil"
    assert str(slide) in again.recent_folders()


def test_sort_into_folders_copy_move_conflict_undo(qtbot, settings, slide, tmp_path, trained_model_path):
    window = _window(qtbot, settings, trained_model_path)
    _classify(qtbot, window, [str(slide)])
    row = next(i for i, it in enumerate(window.cells.session.items) if it.error is None)
    first = window.cells.session.items[row]
    window.cells.session.set_review(row, UNUSABLE, "T. Tester")
    target = tmp_path / "sorted"
    (target / "unusable").mkdir(parents=True)
    (target / "unusable" / first.path.split("/")[-1]).write_bytes(b"older")
    with qtbot.waitSignal(window.job_finished, timeout=30000):
        window.sort_into_folders(str(target), move=False)
    copies = sorted(p.name for p in target.rglob("*.png"))
    assert len(copies) == 19  # 18 copies and the earlier file, which is kept
    assert (target / "unusable" / first.path.split("/")[-1]).read_bytes() == b"older"
    assert all((slide / n).exists() for n in [first.path.split("/")[-1]])

    moved_to = tmp_path / "moved"
    with qtbot.waitSignal(window.job_finished, timeout=30000):
        window.sort_into_folders(str(moved_to), move=True)
    assert not list(slide.glob("*.png"))
    manifest = next(moved_to.glob("sorted_*.csv"))
    with qtbot.waitSignal(window.job_finished, timeout=30000):
        window.undo_sort(str(manifest))
    assert len(list(slide.glob("*.png"))) == 18


def test_export_csv_and_pdf(qtbot, settings, slide, tmp_path, trained_model_path, monkeypatch):
    window = _window(qtbot, settings, trained_model_path)
    _classify(qtbot, window, [str(slide)])
    window.cells.session.set_review(1, "lymphocyte", "T. Tester")
    window.cells.session.items[1].note = "atypical?"
    out = tmp_path / "out.csv"
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    window.export_csv()
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 19
    assert rows[1]["reviewed"] == "lymphocyte" and rows[1]["final"] == "lymphocyte" and rows[1]["note"] == "atypical?"
    assert rows[1]["model"] == "synthetic" and {"prob_neutrophil", "timestamp", "error"} <= set(rows[0])
    assert any(r["error"] for r in rows)

    window.review.threshold.setValue(99)
    pdf = tmp_path / "report.pdf"
    window.export_pdf(str(pdf), {"Laboratory": "Haematology Lab 3", "Sample ID": "S-0042"})
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 5000
    if subprocess.run(["which", "pdftotext"], capture_output=True).returncode == 0:
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout.replace("\ufb00", "ff")
        assert "Haematology Lab 3" in text and "S-0042" in text and "Differential count" in text
        assert "Total WBC" in text and "Flagged cells" in text


def test_adapt_to_stain_classifies_with_an_adapted_copy(qtbot, settings, tmp_path, tiny_model_path):
    from wbc_desktop.engine.data.preprocess import load_square
    from wbc_desktop.engine.infer.classify import Classifier

    folder = tmp_path / "other lab"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for i in range(36):
        cell_image("neutrophil", rng, 40).save(folder / f"{i:02d}.png")
    window = _window(qtbot, settings, tiny_model_path)
    window.adapt_box.setChecked(True)
    _classify(qtbot, window, [str(folder)])
    assert len(window.cells.session.items) == 36
    # what the app shows is the adapted copy's answer, not the base model's
    base = Classifier.open(tiny_model_path)
    files = sorted(folder.iterdir())
    adapted = base.adapted_to(files)
    pixels = load_square(files[0], base.size)[None]
    shown = np.asarray(window.cells.session.get(str(files[0])).probs)
    np.testing.assert_allclose(shown, adapted.predict_arrays(pixels, tta=True)[0], atol=1e-4)
    assert not np.allclose(shown, base.predict_arrays(pixels, tta=True)[0], atol=1e-3)
    assert window.cells.session.model_name == adapted.name == "tiny test model (adapted to 36 cells)"
    window.close()
    assert QSettings(settings.fileName(), QSettings.IniFormat).value("classify/adapt") in (True, "true")


def test_view_averaging_follows_the_model_card_and_can_be_switched(qtbot, settings, slide, tmp_path,
                                                                    trained_model_path):
    import shutil

    from wbc_desktop.engine.infer.classify import Classifier
    from wbc_desktop.engine.data.preprocess import load_square
    from wbc_desktop.engine.models.modelfile import update_card

    one_view = shutil.copy(trained_model_path, tmp_path / "one_view.keras")
    update_card(one_view, test_views=1)
    window = _window(qtbot, settings, trained_model_path)
    assert window.tta_box.isChecked()  # a card that does not say: four views, as models were chosen before
    with qtbot.waitSignal(window.model_ready, timeout=60000):
        window.load_model(one_view)
    assert not window.tta_box.isChecked() and "one view by default" in window.tta_box.toolTip()
    clf = Classifier.open(one_view)
    cell = next(p for p in sorted(slide.iterdir()) if p.name != "broken.jpg")
    pixels = load_square(cell, clf.size)[None]
    _classify(qtbot, window, [str(slide)])
    for tta in (False, True):
        window.tta_box.setChecked(tta)
        with qtbot.waitSignal(window.job_finished, timeout=60000):
            window.start_classification()
        shown = np.asarray(window.cells.session.get(str(cell)).probs)
        np.testing.assert_allclose(shown, clf.predict_arrays(pixels, tta=tta)[0], atol=1e-4)
        # the session, its exports and the report name the views when they are not the model's default
        assert window.cells.session.model_name == clf.described(tta)
    assert window.cells.session.model_name.endswith("(4 views, not its default)")
    window.close()


def test_closing_mid_job_stops_workers_and_saves(qtbot, settings, tmp_path, trained_model_path):
    folder = tmp_path / "many"
    folder.mkdir()
    big = cell_image("neutrophil", np.random.default_rng(5), 640)
    for i in range(300):
        big.save(folder / f"c{i:03d}.jpg", quality=95)
    window = _window(qtbot, settings, trained_model_path)
    window.open_paths([str(folder)])
    qtbot.waitUntil(lambda: len(window.cells.session.items) >= 32, timeout=60000)
    workers = list(window.state.jobs.running)
    t0 = time.monotonic()
    window.close()
    assert time.monotonic() - t0 < 10
    assert workers and not any(w.is_running() for w in workers)
    saved = ReviewSession.load(autosave_path([str(folder)]))
    assert 32 <= len(saved.items) < 300


def test_file_order_by_default_and_confidence_sort(qtbot, settings, slide, trained_model_path):
    window = _window(qtbot, settings, trained_model_path)
    _classify(qtbot, window, [str(slide)])
    names = [window.review.proxy.index(r, 0).data() for r in range(window.review.proxy.rowCount())]
    assert names == sorted(names)
    window.review.sort_combo.setCurrentIndex(1)
    window.review._sort_changed(1)
    conf = [window.review.proxy.index(r, 0).data(ITEM_ROLE).confidence for r in range(window.review.proxy.rowCount())
            if window.review.proxy.index(r, 0).data(ITEM_ROLE).error is None]
    assert conf == sorted(conf)
    # the table shows each cell whole and small beside its name (a drawn pixmap showed a 28 px slice of it)
    window.review.view_combo.setCurrentIndex(1)
    window.review._view_changed(1)
    table = window.review.table
    row = next(r for r in range(table.model().rowCount()) if table.model().index(r, 0).data(ITEM_ROLE).error is None)
    icon = table.model().index(row, 0).data(Qt.DecorationRole)
    assert table.isVisible() and icon.actualSize(table.iconSize()) == QSize(24, 24)
    assert table.rowHeight(0) >= table.iconSize().height()


def test_a_second_move_follows_the_files_and_failures_are_shown(qtbot, settings, slide, tmp_path, trained_model_path,
                                                                 monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    window = _window(qtbot, settings, trained_model_path)
    _classify(qtbot, window, [str(slide)])
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[1:]))
    for target in ("first", "second"):
        with qtbot.waitSignal(window.job_finished, timeout=30000):
            window.sort_into_folders(str(tmp_path / target), move=True)
        assert "18 of 18 done" in window.statusBar().currentMessage() and not warned
    assert len(list((tmp_path / "second").rglob("*.png"))) == 18 and not list((tmp_path / "first").rglob("*.png"))
    assert all(it.path.startswith(str(tmp_path / "second")) for it in window.cells.session.items if not it.error)
    gone = next(it for it in window.cells.session.items if not it.error)
    Path(gone.path).unlink()
    with qtbot.waitSignal(window.job_finished, timeout=30000):
        window.sort_into_folders(str(tmp_path / "copies"), move=False)
    assert "17 of 18 done, 1 failed" in window.statusBar().currentMessage()
    assert warned and "1 file failed" in warned[0][0] and Path(gone.path).name in warned[0][1]


def test_the_window_fits_a_small_lab_screen_and_the_cell_follows_the_panel(qtbot, settings, slide):
    """Many lab PCs have 1366x768 screens: the window must fit one with the
    shipped model's eight classes, the cell panel's parts must not overlap
    (they scroll), and the cell grows when the window does."""
    from wbc_desktop import paths

    window = _window(qtbot, settings, paths.default_model_path())
    assert window.height() <= window.screen().availableGeometry().height()  # first start: no saved geometry
    _classify(qtbot, window, [str(slide)])
    window.review.select_row(next(i for i, it in enumerate(window.cells.session.items) if it.error is None))
    hint = window.minimumSizeHint()
    assert hint.width() <= 1366 and hint.height() <= 700, hint
    detail = window.review.detail
    parts = [detail.image, detail.title, detail.bars, detail.info, detail.review_box, detail.note]
    sides = []
    for size in ((1366, 700), (1900, 1150)):
        window.resize(*size)
        qtbot.wait(200)
        boxes = [p.geometry() for p in parts]
        assert not any(a.intersects(b) for i, a in enumerate(boxes) for b in boxes[i + 1:]), boxes
        assert window.review.view_combo.isVisible()  # the toolbar's last box, not folded into its overflow menu
        sides.append(detail.image.pixmap().width())
    assert sides[1] > sides[0] * 1.2, sides
