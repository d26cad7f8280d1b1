"""The app's structure, driven for real: one owner of the state, the worker
contract, declarative action states, the operator and the audit trail."""

import subprocess
import time

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QInputDialog, QMessageBox

from conftest import heavy_modules_after, open_window
from synth import cell_image, make_labeled_folder

pytest.importorskip("pytestqt")

from wbc_desktop.engine.progress import Cancelled, Progress  # noqa: E402
from wbc_desktop.engine.review.session import ReviewItem, ReviewSession  # noqa: E402
from wbc_desktop.gui.workers import GeneratorWorker, Worker  # noqa: E402


_window = open_window


def _big_folder(tmp_path, n=400):
    folder = tmp_path / "big"
    folder.mkdir()
    big = cell_image("lymphocyte", np.random.default_rng(0), 640)  # large files: decoding takes a while
    for i in range(n):
        big.save(folder / f"c{i:04d}.jpg", quality=95)
    return folder


class Recorder:
    def __init__(self, worker: Worker):
        self.events = []
        for name in ("returned", "errored", "aborted"):
            getattr(worker, name).connect(lambda *a, n=name: self.events.append((n, a)))


def test_worker_errored_carries_the_exception_and_abort_is_not_an_error(qtbot):
    def fails(cancel, emit):
        raise ValueError("bad data in cell_7.png")

    worker = Worker(fails)
    rec = Recorder(worker)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    [(name, (exc,))] = rec.events
    assert name == "errored" and isinstance(exc, ValueError) and "cell_7.png" in str(exc)

    def stops(cancel, emit):
        raise Cancelled()

    worker = Worker(stops)
    rec = Recorder(worker)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    assert rec.events == [("aborted", ())]

    def endless(cancel):
        while True:
            yield 1

    worker = GeneratorWorker(endless)
    rec = Recorder(worker)
    worker.yielded.connect(lambda _: worker.abort())
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    assert rec.events == [("aborted", ())]  # never 'returned' after an abort


def test_open_session_is_refused_while_a_classification_runs(qtbot, settings, tmp_path, trained_model_path,
                                                              monkeypatch):
    other = ReviewSession([str(tmp_path / "other")], ["neutrophil"], items=[ReviewItem("/x/other.png", "neutrophil", 0.9)])
    other.save(tmp_path / "other.json")
    folder = _big_folder(tmp_path)
    window = _window(qtbot, settings, trained_model_path)
    told = []
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: told.append(a[2]))
    window.open_paths([str(folder)])
    qtbot.waitUntil(lambda: len(window.cells.session.items) >= 32, timeout=60000)
    assert window.state.jobs.busy
    assert not window.act_open_session.isEnabled() and not window.act_open.isEnabled()
    assert window.act_cancel.isEnabled()
    window.open_session(str(tmp_path / "other.json"))
    assert told and "Wait for the running job" in told[0]
    with qtbot.waitSignal(window.job_finished, timeout=60000):
        window.cancel_job()
    session = window.cells.session
    assert session.sources == [str(folder)] and all(it.path.startswith(str(folder)) for it in session.items)
    assert window.act_open_session.isEnabled()
    window.open_session(str(tmp_path / "other.json"))
    assert [it.path for it in window.cells.session.items] == ["/x/other.png"]


def test_a_loaded_model_is_warmed_up_in_the_background(qtbot, settings, tiny_model_path):
    window = _window(qtbot, settings, tiny_model_path)  # returns once the model is usable
    qtbot.waitUntil(lambda: window.state.classifier.warm and "prepare model" not in window.state.jobs.running.values(),
                    timeout=60000)
    assert not window.state.jobs.busy  # it never held up the app's exclusive jobs


def test_every_action_declares_its_states(qtbot, settings, trained_model_path, tmp_path):
    window = _window(qtbot, settings, trained_model_path)
    actions = [getattr(window, n) for n in dir(window) if n.startswith("act_")]
    assert len(actions) >= 15
    for a in actions:
        window.action_states.needs(a)  # raises KeyError for an action nobody declared
    assert not window.act_csv.isEnabled() and not window.act_classify.isEnabled()  # no cells, no folder
    slide = make_labeled_folder(tmp_path / "s", per_class=3, seed=2)
    with qtbot.waitSignal(window.job_finished, timeout=60000):
        window.open_paths([str(slide)])
    assert window.act_csv.isEnabled() and window.act_classify.isEnabled() and not window.act_cancel.isEnabled()
    assert not window.act_accept.isEnabled()
    window.review.select_row(0)
    assert window.act_accept.isEnabled()


