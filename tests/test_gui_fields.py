"""Field photos in the app: every white cell a reviewable cell, shown in its
photo, counted once, listed per photo in the report, cut out when sorted."""

import csv
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from conftest import open_window
from synth import cell_image, field_image

pytest.importorskip("pytestqt")

from wbc_desktop.engine.review.export import write_review_csv  # noqa: E402
from wbc_desktop.gui.report_pdf import build_report_html  # noqa: E402

CELLS = [("neutrophil", 150, 120), ("lymphocyte", 420, 300), ("eosinophil", 560, 100), ("lymphocyte", 622, 400)]


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "camera"
    folder.mkdir()
    field_image(CELLS, seed=3)[0].save(folder / "field 1.jpg", quality=92)  # the last cell is cut by the edge
    field_image([], seed=4)[0].save(folder / "no cells.jpg", quality=92)
    cell_image("lymphocyte", np.random.default_rng(0), 64).save(folder / "crop.png")
    return folder


def test_field_photo_cells_are_reviewed_counted_and_reported(qtbot, settings, photos, trained_model_path, tmp_path):
    window = open_window(qtbot, settings, trained_model_path)
    with qtbot.waitSignal(window.job_finished, timeout=60000):
        window.open_paths([str(photos)])
    session = window.cells.session
    field = [it for it in session.items if it.in_field]
    assert [it.cell for it in field] == [0, 1, 2, 3] and len({it.key for it in field}) == 4
    assert [it.at_border for it in field] == [False, False, False, True]
    (crop,) = [it for it in session.items if it.path.endswith("crop.png")]
    assert not crop.in_field and crop.box is not None
    empty = session.get(str(photos / "no cells.jpg"))
    assert empty.error == "no white cell found"
    counts = window.review.counts.last
    assert counts["total"] + counts["unusable"] + counts["nrbc"] + counts["platelets_seen"] == 5  # 4 + the crop
    assert counts["no_white_cell"] == 1 and counts["errors"] == 0 and counts["at_border"] == 1
    assert "photos without a white cell 1" in window.review.counts.summary.text()
    assert all(it.key in window.cells.thumbnails for it in field)  # each thumbnail is its own cut-out

    # the selected cell is shown in its photo, boxed with the others
    row = session.index_of(field[1].key)
    window.review.select_row(row)
    detail = window.review.detail
    assert "White cell 2 of 4" in detail.info.text() and detail.photo_cells == field
    shown = detail.image.pixmap().toImage()
    assert shown.width() > shown.height()  # the 640x480 photo, not the square cut-out
    x, y, w, h = field[1].box
    factor = shown.width() / 640
    yellow = shown.pixelColor(int((x + w / 2) * factor), int(y * factor) + 1)  # on the top edge of its box
    assert yellow.red() > 230 and 180 < yellow.green() < 235 and yellow.blue() < 80
    window.grab().save(str(tmp_path / "field_review.png"))

    # review with the usual keys: only that cell changes, the audit names it
    window.review.grid.setFocus()
    qtbot.keyClick(window.review.grid, Qt.Key_3)
    assert session.items[row].reviewed == session.classes[2]
    assert [it.reviewed for it in field if it is not session.items[row]] == [None, None, None]
    assert session.audit[-1]["cell"] == 1

    # the report counts each photo's cells; the CSV has each cell's box
    html = build_report_html(session, {}, None, [])
    assert "Field photos (1 with white cells, 1 without)" in html and "field 1.jpg" in html
    out = tmp_path / "review.csv"
    write_review_csv(session, out)
    rows = [r for r in csv.DictReader(out.open()) if r["path"].endswith("field 1.jpg")]
    assert [r["cell"] for r in rows] == ["0", "1", "2", "3"] and rows[3]["at_border"] == "yes"
    assert [int(r["x"]) for r in rows] == [it.box[0] for it in field]

    # sorting cuts field cells out (the photo stays where it is) and copies crops
    target = tmp_path / "sorted"
    with qtbot.waitSignal(window.job_finished, timeout=60000):
        window.sort_into_folders(str(target), move=True)
    assert (photos / "field 1.jpg").exists()
    cut = sorted(p.name for p in target.rglob("field 1_x*.png"))
    assert len(cut) == 4
    assert not (photos / "crop.png").exists() and len(list(target.rglob("crop.png"))) == 1  # moved, as asked
    assert session.get(field[0].key).path == str(photos / "field 1.jpg")
    assert Path(session.get(crop.key).path).parent.parent == target


def test_image_mode_is_a_setting_the_classification_uses(qtbot, settings, photos, trained_model_path):
    window = open_window(qtbot, settings, trained_model_path)
    window.mode_actions["cells"].trigger()
    assert settings.value("classify/mode") == "cells" and window.image_mode() == "cells"
    with qtbot.waitSignal(window.job_finished, timeout=60000):
        window.open_paths([str(photos)])
    session = window.cells.session
    assert session.mode == "cells" and not any(it.in_field for it in session.items)
    assert len(session.items) == 3  # one cell per image, whatever it shows
    assert all(window.action_states.needs(a) for a in window.mode_actions.values())


def test_a_grey_file_is_said_to_be_grey_in_the_table_and_the_detail(qtbot, settings, trained_model_path, tmp_path):
    from wbc_desktop.engine.infer.modes import GREY_IMAGE

    folder = tmp_path / "monochrome camera"
    folder.mkdir()
    rng = np.random.default_rng(5)
    cell_image("lymphocyte", rng, 120).convert("L").save(folder / "grey.png")
    cell_image("neutrophil", rng, 120).save(folder / "colour.png")
    window = open_window(qtbot, settings, trained_model_path)
    with qtbot.waitSignal(window.job_finished, timeout=60000):
        window.open_paths([str(folder)])
    session = window.cells.session
    notes = {Path(it.path).name: window.cells.data(window.cells.index(session.index_of(it.key), 4))
             for it in session.items}
    assert notes == {"grey.png": GREY_IMAGE, "colour.png": ""}
    window.review.select_row(session.index_of(str(folder / "grey.png")))
    assert "A grey image: no stain colour to read" in window.review.detail.info.text()
    window.review.select_row(session.index_of(str(folder / "colour.png")))
    assert "no stain colour" not in window.review.detail.info.text()
    # the count says how many cells are grey, and so do the report and the differential CSV
    assert window.review.counts.last["grey"] == 1 and "of grey images (less sure) 1" in window.review.counts.summary.text()
    assert "1 cells come from grey images" in build_report_html(session, {}, None, [])
    from wbc_desktop.engine.review.export import write_differential_csv

    write_differential_csv(session, tmp_path / "differential.csv")
    rows = {r["class"]: r["count"] for r in csv.DictReader((tmp_path / "differential.csv").open())}
    assert rows["Cells of grey images (answers less sure)"] == "1"
    window.review.select_row(session.index_of(str(folder / "grey.png")))
    window.resize(1280, 800)
    window.grab().save(str(tmp_path / "grey_review.png"))
