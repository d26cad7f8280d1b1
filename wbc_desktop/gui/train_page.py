"""Fine-tuning screen: data check, hyperparameters with presets, a run with
live curves and Cancel/Resume, hyperparameter search, evaluation views on
the untouched test split, and model management."""

from __future__ import annotations

import datetime as _dt
import shutil
import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
    QLineEdit, QListWidget, QListWidgetItem, QMessageBox, QPlainTextEdit, QProgressBar, QPushButton, QScrollArea,
    QSpinBox, QSplitter, QTableWidget, QTableWidgetItem, QTabWidget, QTextBrowser, QVBoxLayout, QWidget,
)

from .. import paths
from ..engine.augment import AugmentConfig
from ..engine.model_registry import delete_model, import_model, list_models, user_models_dir
from ..engine.models import FREEZE_CHOICES, WeightsNotFoundError, find_imagenet_weights
from ..engine.progress import Progress
from ..engine.training import TrainConfig
from .dialogs import FolderField, TextDialog, card_html
from .workers import Worker

PRESETS = {
    "Quick adapt: head only": dict(freeze="backbone", epochs=8, lr=1e-3, augment=0.3, patience=3),
    "Adapt deeper stages": dict(freeze="conv3", epochs=12, lr=5e-4, augment=0.5, patience=4),
    "Full fine-tune": dict(freeze="none", epochs=20, lr=3e-4, augment=0.5, patience=5),
}
SCRATCH_COMPACT, SCRATCH_RESNET, IMAGENET_RESNET = "compact:none", "resnet50:none", "resnet50:imagenet"


