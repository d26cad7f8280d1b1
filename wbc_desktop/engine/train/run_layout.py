"""What a training run folder holds, named in one place: the trainer, the
fine-tune job, the CLI, the app and the recipe all find files through it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def config(self) -> Path:  # the settings, classes and weights origin the run started with
        return self.root / "run.json"

    @property
    def split(self) -> Path:  # the split manifest: resuming or re-evaluating uses exactly these files
        return self.root / "split.json"

    @property
    def state(self) -> Path:  # epochs done, history, best epoch: what --resume continues from
        return self.root / "state.json"

    @property
    def checkpoint(self) -> Path:  # model and optimizer after the last finished epoch
        return self.root / "checkpoint.keras"

    @property
    def best_weights(self) -> Path:
        return self.root / "best.weights.h5"

    @property
    def report(self) -> Path:  # the trained model on the test split
        return self.root / "report"

    @property
    def base_report(self) -> Path:  # the base model on the same test split
        return self.root / "report_base"

    def can_resume(self) -> bool:
        return self.state.exists() and self.checkpoint.exists()

    def read_config(self) -> dict:
        return json.loads(self.config.read_text())
