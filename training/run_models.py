"""Rebuild the model a finished run left behind: its last checkpoint with
the best epoch's weights, BatchNorm statistics recalibrated on the run's
clean training images, exactly as ``engine.training.train`` returns it."""

from __future__ import annotations

import json
from pathlib import Path

import keras

from wbc_desktop.engine.train.callbacks import BEST_WEIGHTS, CHECKPOINT
from wbc_desktop.engine.models.modelfile import new_card, save_model
from wbc_desktop.engine.data.prepare import prepare_data
from wbc_desktop.engine.models.batchnorm import recalibrate_batchnorm


def best_model(run_dir: str | Path):
    """(model, card) of a run folder."""
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "run.json").read_text())
    model = keras.saving.load_model(run_dir / CHECKPOINT, compile=False)
    model.load_weights(run_dir / BEST_WEIGHTS)
    data = prepare_data(run_dir / "split.json", meta["config"]["img_size"])
    recalibrate_batchnorm(model, data.train.x)
    card = new_card(name=f"run {run_dir.name}", classes=meta["classes"], input_size=meta["config"]["img_size"],
                    architecture=meta["architecture"], weights_origin=meta["weights_origin"],
                    hyperparameters=meta["config"], training_data=data.data_card())
    return model, card


def export(run_dir: str | Path, out: str | Path) -> Path:
    model, card = best_model(run_dir)
    return save_model(model, card, out)