class CurveCanvas(QWidget):
    """Loss and accuracy per epoch, train and validation. The axes are made
    once and only their line data change per epoch: a full re-layout costs
    the GUI thread a few hundred milliseconds each time."""

    SERIES = (("loss", ""), ("loss", "val_"), ("accuracy", ""), ("accuracy", "val_"))

    def __init__(self, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        self.canvas = FigureCanvasQTAgg(Figure(figsize=(6, 2.6), dpi=100))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.history: list[dict] = []
        fig = self.canvas.figure
        self.axes = {}
        for i, key in enumerate(("loss", "accuracy")):
            ax = fig.add_subplot(1, 2, i + 1)
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            self.axes[key] = ax
        self.lines = {
            (key, prefix): self.axes[key].plot([], [], "-s" if prefix else "-o", markersize=3,
                                               label="validation" if prefix else "train")[0]
            for key, prefix in self.SERIES
        }
        for ax in self.axes.values():
            ax.legend(fontsize=7)
        fig.tight_layout()
        self.redraw()

    def set_history(self, history: list[dict]) -> None:
        self.history = list(history)
        self.redraw()

    def add_epoch(self, logs: dict) -> None:
        self.history.append(logs)
        self.redraw()

    def redraw(self) -> None:
        epochs = [h["epoch"] for h in self.history]
        for (key, prefix), line in self.lines.items():
            points = [(e, h[prefix + key]) for e, h in zip(epochs, self.history) if prefix + key in h]
            line.set_data([p[0] for p in points], [p[1] for p in points])
        for ax in self.axes.values():
            ax.relim()
            ax.autoscale_view()
        self.canvas.draw_idle()


class ClickableImage(QLabel):
    clicked = Signal()

    def mousePressEvent(self, event):
        self.clicked.emit()


class TrainPage(QWidget):
    training_finished = Signal(object)  # FinetuneOutcome or None when cancelled/failed
    search_finished = Signal(object)
    model_saved = Signal(str)

    def __init__(self, main_window, parent=None):
        super().__init__(parent)
        self.main = main_window
        self.job: Worker | None = None
        self.outcome = None
        self.run_dir: Path | None = None
        self.best_config: TrainConfig | None = None
        self._t0 = 0.0
        self._build()
        self.refresh_bases()
        self.refresh_models()
        self.apply_preset(next(iter(PRESETS)))

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        form_widget = QWidget()
        form_layout = QVBoxLayout(form_widget)

        data_box = QGroupBox("1. Training data (a folder with one sub-folder per class)")
        data_layout = QVBoxLayout(data_box)
        self.data_edit = FolderField("Labelled training data", "labelled folder, e.g. D:/cells/<class>/<image>")
        data_layout.addWidget(self.data_edit)
        self.from_review = QPushButton("Use my reviewed cells as training data")
        self.from_review.setToolTip("Copies every cell you reviewed into a class-folder set in the app's data folder")
        self.from_review.clicked.connect(self.use_reviewed_cells)
        self.check_button = QPushButton("Check dataset")
        self.check_button.clicked.connect(self.check_dataset)
        row = QHBoxLayout()
        row.addWidget(self.from_review)
        row.addWidget(self.check_button)
        data_layout.addLayout(row)

        hp_box = QGroupBox("2. Settings")
        form = QFormLayout(hp_box)
        self.preset = QComboBox()
        self.preset.addItems(list(PRESETS))
        self.preset.activated.connect(lambda i: self.apply_preset(self.preset.itemText(i)))
        form.addRow("Preset", self.preset)
        self.base = QComboBox()
        self.base.currentIndexChanged.connect(self._base_changed)
        self.base.setToolTip("The model to start from: a WBC model adapts fastest")
        self._add_row(form, "Base model", self.base)
        self.epochs = self._spin(1, 500, "Passes over the training images; early stopping may end sooner")
        self.batch = self._spin(4, 256, "Images per step: smaller uses less memory")
        self.lr = QDoubleSpinBox(decimals=5, minimum=1e-5, maximum=0.1, singleStep=1e-4)
        self.lr.setToolTip("Adam learning rate: lower for deeper fine-tuning")
        self.img_size = self._spin(32, 384, "Input size in pixels (fixed by a WBC base model)")
        self.freeze = QComboBox()
        self.freeze.addItems(FREEZE_CHOICES)
        self.freeze.setToolTip("Stages up to this one stay frozen; 'backbone' trains the head only")
        self.augment = QDoubleSpinBox(decimals=2, minimum=0, maximum=1, singleStep=0.1)
        self.augment.setToolTip("Strength of flips, rotation, zoom, colour/stain jitter (0 = none)")
        self.val_frac = QDoubleSpinBox(decimals=2, minimum=0.05, maximum=0.45, singleStep=0.05, value=0.15)
        self.test_frac = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=0.45, singleStep=0.05, value=0.15)
        self.group_by = QLineEdit()
        self.group_by.setPlaceholderText(r"optional regex, e.g. ^(slide\d+)_  keeps one slide's cells together")
        self.class_weights = QCheckBox("balance rare classes")
        self.class_weights.setChecked(True)
        self.patience = self._spin(1, 50, "Stop after this many epochs without validation improvement")
        self.seed = self._spin(0, 10**6, "Same seed, same split and same run")
        self.seed.setValue(42)
        self.val_frac.setToolTip("Share of images used to choose the best epoch and settings")
        self.test_frac.setToolTip("Share kept untouched for the final, honest score")
        self.group_by.setToolTip("Files whose names match alike never straddle train and test")
        self.class_weights.setToolTip("Rare classes count more in the loss, so they are not ignored")
        for label, widget in (("Epochs", self.epochs), ("Batch size", self.batch), ("Learning rate", self.lr),
                              ("Image size", self.img_size), ("Frozen up to", self.freeze),
                              ("Augmentation", self.augment), ("Validation fraction", self.val_frac),
                              ("Test fraction", self.test_frac), ("Group by", self.group_by),
                              ("Class weights", self.class_weights), ("Early-stop patience", self.patience),
                              ("Seed", self.seed)):
            self._add_row(form, label, widget)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("name for the new model, e.g. 'Lab 3 Giemsa, May 2026'")
        form.addRow("Model name", self.name_edit)

        run_box = QGroupBox("3. Run")
        run_layout = QHBoxLayout(run_box)
        self.start_button = QPushButton("Start training")
        self.start_button.clicked.connect(lambda: self.start_training(resume=False))
        self.resume_button = QPushButton("Resume")
        self.resume_button.clicked.connect(lambda: self.start_training(resume=True))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.trials = self._spin(2, 30, "How many settings the search tries")
        self.trials.setValue(4)
        self.search_button = QPushButton("Search settings")
        self.search_button.clicked.connect(self.start_search)
        for w in (self.start_button, self.resume_button, self.cancel_button, QLabel("trials"), self.trials,
                  self.search_button):
            run_layout.addWidget(w)

        for box in (data_box, hp_box, run_box):
            form_layout.addWidget(box)
        form_layout.addStretch()
        scroll = QScrollArea()
        scroll.setWidget(form_widget)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(430)

        # right: progress, search, evaluation, models
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
        self.confusion.setAlignment(Qt.AlignCenter)
        self.gallery = ClickableImage()
        self.gallery.setAlignment(Qt.AlignCenter)
        self.gallery.setToolTip("Click to enlarge")
        self.confusion.clicked.connect(lambda: self._enlarge("confusion_matrix.png"))
        self.gallery.clicked.connect(lambda: self._enlarge("misclassified.png"))
        images = QHBoxLayout()
        images.addWidget(self.confusion)
        images.addWidget(self.gallery)
        save_row = QHBoxLayout()
        self.save_button = QPushButton("Save model…")
        self.save_button.clicked.connect(lambda: self.save_model())
        self.save_button.setEnabled(False)
        self.activate_button = QPushButton("Save and use for classification")
        self.activate_button.clicked.connect(lambda: self.save_model(activate=True))
        self.activate_button.setEnabled(False)
        save_row.addWidget(self.save_button)
        save_row.addWidget(self.activate_button)
        el.addWidget(self.eval_summary)
        el.addWidget(self.eval_table, 2)
        el.addLayout(images, 3)
        el.addLayout(save_row)
        self.tabs.addTab(eval_page, "Evaluation")

        models_page = QWidget()
        ml = QHBoxLayout(models_page)
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
        ml.addWidget(self.model_list, 2)
        ml.addWidget(self.model_card, 3)
        ml.addLayout(buttons)
        self.tabs.addTab(models_page, "Models")

        splitter = QSplitter(Qt.Horizontal)
        splitter.addWidget(scroll)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self._set_busy(False)

    @staticmethod
    def _spin(lo, hi, tip) -> QSpinBox:
        s = QSpinBox(minimum=lo, maximum=hi)
        s.setToolTip(tip)
        return s

    @staticmethod
    def _add_row(form: QFormLayout, label: str, widget: QWidget) -> None:
        """The field, and under it its one-line explanation in small grey type."""
        form.addRow(label, widget)
        if widget.toolTip():
            hint = QLabel(widget.toolTip())
            hint.setWordWrap(True)
            hint.setStyleSheet("color: #666; font-size: 8pt;")
            form.addRow("", hint)

    # ------------------------------------------------------- form handling
    def refresh_bases(self) -> None:
        current = self.base.currentData()
        self.base.blockSignals(True)
        self.base.clear()
        entries, _ = list_models()
        for e in entries:
            self.base.addItem(f"{e.title} — {e.card['input_size']} px", str(e.path))
        try:
            find_imagenet_weights()
            self.base.addItem("ResNet50 with ImageNet weights (local file)", IMAGENET_RESNET)
        except WeightsNotFoundError:
            pass
        self.base.addItem("Compact CNN from scratch", SCRATCH_COMPACT)
        self.base.addItem("ResNet50 from scratch (slow on a CPU)", SCRATCH_RESNET)
        index = self.base.findData(current)
        self.base.setCurrentIndex(max(index, 0))
        self.base.blockSignals(False)
        self._base_changed()

    def _base_changed(self, *_):
        data = self.base.currentData() or SCRATCH_COMPACT
        if data.endswith(".keras"):
            from ..engine.modelfile import read_card

            self.img_size.setValue(int(read_card(data)["input_size"]))
            self.img_size.setEnabled(False)
        elif not self.img_size.isEnabled() or self.img_size.value() == self.img_size.minimum():
            self.img_size.setEnabled(True)
            self.img_size.setValue(96)  # the size the compact model was designed for

    def apply_preset(self, name: str) -> None:
        p = PRESETS[name]
        self.preset.setCurrentText(name)
        self.freeze.setCurrentText(p["freeze"])
        self.epochs.setValue(p["epochs"])
        self.lr.setValue(p["lr"])
        self.augment.setValue(p["augment"])
        self.patience.setValue(p["patience"])
        self.batch.setValue(32)

    def config(self) -> TrainConfig:
        data = self.base.currentData() or SCRATCH_COMPACT
        if data.endswith(".keras"):
            arch, weights = "compact", data
        else:
            arch, weights = data.split(":")
        return TrainConfig(
            arch=arch, weights=weights, freeze_until=self.freeze.currentText(), epochs=self.epochs.value(),
            batch_size=self.batch.value(), lr=self.lr.value(), img_size=self.img_size.value(),
            val_frac=self.val_frac.value(), test_frac=self.test_frac.value(),
            group_by=self.group_by.text().strip() or None, seed=self.seed.value(),
            class_weighting=self.class_weights.isChecked(), patience=self.patience.value(),
            augment=AugmentConfig.scaled(self.augment.value()) if self.augment.value() > 0 else AugmentConfig.none(),
        )

    def set_config(self, cfg: TrainConfig) -> None:
        self.epochs.setValue(cfg.epochs)
        self.batch.setValue(cfg.batch_size)
        self.lr.setValue(cfg.lr)
        self.freeze.setCurrentText(cfg.freeze_until)
        self.augment.setValue(cfg.augment.scale)

    def validate(self) -> list[str]:
        problems = self.config().validate()
        folder = self.data_edit.text().strip()
        if not folder:
            problems.insert(0, "choose a training-data folder")
        elif not Path(folder).is_dir():
            problems.insert(0, f"the folder {folder} does not exist")
        cfg = self.config()
        if cfg.arch == "compact" and not str(cfg.weights).endswith(".keras") and cfg.freeze_until != "none":
            problems.append("a model trained from scratch cannot keep frozen stages: set 'Frozen up to' to none")
        return problems

    def use_reviewed_cells(self) -> None:
        from ..engine.review import reviewed_cells
        from ..engine.sorting import sort_into_folders

        cells = reviewed_cells(self.main.cells.session)
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
            self.data_edit.setText(str(folder))
            self._log(f"Copied {len(cells)} reviewed cells into {folder}")
            self.status.setText("Reviewed cells are ready as training data.")

        self._start(job, done, "Copying reviewed cells")

    # ---------------------------------------------------------------- jobs
    def _set_busy(self, busy: bool) -> None:
        for w in (self.start_button, self.search_button, self.check_button, self.from_review):
            w.setEnabled(not busy)
        self.resume_button.setEnabled(not busy and self.run_dir is not None and (self.run_dir / "state.json").exists())
        self.cancel_button.setEnabled(busy)

    def _log(self, text: str) -> None:
        self.log.appendPlainText(text)

    def _start(self, job, on_return, title: str) -> None:
        self.job = Worker(job)
        self.job.yielded.connect(self._on_progress)
        self.job.returned.connect(on_return)
        self.job.errored.connect(lambda msg: (self._log(f"ERROR: {msg}"),
                                              QMessageBox.warning(self, f"{title} failed", msg)))
        job = self.job
        job.finished.connect(lambda: self._job_done(job))
        self._t0 = time.monotonic()
        self.status.setText(f"{title}…")
        self.tabs.setCurrentIndex(0)
        self._set_busy(True)
        self.main.workers.add(self.job)
        self.job.start()

    def _job_done(self, job: Worker) -> None:
        """A job's thread has ended. A newer job may already be running (the
        user can start the search winner as soon as the search returns)."""
        self.main.workers.discard(job)
        if self.job is job:
            self.job = None
            self._set_busy(False)

    def cancel(self) -> None:
        if self.job is not None:
            self.job.abort()
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

    def check_dataset(self) -> None:
        folder = self.data_edit.text().strip()
        if not Path(folder).is_dir():
            QMessageBox.warning(self, "Check dataset", "Choose an existing labelled folder first.")
            return
        cfg = self.config()

        def job(cancel, emit):
            from ..engine.finetune import prepare_for

            data = prepare_for(cfg, folder, emit, cancel)
            return data.summary.describe() + "\n\nSplit (train / validation / test):\n" + data.manifest.describe()

        self._start(job, lambda text: (self._log(text), self.status.setText("Dataset checked.")), "Checking dataset")

    def start_training(self, resume: bool = False, config: TrainConfig | None = None) -> None:
        """``config`` overrides the form (the search winner, exactly as it
        was tried rather than as the form's spin boxes round it)."""
        problems = [] if resume else self.validate()
        if problems:
            QMessageBox.warning(self, "Settings need attention", "\n".join(f"• {p}" for p in problems))
            return
        cfg = config or self.config()
        if resume:
            import json

            cfg = TrainConfig.from_dict(json.loads((self.run_dir / "run.json").read_text())["config"])
            source = self.run_dir / "split.json"
        else:
            self.run_dir = paths.user_data_dir() / "runs" / _dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
            source = self.data_edit.text().strip()
            self.curves.set_history([])
        run_dir = self.run_dir
        name = self.name_edit.text().strip() or f"fine-tuned {_dt.date.today().isoformat()}"
        self.outcome = None
        self.save_button.setEnabled(False)
        self.activate_button.setEnabled(False)

        def job(cancel, emit):
            from ..engine.finetune import run_finetune

            return run_finetune(cfg, source, run_dir, name=name, progress=emit, cancel=cancel, resume=resume)

        self._log(f"{'Resuming' if resume else 'Starting'} run in {run_dir}")
        self._start(job, self._training_returned, "Training")

    def _training_returned(self, outcome) -> None:
        self.outcome = outcome
        result = outcome.result
        self.curves.set_history(result.history)
        if result.cancelled:
            self.status.setText(f"Cancelled after {len(result.history)} epochs. Resume continues from there.")
            self.training_finished.emit(None)
            return
        self.status.setText(f"Done: {len(result.history)} epochs in {result.seconds:.0f} s, best epoch {result.best_epoch}"
                            + (" (stopped early)" if result.stopped_early else ""))
        self.show_evaluation(outcome)
        self.save_button.setEnabled(True)
        self.activate_button.setEnabled(True)
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
        report = outcome.run_dir / "report"
        for label, name in ((self.confusion, "confusion_matrix.png"), (self.gallery, "misclassified.png")):
            pix = QPixmap(str(report / name))
            label.setPixmap(pix.scaled(420, 320, Qt.KeepAspectRatio, Qt.SmoothTransformation))
        self.tabs.setCurrentIndex(2)

    def _enlarge(self, name: str) -> None:
        if self.outcome is not None and self.outcome.metrics is not None:
            path = self.outcome.run_dir / "report" / name
            TextDialog(name, f"<img src='{path.as_uri()}'>", self).exec()

    # -------------------------------------------------------------- search
    def start_search(self) -> None:
        problems = self.validate()
        if problems:
            QMessageBox.warning(self, "Settings need attention", "\n".join(f"• {p}" for p in problems))
            return
        cfg = self.config()
        folder = self.data_edit.text().strip()
        trials = self.trials.value()
        out = paths.user_data_dir() / "runs" / _dt.datetime.now().strftime("search-%Y%m%d-%H%M%S")
        self.search_table.setRowCount(0)
        self.train_best_button.setEnabled(False)
        space = {"lr": [cfg.lr / 3, cfg.lr, cfg.lr * 3], "augment_strength": [0.25, 0.5, 0.75],
                 "batch_size": [16, 32]}
        if cfg.arch == "resnet50" or str(cfg.weights).endswith(".keras"):
            space["freeze_until"] = ["backbone", "conv3", "none"]

        def job(cancel, emit):
            from ..engine.finetune import prepare_for
            from ..engine.tuning import tune

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
        if result is None:
            return
        self.best_config, rows = result
        self.train_best_button.setEnabled(True)
        self.status.setText(f"Search done: {len(rows)} trials. Best validation macro-F1 "
                            f"{max(r['val_macro_f1'] for r in rows):.3f}")
        self.search_finished.emit(result)

    def train_best(self) -> None:
        if self.best_config is not None:
            self.set_config(self.best_config)
            self.start_training(config=self.best_config)

    # -------------------------------------------------------------- models
    def save_model(self, activate: bool = False, path: str | None = None) -> Path | None:
        from ..engine.modelfile import save_model
        from ..engine.sorting import free_name

        if self.outcome is None:
            return None
        card = dict(self.outcome.result.card)
        name = self.name_edit.text().strip() or card["name"]
        card["name"] = name
        if path is None:
            safe = "".join(ch if ch.isalnum() or ch in "-_ " else "_" for ch in name).strip() or "model"
            path = free_name(user_models_dir(), f"{safe}.keras")
        save_model(self.outcome.result.model, card, path)
        self._log(f"Saved {path}")
        self.refresh_models()
        self.refresh_bases()
        self.main.refresh_models()
        self.model_saved.emit(str(path))
        if activate:
            self.main.load_model(path)
        return Path(path)

    def refresh_models(self) -> None:
        self.entries, problems = list_models()
        self.model_list.clear()
        for e in self.entries:
            tm = e.card.get("test_metrics") or {}
            extra = f" — test acc {tm['accuracy']:.1%}" if tm else ""
            self.model_list.addItem(QListWidgetItem(f"{e.title}{extra}"))
        for p in problems:
            self._log(p)
        if self.entries:
            self.model_list.setCurrentRow(0)

    def _selected(self):
        row = self.model_list.currentRow()
        return self.entries[row] if 0 <= row < len(self.entries) else None

    def _show_model_card(self, row: int) -> None:
        entry = self._selected()
        self.model_card.setHtml(card_html(entry.card) if entry else "")
        self.delete_button.setEnabled(bool(entry and not entry.shipped))

    def activate_selected(self) -> None:
        entry = self._selected()
        if entry:
            self.main.load_model(entry.path)

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
                QMessageBox.warning(self, "Not imported", str(exc))
            self.refresh_models()
            self.refresh_bases()
            self.main.refresh_models()

    def delete_selected(self) -> None:
        entry = self._selected()
        if entry is None or entry.shipped:
            return
        if QMessageBox.question(self, "Delete model", f"Delete {entry.title}? This cannot be undone.") == QMessageBox.Yes:
            delete_model(entry)
            self.refresh_models()
            self.refresh_bases()
            self.main.refresh_models()
