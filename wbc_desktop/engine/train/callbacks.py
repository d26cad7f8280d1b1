"""Keras callbacks that connect training to progress reports, cancellation
and a run folder that survives interruption."""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import numpy as np

from ..io.atomic import atomic_path, write_text
from ..models.batchnorm import recalibrate_batchnorm
from ..progress import CancelToken, Progress, ProgressFn
from .run_layout import RunLayout



class ProgressReporter(keras.callbacks.Callback):
    """Batch and epoch progress; batch reports are throttled so a fast loop
    does not flood the GUI's event queue."""

    def __init__(self, progress: ProgressFn, epochs: int, steps: int, cancel: CancelToken, min_interval: float = 0.2):
        super().__init__()
        self.progress, self.epochs, self.steps, self.min_interval = progress, epochs, steps, min_interval
        self.cancel = cancel
        self._epoch, self._last, self._t0 = 0, 0.0, time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now - self._last >= self.min_interval or batch + 1 == self.steps:
            self._last = now
            done = self._epoch * self.steps + batch + 1
            info = {"epoch": self._epoch + 1, "epochs": self.epochs, "batch": batch + 1, "steps": self.steps}
            info.update({k: float(v) for k, v in (logs or {}).items()})
            self.progress(Progress("train_batch", done, self.epochs * self.steps, "", info))

    def on_epoch_end(self, epoch, logs=None):
        if self.cancel.cancelled:  # Keras ends a cut-short epoch too; it is not a finished one
            return
        info = {"epoch": epoch + 1, "epochs": self.epochs, "seconds": time.monotonic() - self._t0}
        info.update({k: float(v) for k, v in (logs or {}).items()})
        msg = "  ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items() if k != "learning_rate")
        self.progress(Progress("train_epoch", epoch + 1, self.epochs, f"epoch {epoch + 1}/{self.epochs}  {msg}", info))


class CleanValidation(keras.callbacks.Callback):
    """Validation with BatchNorm statistics of clean images.

    Runs first at each epoch end: re-estimates BatchNorm statistics on clean
    training images (see ``models.batchnorm.recalibrate_batchnorm``), then scores the
    validation split and adds ``val_loss``/``val_accuracy`` to the epoch's
    logs. Without it the statistics follow the augmented images and the
    validation score swings from epoch to epoch, which misleads early
    stopping and the choice of the best epoch."""

    def __init__(self, x_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, cancel: CancelToken,
                 batch_size: int = 128):
        super().__init__()
        self.x_train, self.x_val, self.y_val = x_train, x_val, y_val
        self.cancel, self.batch_size = cancel, batch_size

    def on_epoch_end(self, epoch, logs=None):
        if self.cancel.cancelled or logs is None:
            return
        recalibrate_batchnorm(self.model, self.x_train, max_images=1024, seed=epoch)
        probs = np.concatenate([
            np.asarray(self.model(self.x_val[i:i + self.batch_size].astype(np.float32), training=False))
            for i in range(0, len(self.x_val), self.batch_size)
        ])
        picked = probs[np.arange(len(self.y_val)), self.y_val]
        logs["val_loss"] = float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))
        logs["val_accuracy"] = float(np.mean(probs.argmax(axis=1) == self.y_val))


class CancelOnRequest(keras.callbacks.Callback):
    """Keras checks ``stop_training`` after every batch, so Cancel takes
    effect within one batch."""

    def __init__(self, cancel: CancelToken):
        super().__init__()
        self.cancel = cancel

    def on_train_batch_end(self, batch, logs=None):
        if self.cancel.cancelled:
            self.model.stop_training = True


class RunFolder(keras.callbacks.Callback):
    """After each finished epoch: the resumable checkpoint, the history and the best
    weights so far; early stopping on ``monitor`` with a patience that
    counts across resumes, because it lives in the saved state."""

    def __init__(self, run_dir: Path, cancel: CancelToken, monitor: str = "val_loss", patience: int = 5,
                 state: dict | None = None):
        super().__init__()
        self.files, self.monitor, self.patience, self.cancel = RunLayout(Path(run_dir)), monitor, patience, cancel
        self.state = state or {"epochs_done": 0, "best": None, "best_epoch": None, "history": []}

    @classmethod
    def load_state(cls, run_dir: Path) -> dict | None:
        path = RunLayout(Path(run_dir)).state
        return json.loads(path.read_text()) if path.exists() else None

    def on_epoch_end(self, epoch, logs=None):
        if self.cancel.cancelled:  # an epoch cut short is redone on resume
            return
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.state["history"].append({"epoch": epoch + 1, **logs})
        self.state["epochs_done"] = epoch + 1
        value = logs.get(self.monitor)
        if value is not None and np.isfinite(value) and (self.state["best"] is None or value < self.state["best"]):
            self.state["best"], self.state["best_epoch"] = value, epoch + 1
            with atomic_path(self.files.best_weights) as tmp:
                self.model.save_weights(tmp)
        with atomic_path(self.files.checkpoint) as tmp:
            self.model.save(tmp)
        write_text(self.files.state, json.dumps(self.state, indent=1))
        if self.state["best_epoch"] is not None and epoch + 1 - self.state["best_epoch"] >= self.patience:
            self.state["stopped_early"] = True
            self.model.stop_training = True

    def restore_best(self) -> bool:
        best = self.files.best_weights
        if best.exists():
            self.model.load_weights(best)
            return True
        return False
