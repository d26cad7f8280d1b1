"""Rebuild the model a finished run left behind: its last checkpoint with
the best epoch's weights (whose BatchNorm statistics the clean-validation
step set on clean training images at that epoch), and optionally those
statistics re-estimated on the run's whole training split, exactly as
``engine.train.trainer.train`` returns it."""

from __future__ import annotations

from pathlib import Path

import keras

from wbc_desktop.engine.data.prepare import prepare_data
from wbc_desktop.engine.models.batchnorm import recalibrate_batchnorm
from wbc_desktop.engine.models.modelfile import framing_of, new_card, save_model
from wbc_desktop.engine.train.run_layout import RunLayout


def best_epoch_model(run_dir: str | Path):
    """(model, card) of a run folder, without touching its data."""
    files = RunLayout(Path(run_dir))
    meta = files.read_config()
    model = keras.saving.load_model(files.checkpoint, compile=False)
    model.load_weights(files.best_weights)
    card = new_card(name=f"run {files.root.name}", classes=meta["classes"], input_size=meta["config"]["img_size"],
                    architecture=meta["architecture"], weights_origin=meta["weights_origin"],
                    framing=meta["config"].get("framing", "as_is"), hyperparameters=meta["config"])
    return model, card


def join(loaded: list[tuple], with_taps: bool = False):
    """(model, card) pairs joined into one model (``engine.models.ensemble``)
    at the largest member's input size, as the shipped model joins its
    members; the card is the first member's at that size. One pair without
    taps is returned as it is."""
    if len(loaded) == 1 and not with_taps:
        return loaded[0]
    from wbc_desktop.engine.models.ensemble import build_ensemble

    size = max(card["input_size"] for _, card in loaded)
    return build_ensemble([m for m, _ in loaded], size, with_taps=with_taps), dict(loaded[0][1], input_size=size)


def joined_model(run_dirs: list[str | Path], with_taps: bool = False):
    """(model, card) of one run, or of several runs' models joined into one."""
    return join([best_epoch_model(run) for run in run_dirs], with_taps)


def best_model(run_dir: str | Path):
    """(model, card) as training returned it: BatchNorm re-estimated on the run's training split."""
    model, card = best_epoch_model(run_dir)
    data = prepare_data(RunLayout(Path(run_dir)).split, card["input_size"], framing=framing_of(card))
    recalibrate_batchnorm(model, data.train.x)
    card["training_data"] = data.data_card()
    return model, card


def export(run_dir: str | Path, out: str | Path) -> Path:
    model, card = best_model(run_dir)
    return save_model(model, card, out)
