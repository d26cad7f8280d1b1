"""The fine-tuning screen driven for real: validation, a short fine-tune with
live curves, cancel and resume, evaluation views, save, set active, classify."""

import shutil

import pytest
from PySide6.QtCore import QElapsedTimer, QTimer

from conftest import open_window
from synth import make_labeled_folder
from wbc_desktop.engine.models.registry import user_models_dir


@pytest.fixture
def window(qtbot, settings, trained_model_path):
    return open_window(qtbot, settings, trained_model_path)


class LoopLatency:
    """Worst gap between ticks of a 20 ms timer: how long the GUI froze."""

    def __init__(self):
        self.clock = QElapsedTimer()
        self.worst = 0
        self.timer = QTimer(interval=20)
        self.timer.timeout.connect(self._tick)

    def start(self):
        self.clock.start()
        self.timer.start()

    def _tick(self):
        self.worst = max(self.worst, self.clock.restart())

    def stop(self):
        self.timer.stop()
        return self.worst


def test_settings_are_validated_before_start(window, tmp_path):
    page = window.ensure_train_page()
    page.form.data_edit.setText("")
    assert "choose a training-data folder" in page.form.validate()[0]
    page.form.data_edit.setText(str(tmp_path / "nope"))
    assert "does not exist" in page.form.validate()[0]
    page.form.data_edit.setText(str(tmp_path))
    page.form.group_by.setText("(")
    page.form.base.setCurrentIndex(page.form.base.findData("compact:none"))
    page.form.freeze.setCurrentText("conv2")
    problems = " ".join(page.form.validate())
    assert "regular expression" in problems and "from scratch cannot keep frozen stages" in problems


def test_finetune_cancel_resume_evaluate_save_and_classify(qtbot, window, tmp_path, trained_model_path):
    base = user_models_dir() / "synthetic base.keras"
    shutil.copy(trained_model_path, base)
    lab = make_labeled_folder(tmp_path / "lab data", per_class=24, seed=7)
    page = window.ensure_train_page()
    page.form.refresh_bases()
    page.form.base.setCurrentIndex(page.form.base.findData(str(base)))
    assert page.form.img_size.value() == 40 and not page.form.img_size.isEnabled()
    page.form.apply_preset("Full fine-tune")
    page.form.epochs.setValue(6)
    page.form.patience.setValue(6)
    page.form.batch.setValue(16)
    page.form.data_edit.setText(str(lab))
    page.form.name_edit.setText("Lab 7 cells")
    assert page.form.validate() == []

    loss_axes, accuracy_axes = page.curves.axes["loss"], page.curves.axes["accuracy"]
    assert loss_axes.get_xlim() == (1, 5) and accuracy_axes.get_ylim() == (0, 1.02)  # not matplotlib's empty +-0.05
    latency = LoopLatency()
    latency.start()
    page.start_training()
    qtbot.waitUntil(lambda: len(page.curves.history) >= 1, timeout=120000)
    with qtbot.waitSignal(page.training_finished, timeout=60000):
        page.cancel_button.click()
    assert "Cancelled" in page.status.text()
    done_before = len(page.curves.history)
    assert 1 <= done_before < 6
    qtbot.waitUntil(lambda: page.resume_button.isEnabled(), timeout=5000)

    with qtbot.waitSignal(page.training_finished, timeout=180000) as finished:
        page.resume_button.click()
    worst = latency.stop()
    outcome = finished.args[0]
    assert outcome is not None
    epochs = [h["epoch"] for h in outcome.result.history]
    assert epochs[:done_before] == list(range(1, done_before + 1)) and len(epochs) == 6
    assert len(page.curves.history) == 6
    assert loss_axes.get_xlim()[1] >= 6 and loss_axes.get_ylim()[0] == 0 and accuracy_axes.get_ylim() == (0, 1.02)
    assert page.eval_table.rowCount() == 3
    assert "Base model on the same test images" in page.eval_summary.text()
    assert not page.confusion.pixmap().isNull() and not page.gallery.pixmap().isNull()
    qtbot.wait(100)
    for figure in (page.confusion, page.gallery):  # each as large as its place on the page allows
        shown, room = figure.pixmap().size(), figure.size()
        assert shown.width() <= room.width() and shown.height() <= room.height()
        assert max(shown.width() - room.width(), shown.height() - room.height()) >= -6, (shown, room)
    print(f"worst GUI event-loop gap during training: {worst} ms")
    assert worst < 3000  # a generous bound: it catches a frozen GUI, not a slow machine

    with qtbot.waitSignal(window.model_ready, timeout=60000):
        saved = page.save_model(activate=True)
    assert saved.exists() and window.classifier.name == "Lab 7 cells"
    assert any(e.card["name"] == "Lab 7 cells" for e in page.models.entries)
    assert "test_metrics" in window.classifier.card and "base_model_test_metrics" in window.classifier.card

    slide = tmp_path / "new slide"
    shutil.copytree(lab / "eosinophil", slide)
    with qtbot.waitSignal(window.job_finished, timeout=60000):
        window.open_paths([str(slide)])
    session = window.cells.session
    assert session.model_name == "Lab 7 cells" and len(session.items) == 24
    eos = sum(it.label == "eosinophil" for it in session.items)
    assert eos >= 18  # the fine-tuned model recognises the lab's cells


