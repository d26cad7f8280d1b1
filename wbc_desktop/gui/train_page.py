"""The Fine-tune & models screen: the form (``train_form``), a run with
live curves and Cancel/Resume, a settings search, the evaluation on the
untouched test split, and the models list (``models_page``). Jobs run
through the app state's job registry, like every other job of the app."""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QGroupBox, QHBoxLayout, QHeaderView, QLabel, QMessageBox, QPlainTextEdit, QProgressBar, QPushButton, QScrollArea, QSplitter,
    QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget,
)

from .. import paths
from ..engine.progress import Progress
from ..engine.train.config import TrainConfig
from ..engine.train.run_layout import RunLayout
from .action_states import IDLE, RESUMABLE, ActionStates
from .app_state import AppState
from .dialogs import TextDialog
from .models_page import ModelsPage
from .train_form import TrainForm, spin
from .train_views import ClickableImage, CurveCanvas
from .workers import Worker, describe_error

OWN_JOB, HAS_OUTCOME = "a job of this screen runs", "a trained model to save"
SEARCH_SPACE = {"augment_strength": [0.25, 0.5, 0.75], "batch_size": [16, 32]}


class TrainPage(QWidget):
    training_finished = Signal(object)  # FinetuneOutcome, or None when cancelled or failed
    search_finished = Signal(object)
    model_saved = Signal(str)

    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.state = state
        self.outcome = None
        self.run_dir: Path | None = None
        self.best_config: TrainConfig | None = None
        self._t0 = 0.0
        self.action_states = ActionStates()
        self._build()
        state.flags_changed.connect(self._update_state)
        self._update_state()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        self.form = TrainForm()
        self.form.from_review.clicked.connect(self.use_reviewed_cells)
        self.form.check_button.clicked.connect(self.check_dataset)
        run_box = QGroupBox("3. Run")
        run_layout = QHBoxLayout(run_box)
        self.start_button = QPushButton("Start training")
        self.start_button.clicked.connect(lambda: self.start_training(resume=False))
        self.resume_button = QPushButton("Resume")
        self.resume_button.clicked.connect(lambda: self.start_training(resume=True))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.trials = spin(2, 30, "How many settings the search tries")
        self.trials.setValue(4)
        self.search_button = QPushButton("Search settings")
        self.search_button.clicked.connect(self.start_search)
        for w in (self.start_button, self.resume_button, self.cancel_button, QLabel("trials"), self.trials,
                  self.search_button):
            run_layout.addWidget(w)
        for w in (self.start_button, self.search_button, self.form.check_button, self.form.from_review):
            self.action_states.add(w, IDLE)
        self.action_states.add(self.resume_button, IDLE, RESUMABLE)
        self.action_states.add(self.cancel_button, OWN_JOB)
        self.form.layout().addWidget(run_box)
        self.form.layout().addStretch()
        scroll = QScrollArea()
        scroll.setWidget(self.form)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(430)

        self.tabs = QTabWidget()
        progress_page = QWidget()
        pl = QVBoxLayout(progress_page)
        self.curves = CurveCanvas()
        self.progress = QProgressBar()
        self.status = QLabel("Ready.")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        pl.addWidget(self.curves, 3)
        pl.addWidget(self.progress)
        pl.addWidget(self.status)
        pl.addWidget(self.log, 2)
        self.tabs.addTab(progress_page, "Progress")

        search_page = QWidget()
        sl = QVBoxLayout(search_page)
        self.search_table = QTableWidget(0, 0)
        self.search_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.train_best_button = QPushButton("Train the best settings")
        self.train_best_button.clicked.connect(self.train_best)
        self.train_best_button.setEnabled(False)
        sl.addWidget(QLabel("Trials, ranked on the validation split only (the test split is never used for choices)."))
        sl.addWidget(self.search_table)
        sl.addWidget(self.train_best_button)
        self.tabs.addTab(search_page, "Search")

        eval_page = QWidget()
        el = QVBoxLayout(eval_page)
        self.eval_summary = QLabel("No evaluation yet.")
        self.eval_summary.setWordWrap(True)
        self.eval_table = QTableWidget(0, 5)
        self.eval_table.setHorizontalHeaderLabels(["Class", "Precision", "Recall", "F1", "Support"])
        self.eval_table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.eval_table.verticalHeader().setVisible(False)
        self.confusion = ClickableImage()
        self.gallery = ClickableImage()
        for figure in (self.confusion, self.gallery):
            figure.setToolTip("Click to enlarge")
        self.confusion.clicked.connect(lambda: self._enlarge("confusion_matrix.png"))
        self.gallery.clicked.connect(lambda: self._enlarge("misclassified.png"))
        images = QVBoxLayout()  # both figures are wide: one above the other, each the page's width
        images.addWidget(self.confusion, 3)
        images.addWidget(self.gallery, 2)
        save_row = QHBoxLayout()
        self.save_button = QPushButton("Save model…")
        self.save_button.clicked.connect(lambda: self.save_model())
        self.activate_button = QPushButton("Save and use for classification")
        self.activate_button.clicked.connect(lambda: self.save_model(activate=True))
        for b in (self.save_button, self.activate_button):
            self.action_states.add(b, HAS_OUTCOME)
            save_row.addWidget(b)
        el.addWidget(self.eval_summary)
        el.addWidget(self.eval_table, 1)
        el.addLayout(images, 3)
        el.addLayout(save_row)
        self.tabs.addTab(eval_page, "Evaluation")

        self.models = ModelsPage(self.state)
        self.state.models_changed.connect(self.form.refresh_bases)
        self.tabs.addTab(self.models, "Models")

        splitter = QSplitter(Qt.Horizontal)
        splitter.addWidget(scroll)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([580, 820])  # the form's fields and hints fit without scrolling sideways
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    def _update_state(self) -> None:
        flags = self.state.flags()
        if self.run_dir is not None and RunLayout(self.run_dir).can_resume():
            flags.add(RESUMABLE)
        if self.state.jobs.running.get(self.state.jobs.current) == "train page":
            flags.add(OWN_JOB)
        if self.outcome is not None:
            flags.add(HAS_OUTCOME)
        self.action_states.update(flags)

    def _log(self, text: str) -> None:
        self.log.appendPlainText(text)

    # ---------------------------------------------------------------- jobs
    def _start(self, job, on_return, title: str, on_abort=None) -> bool:
        """Run ``job`` as the app's exclusive job: refused while another runs."""
        worker = Worker(job)
        worker.yielded.connect(self._on_progress)
        outcome = []
        worker.returned.connect(outcome.append)
        worker.aborted.connect(on_abort or (lambda: self.status.setText(f"{title}: cancelled.")))
        worker.errored.connect(lambda exc: self._failed(title, exc))
        if not self.state.jobs.start(worker, "train page"):
            QMessageBox.information(self, "Busy", "Wait for the running job to finish, or cancel it first.")
            return False
        # the result is handed on once the registry has let the job go, so a
        # follow-up job (train the search's best) can start from it at once
        worker.finished.connect(lambda: outcome and on_return(outcome[0]))
        self._t0 = time.monotonic()
        self.status.setText(f"{title}…")
        self.tabs.setCurrentIndex(0)
        return True

    def _failed(self, title: str, exc: Exception) -> None:
        self._log(f"ERROR: {describe_error(exc)}")
        self.status.setText(f"{title} failed.")
        QMessageBox.warning(self, f"{title} failed", describe_error(exc))

    def cancel(self) -> None:
        if self.state.jobs.cancel_current():
            self.status.setText("Cancelling… the best weights so far are kept")
            self.cancel_button.setEnabled(False)

    def _on_progress(self, p) -> None:
        if not isinstance(p, Progress):
            return
        if p.stage == "train_batch":
            self.progress.setRange(0, p.total)
            self.progress.setValue(p.done)
            elapsed = time.monotonic() - self._t0
            eta = f", about {round(elapsed / p.done * (p.total - p.done))} s left" if p.done else ""
            self.status.setText(f"Epoch {p.info['epoch']}/{p.info['epochs']}, step {p.info['batch']}/{p.info['steps']}"
                                f", loss {p.info.get('loss', float('nan')):.3f}{eta}")
        elif p.stage == "train_epoch":
            self.curves.add_epoch(p.info)
            self._log(p.message)
        elif p.stage in ("decode", "sort"):
            self.progress.setRange(0, p.total)
            self.progress.setValue(p.done)
            self.status.setText(p.message)
        elif p.stage in ("data", "evaluate", "tune"):
            self._log(p.message)
            if p.stage == "tune":
                self.status.setText(p.message)
        elif p.stage == "trial":
            self._add_trial_row(p.info)

    # ---------------------------------------------------------------- data
    def use_reviewed_cells(self) -> None:
        from ..engine.review.session import reviewed_cells
        from ..engine.review.sorting import sort_into_folders

        cells = reviewed_cells(self.state.session)
        if len(cells) < 6:
            QMessageBox.information(self, "Too few reviewed cells",
                                    f"Only {len(cells)} cells are reviewed with a class. Review more cells on the "
                                    "Classify & review screen first.")
            return
        target = paths.user_data_dir() / "training_data" / _dt.datetime.now().strftime("reviewed-%Y%m%d-%H%M%S")

        def job(cancel, emit):  # copying thousands of files must not freeze the window
            for p in sort_into_folders(cells, target, cancel=cancel):
                emit(p)
            return target

        def done(folder):
            self.form.data_edit.setText(str(folder))
            self._log(f"Copied {len(cells)} reviewed cells into {folder}")
            self.status.setText("Reviewed cells are ready as training data.")

        self._start(job, done, "Copying reviewed cells", on_abort=lambda: self.status.setText(
            f"Copying cancelled: the cells copied so far are in {target}, not used as training data."))

    def check_dataset(self) -> None:
        folder = self.form.data_edit.text().strip()
        if not Path(folder).is_dir():
            QMessageBox.warning(self, "Check dataset", "Choose an existing labelled folder first.")
            return
        cfg = self.form.config()

        def job(cancel, emit):
            from ..engine.train.finetune import prepare_for

            data = prepare_for(cfg, folder, emit, cancel)
            return data.summary.describe() + "\n\nSplit (train / validation / test):\n" + data.manifest.describe()

        self._start(job, lambda text: (self._log(text), self.status.setText("Dataset checked.")), "Checking dataset")

    # ------------------------------------------------------------ training
    def start_training(self, resume: bool = False, config: TrainConfig | None = None) -> None:
        """``config`` overrides the form (the search winner, exactly as it
        was tried rather than as the form's spin boxes round it)."""
        problems = [] if resume else self.form.validate()
        if problems:
            QMessageBox.warning(self, "Settings need attention", "\n".join(f"• {p}" for p in problems))
            return
        if resume:
            files = RunLayout(self.run_dir)
            cfg, source = TrainConfig.from_dict(files.read_config()["config"]), files.split
        else:
            cfg, source = config or self.form.config(), self.form.data_edit.text().strip()
            self.run_dir = paths.user_data_dir() / "runs" / _dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
            self.curves.set_history([])
        run_dir = self.run_dir
        name = self.form.name_edit.text().strip() or f"fine-tuned {_dt.date.today().isoformat()}"
        self.outcome = None

        def job(cancel, emit):
            from ..engine.train.finetune import run_finetune

            return run_finetune(cfg, source, run_dir, name=name, progress=emit, cancel=cancel, resume=resume)

        self._log(f"{'Resuming' if resume else 'Starting'} run in {run_dir}")
        self._start(job, self._training_returned, "Training", on_abort=self._training_aborted)

    def _training_aborted(self) -> None:
        epochs = len(self.curves.history)
        self.status.setText(f"Cancelled after {epochs} epochs. Resume continues from there.")
        self.training_finished.emit(None)

    def _training_returned(self, outcome) -> None:
        self.outcome = outcome
        result = outcome.result
        self.curves.set_history(result.history)
        self.status.setText(f"Done: {len(result.history)} epochs in {result.seconds:.0f} s, best epoch {result.best_epoch}"
                            + (" (stopped early)" if result.stopped_early else ""))
        self.show_evaluation(outcome)
        self._update_state()
        self.training_finished.emit(outcome)

    def show_evaluation(self, outcome) -> None:
        m = outcome.metrics
        if m is None:
            self.eval_summary.setText("No test split (test fraction 0): nothing to evaluate.")
            return
        text = (f"<b>Test split</b> (never used for training or choices): n={m['n']}, accuracy <b>{m['accuracy']:.1%}</b>, "
                f"balanced accuracy {m['balanced_accuracy']:.1%}, macro-F1 <b>{m['macro_f1']:.3f}</b>, "
                f"calibration error {m['ece']:.3f}.")
        b = outcome.base_metrics
        if b is not None:
            verdict = "helped" if m["macro_f1"] > b["macro_f1"] else "did not help"
            text += (f"<br><b>Base model on the same test images:</b> accuracy {b['accuracy']:.1%}, macro-F1 "
                     f"{b['macro_f1']:.3f} — fine-tuning {verdict}.")
        self.eval_summary.setText(text)
        rows = [(c, v) for c, v in m["per_class"].items() if v["support"] or c in m["classes_present"]]
        self.eval_table.setRowCount(len(rows))
        for r, (c, v) in enumerate(rows):
            for col, val in enumerate((c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(v["support"]))):
                self.eval_table.setItem(r, col, QTableWidgetItem(val))
        report = RunLayout(outcome.run_dir).report
        for label, name in ((self.confusion, "confusion_matrix.png"), (self.gallery, "misclassified.png")):
            label.show_picture(QPixmap(str(report / name)))
        self.tabs.setCurrentIndex(2)

    def _enlarge(self, name: str) -> None:
        if self.outcome is not None and self.outcome.metrics is not None:
            path = RunLayout(self.outcome.run_dir).report / name
            TextDialog(name, f"<img src='{path.as_uri()}'>", self).exec()

    # -------------------------------------------------------------- search
    def start_search(self) -> None:
        problems = self.form.validate()
        if problems:
            QMessageBox.warning(self, "Settings need attention", "\n".join(f"• {p}" for p in problems))
            return
        cfg = self.form.config()
        folder = self.form.data_edit.text().strip()
        trials = self.trials.value()
        out = paths.user_data_dir() / "runs" / _dt.datetime.now().strftime("search-%Y%m%d-%H%M%S")
        self.search_table.setRowCount(0)
        self.train_best_button.setEnabled(False)
        space = dict(SEARCH_SPACE, lr=[cfg.lr / 3, cfg.lr, cfg.lr * 3])
        if cfg.arch != "compact" or str(cfg.weights).endswith(".keras"):
            space["freeze_until"] = ["backbone", "conv3", "none"]

        def job(cancel, emit):
            from ..engine.train.finetune import prepare_for
            from ..engine.train.tuning import tune

            data = prepare_for(cfg, folder, emit, cancel)
            return tune(data, cfg, out, trials, space=space, trial_epochs=max(1, cfg.epochs // 3), progress=emit,
                        cancel=cancel, on_trial=lambda row: emit(Progress("trial", 0, 0, "", row)))

        self._start(job, self._search_returned, "Searching settings")

    def _add_trial_row(self, row: dict) -> None:
        if self.search_table.columnCount() == 0:
            self.search_table.setColumnCount(len(row))
            self.search_table.setHorizontalHeaderLabels(list(row))
        r = self.search_table.rowCount()
        self.search_table.insertRow(r)
        for c, v in enumerate(row.values()):
            self.search_table.setItem(r, c, QTableWidgetItem(str(v)))
        self.tabs.setCurrentIndex(1)

    def _search_returned(self, result) -> None:
        self.best_config, rows = result
        self.train_best_button.setEnabled(True)
        self.status.setText(f"Search done: {len(rows)} trials. Best validation macro-F1 "
                            f"{max(r['val_macro_f1'] for r in rows):.3f}")
        self.search_finished.emit(result)

    def train_best(self) -> None:
        if self.best_config is not None:
            self.form.set_config(self.best_config)
            self.start_training(config=self.best_config)

    # -------------------------------------------------------------- models
    def save_model(self, activate: bool = False, path: str | None = None) -> Path | None:
        from ..engine.io.files import free_name
        from ..engine.models.modelfile import save_model
        from ..engine.models.registry import user_models_dir

        if self.outcome is None:
            return None
        card = dict(self.outcome.result.card)
        name = self.form.name_edit.text().strip() or card["name"]
        card["name"] = name
        if path is None:
            safe = "".join(ch if ch.isalnum() or ch in "-_ " else "_" for ch in name).strip() or "model"
            path = free_name(user_models_dir(), f"{safe}.keras")
        save_model(self.outcome.result.model, card, path)
        self._log(f"Saved {path}")
        self.state.models_changed.emit()
        self.model_saved.emit(str(path))
        if activate:
            self.state.load_model(path)
        return Path(path)
