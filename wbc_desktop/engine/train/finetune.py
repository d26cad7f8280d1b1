"""One fine-tuning job as the app runs it: prepare the split, train, then
evaluate the result and its base model on the same untouched test split,
so the user sees whether fine-tuning helped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..infer.classify import Classifier
from .evaluation import evaluate_files, write_report
from ..models.modelfile import read_card
from ..data.prepare import PreparedData, prepare_data
from ..progress import CancelToken, Progress, no_progress
from .config import TrainConfig, matched_to_base
from .run_layout import RunLayout
from .trainer import TrainResult, train


@dataclass
class FinetuneOutcome:
    result: TrainResult
    data: PreparedData
    run_dir: Path
    metrics: dict | None = None  # the new model on the test split
    base_metrics: dict | None = None  # the base model on the same files


def prepare_for(config: TrainConfig, source, progress: Callable[[Any], None] = no_progress,
                cancel: CancelToken | None = None) -> PreparedData:
    """The split a training configuration asks for (fractions, seed, grouping)."""
    return prepare_data(source, config.img_size, val_frac=config.val_frac, test_frac=config.test_frac,
                        seed=config.seed, group_by=config.group_by, progress=progress, cancel=cancel,
                        framing=config.framing)


def _for_card(metrics: dict) -> dict:
    """Metrics as a model card keeps them: the confusion matrix stays in the report."""
    return {k: v for k, v in metrics.items() if k != "confusion_matrix"}


def run_finetune(
    config: TrainConfig, source: str | Path | Sequence[str | Path], run_dir: str | Path, *, name: str,
    progress: Callable[[Any], None], cancel: CancelToken, resume: bool = False,
) -> FinetuneOutcome:
    """``source``: labelled folder(s), or a saved ``split.json`` (to resume,
    or to train on exactly the split a search used)."""
    run_dir = Path(run_dir)
    files = RunLayout(run_dir)
    config = matched_to_base(config)
    data = prepare_for(config, source, progress, cancel)
    data.manifest.save(files.split)
    progress(Progress("data", 1, 1, data.summary.describe() + "\n" + data.manifest.describe()))
    if str(config.weights).endswith(".keras"):
        base_classes = read_card(config.weights)["classes"]
        if set(data.classes) <= set(base_classes):
            data = data.with_classes(base_classes)  # keep the base head: it already knows these cells
    result = train(config, data, run_dir, progress=progress, cancel=cancel, resume=resume, name=name)
    outcome = FinetuneOutcome(result, data, run_dir)
    if result.cancelled or len(data.test.y) == 0:
        return outcome
    progress(Progress("evaluate", 0, 1, "evaluating on the test split"))
    probs = Classifier(result.model, result.card).predict_arrays(data.test.x)
    outcome.metrics = write_report(files.report, data.test.y, probs, data.classes, data.test.x, data.test.paths,
                                   {"split": "test", "model": name})
    result.card["test_metrics"] = _for_card(outcome.metrics)
    if str(config.weights).endswith(".keras"):
        base = Classifier.open(config.weights)
        labels = [data.classes[i] for i in data.test.y]
        outcome.base_metrics, _ = evaluate_files(base, data.test.paths, labels, files.base_report,
                                                 extra={"split": "test", "role": "base model"})
        result.card["base_model_test_metrics"] = _for_card(outcome.base_metrics)
    progress(Progress("evaluate", 1, 1, "evaluation done"))
    return outcome
