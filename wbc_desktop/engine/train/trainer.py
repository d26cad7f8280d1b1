"""Training: Adam, categorical cross-entropy, class weights, cosine schedule,
early stopping with the best weights restored, checkpoint and resume."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ..data.augment import augment_batch
from ..data.dataset import decode_images, require_two_classes
from ..data.prepare import PreparedData
from ..models.batchnorm import recalibrate_batchnorm
from ..models.builders import apply_freeze, build_compact, build_resnet50, count_params, replace_head
from ..models.efficientnet_lite import build_efficientnet_lite0
from ..models.modelfile import framing_of, load_model, new_card
from ..infer.classify import Classifier
from ..infer.domain_check import STAIN_SIDE, colour_stats, reference_from
from ..io.atomic import write_text
from ..progress import CancelToken, ProgressFn, no_progress
from .callbacks import CancelOnRequest, CleanValidation, ProgressReporter, RunFolder
from .config import TrainConfig
from .run_layout import RunLayout

MAX_CLASS_WEIGHT = 10.0


@dataclass
class TrainResult:
    model: keras.Model
    card: dict[str, Any]
    history: list[dict[str, float]]
    best_epoch: int | None
    stopped_early: bool
    cancelled: bool
    seconds: float


def build_model(config: TrainConfig, classes: list[str]) -> tuple[keras.Model, str, str]:
    """The model to train, its weights origin and its architecture label."""
    if str(config.weights).endswith(".keras"):
        model, card = load_model(config.weights)
        origin = f"fine-tuned from {card.get('name', Path(config.weights).name)}"
        if card["classes"] != list(classes):
            model = replace_head(model, len(classes))
            origin += " (new head for a different class list)"
        if card["input_size"] != config.img_size:
            raise ValueError(f"the base model takes {card['input_size']} px images; set image size to {card['input_size']}")
        if framing_of(card) != config.framing:
            raise ValueError(f"the base model sees crops framed {framing_of(card)!r}; set framing to {framing_of(card)!r}")
        return model, origin, card.get("architecture", "unknown")
    if config.arch == "resnet50":
        model, origin = build_resnet50(len(classes), config.img_size, config.weights)
        return model, origin, "ResNet50 (keras.applications) + GAP/dropout/softmax head"
    if config.arch == "efficientnet_lite0":
        model, origin = build_efficientnet_lite0(len(classes), config.img_size, config.weights,
                                                 colour_space=config.colour_space)
        colour = ", cells moved onto a reference stain (Reinhard)" if config.colour_space == "reinhard" else ""
        return model, origin, f"EfficientNet-Lite0 (ReLU6, no squeeze-excite) + GAP/dropout/softmax head{colour}"
    model = build_compact(len(classes), config.img_size, norm=config.norm, width=config.width,
                          colour_space=config.colour_space, mixstyle=config.mixstyle)
    return model, "random initialisation (trained from scratch)", (
        f"compact CNN, 5 stages, {config.norm} norm, width {config.width}, {config.colour_space} input")


def reference_for(model: keras.Model, data: PreparedData, img_size: int, max_train: int = 4000,
                  tta: bool = True) -> dict:
    """What the folder warning compares a lab's folder with (see
    ``infer.domain_check``): the training cells' stain per lab, the
    validation cells' stain and predicted classes (``tta``: with the views
    the app will classify with, the model's default)."""
    rng = np.random.default_rng(0)
    pick = np.sort(rng.permutation(len(data.train.y))[:max_train])
    train_sources = data.sources_of(data.train)
    val_probs = Classifier(model, {"classes": data.classes, "input_size": img_size}).predict_arrays(data.val.x, tta=tta)
    return reference_from(surroundings_stats([data.train.paths[i] for i in pick]), [train_sources[i] for i in pick],
                          data.train.y[pick], surroundings_stats(data.val.paths), data.sources_of(data.val),
                          data.val.y, val_probs)


def surroundings_stats(paths) -> np.ndarray:
    """Stain statistics of crop files' surroundings views
    (``infer.domain_check``), decoded and cached as training decodes."""
    return colour_stats(decode_images(paths, STAIN_SIDE, framing="as_is").pixels)


