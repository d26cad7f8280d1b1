"""Training settings: one dataclass that the CLI's options, the app's form,
the recipe and the search are all made from. Free of TensorFlow, so the
GUI thread can hold one without loading it."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..data.augment_config import AugmentConfig
from ..locate.framing import FRAMINGS
from ..models.choices import ARCHITECTURES, COLOUR_SPACES, FREEZE_CHOICES, NORMS


LAB_BALANCE = ("none", "per_class", "shared_classes", "per_lab", "lab_total")


def _opt(default, help: str, choices: tuple | None = None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    # ``help`` (and ``choices``) in each field's metadata make the CLI's options
    arch: str = _opt("compact", "model architecture", ARCHITECTURES)
    weights: str = _opt("none", "resnet50, efficientnet_lite0: imagenet | none | weights file; "
                        "any architecture: a .keras WBC model to fine-tune")
    freeze_until: str = _opt("none", "stages up to this one stay frozen; backbone: the head only", FREEZE_CHOICES)
    epochs: int = _opt(30, "passes over the training images (early stopping may end sooner)")
    batch_size: int = _opt(32, "images per step")
    lr: float = _opt(1e-3, "Adam learning rate (peak of the warm-up + cosine schedule)")
    img_size: int = _opt(96, "input size in pixels")
    framing: str = _opt("as_is", "crops as they are, or re-cut around the detected white cell "
                         "(tight: 1.25x the cell, close: 1.0x, wide: 2.2x, ruler: tight but at least 3.5 red cells wide)", tuple(FRAMINGS))
    val_frac: float = _opt(0.15, "share of images for validation (choices)")
    test_frac: float = _opt(0.15, "share of images kept untouched for the final score")
    group_by: str | None = _opt(None, "regex on file names; files with the same match stay on one side")
    seed: int = _opt(42, "same seed, same split and same run")
    label_smoothing: float = _opt(0.05, "label smoothing of the cross-entropy")
    class_weighting: bool = _opt(True, "weigh rare classes up in the loss")
    lab_balance: str = _opt("none", "weigh the source folders (labs) alike: per_class, within each class, so "
                            "that a class is not learnt as the look of the lab that holds most of it; "
                            "shared_classes, the same within the classes several labs hold, a class one lab holds "
                            "alone scaled as that lab's shared ones; per_lab, "
                            "every lab the same total, every class within it; lab_total, every lab the same "
                            "total, its classes weighed as the class weights weigh them", LAB_BALANCE)
    lab_balance_share: float = _opt(1.0, "how much of each image's loss weight follows the lab balance; the "
                                         "rest follows the class weights alone")
    patience: int = _opt(6, "early stopping: epochs without validation improvement")
    norm: str = _opt("batch", "normalisation layers of the compact model", NORMS)
    width: int = _opt(32, "compact: filters of the first stage")
    colour_space: str = _opt("rgb", "compact: what the input is standardised in (lab: Reinhard's l-alpha-beta); "
                             "any architecture: reinhard, each cell's colours moved onto a reference stain first "
                             "(efficientnet_lite0 ignores the others)",
                             COLOUR_SPACES)
    mixstyle: float = _opt(0.0, "compact: probability of mixing two images' feature statistics in training "
                           "(MixStyle; 0 = off)")
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("augment"), dict):
            values["augment"] = AugmentConfig(**values["augment"])
        return cls(**values)

    def validate(self) -> list[str]:
        """Every problem at once, in words a user can act on."""
        problems = []
        if self.arch not in ARCHITECTURES:
            problems.append(f"architecture must be one of {', '.join(ARCHITECTURES)}")
        if not 1 <= self.epochs <= 1000:
            problems.append("epochs must be between 1 and 1000")
        if not 1 <= self.batch_size <= 512:
            problems.append("batch size must be between 1 and 512")
        if not 1e-6 <= self.lr <= 1.0:
            problems.append("learning rate must be between 1e-6 and 1")
        if not 32 <= self.img_size <= 512:
            problems.append("image size must be between 32 and 512 pixels")
        if not (0 < self.val_frac < 0.5 and 0 <= self.test_frac < 0.5 and self.val_frac + self.test_frac < 0.8):
            problems.append("validation fraction must be in (0, 0.5), test fraction in [0, 0.5), together under 0.8")
        if not 0 <= self.label_smoothing < 0.5:
            problems.append("label smoothing must be in [0, 0.5)")
        if self.patience < 1:
            problems.append("early-stopping patience must be at least 1 epoch")
        if self.norm not in NORMS:
            problems.append(f"normalisation must be one of {', '.join(NORMS)}")
        if self.freeze_until not in FREEZE_CHOICES:
            problems.append(f"frozen stages must be one of {', '.join(FREEZE_CHOICES)}")
        if not 0.0 <= self.mixstyle <= 1.0:
            problems.append("mixstyle must lie between 0 and 1")
        if self.lab_balance not in LAB_BALANCE:
            problems.append(f"lab balance must be one of {', '.join(LAB_BALANCE)}")
        elif self.lab_balance != "none" and not self.class_weighting:
            problems.append("balancing labs needs class weighting: it shares each class's weight between labs")
        if not 0.0 <= self.lab_balance_share <= 1.0:
            problems.append("the lab balance's share must lie between 0 and 1")
        if self.colour_space not in COLOUR_SPACES:
            problems.append(f"colour space must be one of {', '.join(COLOUR_SPACES)}")
        if self.group_by:
            try:
                re.compile(self.group_by)
            except re.error as exc:
                problems.append(f"grouping pattern is not a valid regular expression: {exc}")
        return problems


def matched_to_base(config: TrainConfig) -> TrainConfig:
    """A .keras base decides how crops are framed (its weights learnt that
    framing), so fine-tuning the shipped model needs no framing option."""
    if not str(config.weights).endswith(".keras") or not Path(config.weights).is_file():
        return config
    from ..models.modelfile import framing_of, read_card  # reads the card only: no TensorFlow

    return replace(config, framing=framing_of(read_card(config.weights)))
