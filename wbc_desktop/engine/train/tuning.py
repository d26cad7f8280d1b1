"""Random hyperparameter search judged on the validation split only; the
test split stays untouched until the chosen configuration is evaluated."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..data.augment_config import AugmentConfig
from ..infer.classify import Classifier
from ..io.csvio import write_csv
from .evaluation import compute_metrics
from ..data.prepare import PreparedData
from ..progress import CancelToken, Progress, ProgressFn, no_progress
from .config import TrainConfig
from .trainer import train

DEFAULT_SPACE: dict[str, list[Any]] = {
    "lr": [3e-4, 1e-3, 3e-3],
    "batch_size": [16, 32, 64],
    "freeze_until": ["none", "conv2", "conv3"],
    "augment_strength": [0.25, 0.5, 0.75],
}


def sample_configs(base: TrainConfig, space: dict[str, list[Any]], trials: int, seed: int) -> list[TrainConfig]:
    """Distinct random draws from ``space`` (fewer if the space is smaller)."""
    rng = random.Random(seed)
    keys = sorted(space)
    grid_size = int(np.prod([len(space[k]) for k in keys]))
    seen, configs = set(), []
    while len(configs) < min(trials, grid_size):
        choice = tuple(rng.choice(space[k]) for k in keys)
        if choice in seen:
            continue
        seen.add(choice)
        values = dict(zip(keys, choice))
        strength = values.pop("augment_strength", None)
        cfg = replace(base, **values)
        if strength is not None:
            cfg = replace(cfg, augment=AugmentConfig.from_strength(strength))
        configs.append(cfg)
    return configs


def _describe(cfg: TrainConfig, space: dict[str, list[Any]]) -> dict[str, Any]:
    out = {k: getattr(cfg, k) for k in space if k != "augment_strength"}
    if "augment_strength" in space:
        out["augment_strength"] = cfg.augment.scale
    return out


def tune(
    data: PreparedData,
    base: TrainConfig,
    out_dir: str | Path,
    trials: int,
    *,
    space: dict[str, list[Any]] | None = None,
    trial_epochs: int | None = None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[TrainConfig, list[dict[str, Any]]]:
    """Train each sampled configuration for ``trial_epochs`` and rank by
    validation macro-F1. Writes ``tuning_results.csv`` and ``best_config.json``."""
    space = space or DEFAULT_SPACE
    out_dir = Path(out_dir)
    cancel = cancel or CancelToken()
    configs = sample_configs(base, space, trials, base.seed)
    rows: list[dict[str, Any]] = []
    best_cfg, best_score = None, -1.0
    for i, cfg in enumerate(configs):
        if cancel.cancelled:
            break
        if trial_epochs:
            cfg = replace(cfg, epochs=trial_epochs)
        progress(Progress("tune", i, len(configs), f"trial {i + 1}/{len(configs)}: {_describe(cfg, space)}"))
        result = train(cfg, data, out_dir / f"trial_{i + 1:02d}", progress=progress, cancel=cancel)
        if result.cancelled:
            break
        val_probs = Classifier(result.model, result.card).predict_arrays(data.val.x)
        val = compute_metrics(data.val.y, val_probs, data.classes)
        row = {"trial": i + 1, **_describe(cfg, space), "val_accuracy": round(val["accuracy"], 4),
               "val_macro_f1": round(val["macro_f1"], 4), "best_epoch": result.best_epoch,
               "seconds": round(result.seconds, 1)}
        rows.append(row)
        if on_trial:
            on_trial(row)
        if val["macro_f1"] > best_score:
            best_cfg, best_score = replace(cfg, epochs=base.epochs), val["macro_f1"]
    if rows:
        write_csv(out_dir / "tuning_results.csv", list(rows[0]), ([r[k] for k in rows[0]] for r in rows))
    if best_cfg is None:
        raise RuntimeError("tuning was cancelled before any trial finished")
    (out_dir / "best_config.json").write_text(json.dumps(best_cfg.to_dict(), indent=1))
    progress(Progress("tune", len(configs), len(configs), f"best validation macro-F1 {best_score:.4f}"))
    return best_cfg, rows