def _training_devices() -> list:
    gpus = tf.config.list_logical_devices("GPU")
    return gpus or tf.config.list_logical_devices("CPU")


def training_strategy() -> tf.distribute.Strategy:
    """Data-parallel training over every GPU (a MirroredStrategy: each
    replica takes a share of the global batch, gradients are summed), or
    over logical CPU devices when someone split the CPU into several; on a
    plain PC the default strategy, which is training as usual. The global
    batch size and so the learning-rate schedule stay as configured."""
    devices = _training_devices()
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.get_strategy()


def _equal_shares(keys: np.ndarray) -> np.ndarray:
    """Per row, so that every distinct key's rows sum to the same share of 1."""
    names, index, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return 1.0 / (len(names) * counts[index])


def sample_weights(y: np.ndarray, labs: list[str] | None, *, by_class: bool, lab_balance: str = "none",
                   share: float = 1.0) -> np.ndarray:
    """Loss weight per training image, 1 on average before the cap.

    ``by_class``: every class the same total weight. ``lab_balance``
    (``labs``: the lab of each image) "per_class": within a class, every
    lab that holds it the same share; "shared_classes": the same within the
    classes several labs hold, while a class one lab holds alone is scaled
    as that lab's shared classes were, so the lab's own classes keep their
    weight against its shared ones (balancing per class alone left PBC's
    ig, erythroblasts and platelets at full weight against its diluted
    lymphocytes); "per_lab": every lab the same total weight, and within a
    lab every class; "lab_total": every lab the same total weight, its
    classes weighed against each other as the class weights weigh them (a
    lab's own class priors stay). ``share``: the part of each weight that
    follows the lab balance, the rest following the class weights alone.
    Capped, because 'balanced' gives a class (or a lab's class) of one
    image a weight of hundreds, and a few such gradients knock the whole
    model about."""
    y = np.asarray(y)
    w = _uncapped_weights(y, np.asarray(labs) if labs is not None else None, by_class, lab_balance)
    if lab_balance != "none" and share < 1.0:
        w = share * w + (1.0 - share) * _uncapped_weights(y, None, by_class, "none")
    return np.minimum(w, MAX_CLASS_WEIGHT).astype(np.float32)


def _uncapped_weights(y: np.ndarray, labs: np.ndarray | None, by_class: bool, lab_balance: str) -> np.ndarray:
    none = np.zeros(len(y))
    labs_ = labs if labs is not None else none
    outer, inner = {"none": (y if by_class else none, none), "per_class": (y, labs_), "shared_classes": (y, labs_),
                    "per_lab": (labs_, y), "lab_total": (y, none)}[lab_balance]
    w = np.empty(len(y))
    groups = np.unique(outer)
    for g in groups:
        rows = np.flatnonzero(outer == g)
        w[rows] = _equal_shares(inner[rows]) * len(y) / len(groups)
    if lab_balance == "lab_total":
        names, index = np.unique(labs_, return_inverse=True)
        w *= len(y) / (len(names) * np.bincount(index, weights=w)[index])
    if lab_balance == "shared_classes":
        plain = _uncapped_weights(y, None, by_class, "none")
        shared = {c for c in np.unique(y) if len(np.unique(labs_[y == c])) > 1}
        is_shared = np.isin(y, list(shared))
        for lab in np.unique(labs_):
            mine = labs_ == lab
            if (mine & is_shared).any() and (mine & ~is_shared).any():
                scale = w[mine & is_shared].sum() / plain[mine & is_shared].sum()
                w[mine & ~is_shared] = plain[mine & ~is_shared] * scale
        w *= len(y) / w.sum()
    return w


