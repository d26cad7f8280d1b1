"""The fine-tune screen's form: training data, the base model and every
setting, mapped to and from one :class:`TrainConfig`. Settings the form
does not show (normalisation, width, colour space, label smoothing) are
kept from the last configuration set, so :meth:`TrainForm.set_config`
followed by :meth:`TrainForm.config` gives back the same configuration."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton,
    QSpinBox, QVBoxLayout, QWidget,
)

from ..engine.data.augment_config import AugmentConfig
from ..engine.models.choices import FREEZE_CHOICES
from ..engine.models.registry import list_models
from ..engine.models.weights import WeightsNotFoundError, find_imagenet_weights, find_lite0_weights
from ..engine.train.config import TrainConfig, matched_to_base
from .dialogs import FolderField

PRESETS = {
    "Quick adapt: head only": dict(freeze_until="backbone", epochs=8, lr=1e-3, augment=0.3, patience=3),
    "Adapt deeper stages": dict(freeze_until="conv3", epochs=12, lr=5e-4, augment=0.5, patience=4),
    "Full fine-tune": dict(freeze_until="none", epochs=20, lr=3e-4, augment=0.5, patience=5),
}
SCRATCH_COMPACT, SCRATCH_RESNET = "compact:none", "resnet50:none"
IMAGENET_RESNET, IMAGENET_LITE0 = "resnet50:imagenet", "efficientnet_lite0:imagenet"
IMAGENET_STARTS = ((IMAGENET_LITE0, "EfficientNet-Lite0 with ImageNet weights (local file)", find_lite0_weights, 128),
                   (IMAGENET_RESNET, "ResNet50 with ImageNet weights (local file)", find_imagenet_weights, 224))


class TrainForm(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._config = TrainConfig()
        layout = QVBoxLayout(self)

        data_box = QGroupBox("1. Training data (a folder with one sub-folder per class)")
        data_layout = QVBoxLayout(data_box)
        self.data_edit = FolderField("Labelled training data", "labelled folder, e.g. D:/cells/<class>/<image>")
        data_layout.addWidget(self.data_edit)
        self.from_review = QPushButton("Use my reviewed cells as training data")
        self.from_review.setToolTip("Copies every cell you reviewed into a class-folder set in the app's data folder")
        self.check_button = QPushButton("Check dataset")
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
        self.base.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.base.setMinimumContentsLength(28)  # a long model name must not widen the whole form
        self.base.currentIndexChanged.connect(self._base_changed)
        self.base.setToolTip("The model to start from: a WBC model adapts fastest")
        _add_row(form, "Base model", self.base)
        self.epochs = spin(1, 500, "Passes over the training images; early stopping may end sooner")
        self.batch = spin(4, 256, "Images per step: smaller uses less memory")
        self.lr = QDoubleSpinBox(decimals=5, minimum=1e-5, maximum=0.1, singleStep=1e-4)
        self.lr.setToolTip("Adam learning rate: lower for deeper fine-tuning")
        self.img_size = spin(32, 384, "Input size in pixels (fixed by a WBC base model)")
        self.freeze = QComboBox()
        self.freeze.addItems(FREEZE_CHOICES)
        self.freeze.setToolTip("Stages up to this one stay frozen; 'backbone' trains the head only")
        self.augment = QDoubleSpinBox(decimals=2, minimum=0, maximum=1, singleStep=0.1)
        self.augment.setToolTip("Strength of flips, rotation, zoom, colour/stain jitter (0 = none)")
        self.val_frac = QDoubleSpinBox(decimals=2, minimum=0.05, maximum=0.45, singleStep=0.05)
        self.val_frac.setToolTip("Share of images used to choose the best epoch and settings")
        self.test_frac = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=0.45, singleStep=0.05)
        self.test_frac.setToolTip("Share kept untouched for the final, honest score")
        self.group_by = QLineEdit()
        self.group_by.setPlaceholderText(r"optional regex, e.g. ^(slide\d+)_  keeps one slide's cells together")
        self.group_by.setToolTip("Files whose names match alike never straddle train and test")
        self.class_weights = QCheckBox("balance rare classes")
        self.class_weights.setToolTip("Rare classes count more in the loss, so they are not ignored")
        self.patience = spin(1, 50, "Stop after this many epochs without validation improvement")
        self.seed = spin(0, 10**6, "Same seed, same split and same run")
        for label, widget in (("Epochs", self.epochs), ("Batch size", self.batch), ("Learning rate", self.lr),
                              ("Image size", self.img_size), ("Frozen up to", self.freeze),
                              ("Augmentation", self.augment), ("Validation fraction", self.val_frac),
                              ("Test fraction", self.test_frac), ("Group by", self.group_by),
                              ("Class weights", self.class_weights), ("Early-stop patience", self.patience),
                              ("Seed", self.seed)):
            _add_row(form, label, widget)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("name for the new model, e.g. 'Lab 3 Giemsa, May 2026'")
        form.addRow("Model name", self.name_edit)
        layout.addWidget(data_box)
        layout.addWidget(hp_box)
        self.set_config(self._config)
        self.refresh_bases()
        self.apply_preset(next(iter(PRESETS)))

    # ---------------------------------------------------------- base model
    def refresh_bases(self) -> None:
        current = self.base.currentData()
        self.base.blockSignals(True)
        self.base.clear()
        entries, _ = list_models()
        for e in entries:
            self.base.addItem(f"{e.title} — {e.card['input_size']} px", str(e.path))
        for key, title, find, _size in IMAGENET_STARTS:
            try:
                find()
                self.base.addItem(title, key)
            except WeightsNotFoundError:
                pass
        self.base.addItem("Compact CNN from scratch", SCRATCH_COMPACT)
        self.base.addItem("ResNet50 from scratch (slow on a CPU)", SCRATCH_RESNET)
        self.base.setCurrentIndex(max(self.base.findData(current), 0))
        self.base.blockSignals(False)
        self._base_changed()

    def _base_changed(self, *_):
        data = self.base.currentData() or SCRATCH_COMPACT
        if data.endswith(".keras"):
            from ..engine.models.modelfile import read_card

            self.img_size.setValue(int(read_card(data)["input_size"]))
            self.img_size.setEnabled(False)
            return
        self.img_size.setEnabled(True)
        sizes = {key: size for key, _, _, size in IMAGENET_STARTS}
        self.img_size.setValue(sizes.get(data, 96))  # what each network was measured at here

    # ------------------------------------------------------------ settings
    def apply_preset(self, name: str) -> None:
        p = dict(PRESETS[name])
        self.preset.setCurrentText(name)
        strength = p.pop("augment")
        self.set_config(replace(self.config(), augment=AugmentConfig.from_strength(strength), batch_size=32, **p))

    def config(self) -> TrainConfig:
        data = self.base.currentData() or SCRATCH_COMPACT
        arch, weights = (self._config.arch, data) if data.endswith(".keras") else data.split(":")
        return matched_to_base(replace(
            self._config,
            arch=arch, weights=weights, freeze_until=self.freeze.currentText(), epochs=self.epochs.value(),
            batch_size=self.batch.value(), lr=self.lr.value(), img_size=self.img_size.value(),
            val_frac=self.val_frac.value(), test_frac=self.test_frac.value(),
            group_by=self.group_by.text().strip() or None, seed=self.seed.value(),
            class_weighting=self.class_weights.isChecked(), patience=self.patience.value(),
            augment=(self._config.augment if self.augment.value() == self._config.augment.strength
                     else AugmentConfig.from_strength(self.augment.value())),
        ))

    def set_config(self, cfg: TrainConfig) -> None:
        """Show ``cfg``; what the form has no field for is kept as it is."""
        self._config = cfg
        self.epochs.setValue(cfg.epochs)
        self.batch.setValue(cfg.batch_size)
        self.lr.setValue(cfg.lr)
        self.freeze.setCurrentText(cfg.freeze_until)
        self.augment.setValue(cfg.augment.strength)
        self.val_frac.setValue(cfg.val_frac)
        self.test_frac.setValue(cfg.test_frac)
        self.group_by.setText(cfg.group_by or "")
        self.class_weights.setChecked(cfg.class_weighting)
        self.patience.setValue(cfg.patience)
        self.seed.setValue(cfg.seed)
        if self.img_size.isEnabled():
            self.img_size.setValue(cfg.img_size)

    def validate(self) -> list[str]:
        cfg = self.config()
        problems = cfg.validate()
        folder = self.data_edit.text().strip()
        if not folder:
            problems.insert(0, "choose a training-data folder")
        elif not Path(folder).is_dir():
            problems.insert(0, f"the folder {folder} does not exist")
        if cfg.arch == "compact" and not str(cfg.weights).endswith(".keras") and cfg.freeze_until != "none":
            problems.append("a model trained from scratch cannot keep frozen stages: set 'Frozen up to' to none")
        return problems


def spin(lo, hi, tip) -> QSpinBox:
    s = QSpinBox(minimum=lo, maximum=hi)
    s.setToolTip(tip)
    return s


def _add_row(form: QFormLayout, label: str, widget: QWidget) -> None:
    """The field, and under it its one-line explanation in small grey type."""
    form.addRow(label, widget)
    if widget.toolTip():
        hint = QLabel(widget.toolTip())
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #666; font-size: 8pt;")
        form.addRow("", hint)