def test_operator_is_asked_once_and_every_review_is_audited(qtbot, tmp_path, trained_model_path, monkeypatch):
    settings = QSettings(str(tmp_path / "fresh.ini"), QSettings.IniFormat)
    window = _window(qtbot, settings, trained_model_path)
    slide = make_labeled_folder(tmp_path / "s", per_class=3, seed=2)
    with qtbot.waitSignal(window.job_finished, timeout=60000):
        window.open_paths([str(slide)])
    asked = []
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: (asked.append(1), ("", False))[1])
    window.review.grid.setFocus()
    window.review.select_row(0)
    qtbot.keyClick(window.review.grid, Qt.Key_1)
    session = window.cells.session
    assert session.items[0].reviewed is None and session.audit == []  # no name, no change
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: (asked.append(1), ("R. Review", True))[1])
    qtbot.keyClick(window.review.grid, Qt.Key_1)
    window.review.select_row(1)
    qtbot.keyClick(window.review.grid, Qt.Key_0)
    assert len(asked) == 2  # declined once, then given once and kept
    assert settings.value("review/operator") == "R. Review"
    assert [(e["operator"], e["new"]) for e in session.audit] == [("R. Review", session.classes[0]),
                                                                  ("R. Review", "unusable")]
    pdf = tmp_path / "r.pdf"
    window.export_pdf(str(pdf), {"Laboratory": "Lab 3"})
    if subprocess.run(["which", "pdftotext"], capture_output=True).returncode == 0:
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
        text = " ".join(text.replace("\ufb00", "ff").split())  # a ligature, and lines as the PDF wraps them
        changed = session.changed_from_model()
        assert "Reviewed by: R. Review" in text and f"{changed} labels differ from the model" in text
        assert "NRBC per 100 WBC" in text and "Platelets seen" in text and "leukocytes only" in text


def test_count_panel_follows_the_conventions(qtbot, settings, trained_model_path):
    window = _window(qtbot, settings, trained_model_path)
    classes = ["neutrophil", "ig", "erythroblast", "platelet"]
    labels = ["neutrophil"] * 3 + ["ig", "erythroblast", "platelet", "platelet"]
    session = ReviewSession(["/slide"], classes, items=[ReviewItem(f"/{i}.png", c, 0.95) for i, c in enumerate(labels)])
    window.state.set_session(session, ["/slide"])
    counts = window.review.counts
    assert counts.last["total"] == 4 and counts.last["percent"]["ig"] == 25.0
    rows = {counts.table.item(r, 0).text(): counts.table.item(r, 1).text() for r in range(counts.table.rowCount())}
    assert rows == {"neutrophil": "3", "ig": "1", "NRBC / 100 WBC": "1", "Platelets seen": "2"}
    assert "Total WBC: <b>4</b>" in counts.summary.text()
    assert counts.referral.isVisibleTo(window) and "ig present (1)" in counts.referral.text()


def test_cancelling_training_screen_jobs_says_cancelled_not_failed(qtbot, settings, trained_model_path, tmp_path,
                                                                   monkeypatch):
    window = _window(qtbot, settings, trained_model_path)
    page = window.ensure_train_page()
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[1:]))
    lab = _big_folder(tmp_path, n=300)
    (lab / "lymphocyte").mkdir()
    for f in list(lab.glob("*.jpg")):
        f.rename(lab / "lymphocyte" / f.name)
    page.form.data_edit.setText(str(lab))
    with qtbot.waitSignal(window.state.jobs.busy_changed, timeout=5000):
        page.check_dataset()
    qtbot.waitUntil(lambda: page.progress.value() > 0, timeout=30000)
    with qtbot.waitSignal(window.job_finished, timeout=30000):
        page.cancel_button.click()
    assert "cancelled" in page.status.text().lower() and not warned

    window.state.set_session(ReviewSession(["/s"], ["neutrophil"], items=[
        ReviewItem(str(p), "neutrophil", 0.9, reviewed="neutrophil") for p in sorted((lab / "lymphocyte").iterdir())]),
        ["/s"])

    def slow_copy(items, target, cancel=None, **_):
        for i, _item in enumerate(items):
            if cancel.cancelled:
                return
            time.sleep(0.02)
            yield Progress("sort", i + 1, len(items), "")

    monkeypatch.setattr("wbc_desktop.engine.review.sorting.sort_into_folders", slow_copy)
    page.form.data_edit.setText("")
    with qtbot.waitSignal(window.state.jobs.busy_changed, timeout=5000):
        page.use_reviewed_cells()
    with qtbot.waitSignal(window.job_finished, timeout=30000):
        page.cancel_button.click()
    assert page.form.data_edit.text() == "" and "ready as training data" not in page.status.text()
    assert "cancelled" in page.status.text().lower() and not warned


def test_fine_tune_screen_keeps_tensorflow_off_the_gui_thread():
    assert heavy_modules_after(
        "from PySide6.QtWidgets import QApplication; app=QApplication([]);"
        "from wbc_desktop.gui.main_window import MainWindow; w=MainWindow(); w.show();"
        "page=w.ensure_train_page(); page.form.config(); app.processEvents()") == []


def test_form_round_trips_every_setting(qtbot):
    from dataclasses import replace

    from wbc_desktop.engine.data.augment_config import AugmentConfig
    from wbc_desktop.engine.train.config import TrainConfig
    from wbc_desktop.gui.train_form import SCRATCH_COMPACT, TrainForm

    form = TrainForm()
    qtbot.addWidget(form)
    form.base.setCurrentIndex(form.base.findData(SCRATCH_COMPACT))
    cfg = replace(TrainConfig(), epochs=17, batch_size=48, lr=0.0007, val_frac=0.2, test_frac=0.1, group_by=r"^(s\d+)",
                  seed=7, class_weighting=False, patience=9, norm="group", width=24, colour_space="lab",
                  label_smoothing=0.1, augment=AugmentConfig.from_strength(0.7))
    form.set_config(cfg)
    assert form.config() == cfg