def _train_dataset(x: np.ndarray, y: np.ndarray, n_classes: int, config: TrainConfig, sample_w: np.ndarray) -> tf.data.Dataset:
    onehot = np.eye(n_classes, dtype=np.float32)[y]
    ds = tf.data.Dataset.from_tensor_slices((x, onehot, sample_w))
    ds = ds.shuffle(min(len(y), 20000), seed=config.seed, reshuffle_each_iteration=True).batch(config.batch_size)
    # each batch brings its augmentation seed, new every epoch, so a seed is a run
    seeds = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=True).batch(2)
    aug = config.augment
    ds = tf.data.Dataset.zip(ds, seeds).map(
        lambda batch, seed: (augment_batch(tf.cast(batch[0], tf.float32), aug, seed), batch[1], batch[2]),
        num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _compile(model: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(steps_per_epoch, total // 5)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.lr * 0.1, decay_steps=max(1, total - warmup), alpha=0.01,
        warmup_target=config.lr, warmup_steps=warmup,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


def train(
    config: TrainConfig,
    data: PreparedData,
    run_dir: str | Path,
    *,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    resume: bool = False,
    name: str = "WBC model",
) -> TrainResult:
    """Train on ``data.train``, select on ``data.val``; ``data.test`` is not touched.

    With ``resume``, a run folder left by an interrupted run continues from
    its last finished epoch (same config, optimizer state and schedule)."""
    problems = config.validate()
    if problems:
        raise ValueError("; ".join(problems))
    if len(data.train.y) == 0 or len(data.val.y) == 0:
        raise ValueError("the training and validation splits must both hold images")
    require_two_classes(data.classes, np.bincount(data.train.y, minlength=len(data.classes)))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    files = RunLayout(run_dir)
    keras.utils.set_random_seed(config.seed)
    cancel = cancel or CancelToken()
    n_classes = len(data.classes)
    steps = int(np.ceil(len(data.train.y) / config.batch_size))
    state = RunFolder.load_state(run_dir) if resume else None
    strategy = training_strategy()
    with strategy.scope():  # variables made here are mirrored on every replica
        if state and files.checkpoint.exists():
            model = keras.saving.load_model(files.checkpoint, compile=True, safe_mode=True)
            meta = files.read_config()
            origin, architecture = meta["weights_origin"], meta["architecture"]
            initial_epoch = state["epochs_done"]
        else:
            state = None
            model, origin, architecture = build_model(config, data.classes)
            apply_freeze(model, config.freeze_until)
            _compile(model, config, steps)
            initial_epoch = 0
            write_text(files.config, json.dumps({"config": config.to_dict(), "classes": data.classes,
                                                 "weights_origin": origin, "architecture": architecture}, indent=1))
    labs = data.sources_of(data.train) if config.lab_balance != "none" else None
    weights = sample_weights(data.train.y, labs, by_class=config.class_weighting, lab_balance=config.lab_balance,
                             share=config.lab_balance_share)
    folder = RunFolder(run_dir, cancel, patience=config.patience, state=state)
    folder.set_model(model)  # a finished run resumed trains no epoch, but its best weights are still restored
    t0 = time.monotonic()
    if initial_epoch < config.epochs and not (state and state.get("stopped_early")):
        model.fit(
            _train_dataset(data.train.x, data.train.y, n_classes, config, weights),
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            # order matters: validation fills the logs, the run folder saves the
            # epoch before anyone hears of it, and only then can Cancel act
            callbacks=[CleanValidation(data.train.x, data.val.x, data.val.y, cancel), folder,
                       ProgressReporter(progress, config.epochs, steps, cancel), CancelOnRequest(cancel)],
            verbose=0,
            shuffle=False,  # the dataset shuffles itself, seeded
        )
    folder.restore_best()
    recalibrate_batchnorm(model, data.train.x)
    domain_check = reference_for(model, data, config.img_size)
    trainable, total = count_params(model)
    card = new_card(
        name=name, classes=data.classes, input_size=config.img_size, architecture=architecture, weights_origin=origin,
        framing=config.framing,
        parameters={"total": total, "trainable": trainable},
        hyperparameters=config.to_dict(),
        training_data=data.data_card(),
        best_epoch=folder.state["best_epoch"],
        history=folder.state["history"],
        domain_check=domain_check,
        trained_on={"replicas": strategy.num_replicas_in_sync,
                    "devices": [d.name for d in _training_devices()] if strategy.num_replicas_in_sync > 1 else None},
    )
    return TrainResult(
        model, card, folder.state["history"], folder.state["best_epoch"],
        bool(folder.state.get("stopped_early")), cancel.cancelled, time.monotonic() - t0,
    )