def test_reviewed_cells_become_training_data(qtbot, window, tmp_path):
    slide = make_labeled_folder(tmp_path / "s", per_class=4, seed=3)
    with qtbot.waitSignal(window.job_finished, timeout=60000):
        window.open_paths([str(slide)])
    session = window.cells.session
    for i, it in enumerate(session.items[:8]):
        session.set_review(i, "lymphocyte" if i % 2 else "neutrophil", "tester")
    page = window.ensure_train_page()
    page.use_reviewed_cells()
    qtbot.waitUntil(lambda: page.form.data_edit.text() != "", timeout=30000)
    target = page.form.data_edit.text()
    from pathlib import Path

    files = sorted(p.parent.name for p in Path(target).rglob("*.png"))
    assert files.count("lymphocyte") == 4 and files.count("neutrophil") == 4
    assert all(Path(it.path).exists() for it in session.items)  # copies, originals untouched


def test_models_list_protects_shipped_model(qtbot, window, tmp_path, trained_model_path, monkeypatch):
    resources = tmp_path / "res"
    (resources / "models").mkdir(parents=True)
    shutil.copy(trained_model_path, resources / "models" / "wbc_default.keras")
    monkeypatch.setenv("WBC_RESOURCES", str(resources))
    shutil.copy(trained_model_path, user_models_dir() / "mine.keras")
    page = window.ensure_train_page()
    page.models.refresh_models()
    titles = [page.models.model_list.item(i).text() for i in range(page.models.model_list.count())]
    assert titles[0].startswith("synthetic (shipped)") and len(titles) >= 2
    page.models.model_list.setCurrentRow(0)
    assert not page.models.delete_button.isEnabled()
    row = next(i for i, e in enumerate(page.models.entries) if e.path.name == "mine.keras")
    page.models.model_list.setCurrentRow(row)
    assert page.models.delete_button.isEnabled()
    from PySide6.QtWidgets import QMessageBox

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Yes)
    page.models.delete_selected()
    assert not (user_models_dir() / "mine.keras").exists()
    assert (resources / "models" / "wbc_default.keras").exists()


def test_search_fills_the_table_and_trains_the_best(qtbot, window, tmp_path):
    lab = make_labeled_folder(tmp_path / "lab", per_class=15, seed=11)
    page = window.ensure_train_page()
    page.form.base.setCurrentIndex(page.form.base.findData("compact:none"))
    page.form.freeze.setCurrentText("none")
    page.form.data_edit.setText(str(lab))
    page.form.epochs.setValue(3)
    page.trials.setValue(2)
    assert page.form.validate() == []
    with qtbot.waitSignal(page.search_finished, timeout=180000) as done:
        page.search_button.click()
    best, rows = done.args[0]
    assert page.search_table.rowCount() == 2 == len(rows)
    headers = [page.search_table.horizontalHeaderItem(c).text() for c in range(page.search_table.columnCount())]
    assert "val_macro_f1" in headers and "lr" in headers
    assert page.train_best_button.isEnabled()
    with qtbot.waitSignal(page.training_finished, timeout=180000) as trained:
        page.train_best_button.click()
    outcome = trained.args[0]
    assert outcome is not None and outcome.result.card["hyperparameters"]["lr"] == best.lr
    assert page.form.lr.value() == pytest.approx(best.lr, rel=0.02)
