"""Model builders: ResNet50 transfer learning and a compact from-scratch CNN.

Both take uint8-range RGB and do their own pixel scaling, end in a head whose
layers are named ``features`` (pooled features) and ``predictions``, and name
their stages ``conv1`` … ``conv5`` so one freeze setting means the same depth
in both.
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import keras
import numpy as np
from keras import layers, ops

from .choices import FREEZE_CHOICES, STAGES
from .weights import find_imagenet_weights

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _norm(kind: str, name: str) -> layers.Layer:
    if kind == "group":
        return layers.GroupNormalization(groups=8, name=name)
    return layers.BatchNormalization(momentum=0.9, name=name)  # stats keep up with fast-moving weights


def _conv_block(x, filters: int, stage: str, norm: str, convs: int = 2):
    for i in range(1, convs + 1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{stage}_conv{i}")(x)
        x = _norm(norm, f"{stage}_norm{i}")(x)
        x = layers.Activation("relu", name=f"{stage}_relu{i}")(x)
    return x


def classification_head(x, num_classes: int, dropout: float):
    x = layers.GlobalAveragePooling2D(name="features")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)


@keras.saving.register_keras_serializable(package="wbc_desktop")
class LabColourSpace(layers.Layer):
    """RGB (0-255) to Reinhard's l-alpha-beta space (log cone responses,
    decorrelated). Standardising each of its channels per image is Reinhard
    colour transfer to a fixed reference, which no per-channel RGB scaling
    does: a stain's tint and strength become shifts the next layer removes."""

    _RGB_TO_LMS = np.array([[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]], np.float32)
    _LOG_LMS_TO_LAB = (np.diag([3 ** -0.5, 6 ** -0.5, 2 ** -0.5]) @ np.array([[1, 1, 1], [1, 1, -2], [1, -1, 0]])).astype(np.float32)

    def call(self, x):
        return self.to_lab(x)

    @classmethod
    def to_lab(cls, x):
        lms = ops.matmul(ops.cast(x, "float32") / 255.0, cls._RGB_TO_LMS.T)
        return ops.matmul(ops.log(ops.maximum(lms, 1e-3)), cls._LOG_LMS_TO_LAB.T)


@keras.saving.register_keras_serializable(package="wbc_desktop")
class ReinhardTransfer(layers.Layer):
    """RGB (0-255) to RGB whose l-alpha-beta mean and spread, per image, are
    a reference stain's (Reinhard et al. 2001). An ImageNet backbone needs
    RGB, so it cannot take :class:`LabColourSpace` standardised as the
    compact model does; this gives it the same removal of a lab's tint,
    strength and contrast, then shows it cells in one reference look. The
    reference is PBC's (the mean of 400 cells' per-image statistics, cut
    cell-tight). A channel with almost no spread (a grey image's colour)
    is not blown up: it becomes the reference's mean."""

    REFERENCE_MEAN = (-0.707, -0.038, 0.028)
    REFERENCE_STD = (0.625, 0.232, 0.0153)
    FLOOR = 0.01
    _LAB_TO_LOG_LMS = np.linalg.inv(LabColourSpace._LOG_LMS_TO_LAB).astype(np.float32)
    _LMS_TO_RGB = np.linalg.inv(LabColourSpace._RGB_TO_LMS).astype(np.float32)

    def call(self, x):
        lab = LabColourSpace.to_lab(x)
        mean = ops.mean(lab, axis=(1, 2), keepdims=True)
        std = ops.std(lab, axis=(1, 2), keepdims=True)
        lab = (lab - mean) / (std + self.FLOOR) * np.float32(self.REFERENCE_STD) + np.float32(self.REFERENCE_MEAN)
        rgb = ops.matmul(ops.exp(ops.matmul(lab, self._LAB_TO_LOG_LMS.T)), self._LMS_TO_RGB.T)
        return ops.clip(rgb * 255.0, 0.0, 255.0)


@keras.saving.register_keras_serializable(package="wbc_desktop")
class MixStyle(layers.Layer):
    """In training, with probability ``p`` an image's feature statistics
    (per-channel mean and spread) are mixed with another image's of the
    batch (MixStyle, Zhou et al. 2021): early features carry a lab's stain
    and optics, so the network sees "styles" between the labs it has and
    must rely on what survives them. The identity at inference."""

    def __init__(self, p: float = 0.5, alpha: float = 0.1, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.p, self.alpha, self.seed = p, alpha, seed
        self._seeds = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.p <= 0:
            return x
        b = ops.shape(x)[0]
        mu = ops.stop_gradient(ops.mean(x, axis=(1, 2), keepdims=True))
        sigma = ops.stop_gradient(ops.sqrt(ops.var(x, axis=(1, 2), keepdims=True) + 1e-6))
        lam = keras.random.beta((b, 1, 1, 1), self.alpha, self.alpha, seed=self._seeds)
        other = keras.random.shuffle(ops.arange(b), seed=self._seeds)
        mixed_mu = lam * mu + (1 - lam) * ops.take(mu, other, axis=0)
        mixed_sigma = lam * sigma + (1 - lam) * ops.take(sigma, other, axis=0)
        pick = keras.random.uniform((b, 1, 1, 1), seed=self._seeds) < self.p
        return ops.where(pick, (x - mu) / sigma * mixed_sigma + mixed_mu, x)

    def get_config(self):
        return dict(super().get_config(), p=self.p, alpha=self.alpha, seed=self.seed)


def build_compact(num_classes: int, img_size: int, norm: str = "batch", width: int = 32, dropout: float = 0.3,
                  colour_space: str = "rgb", mixstyle: float = 0.0) -> keras.Model:
    """A five-stage VGG-style CNN (~1.2 M parameters, ~0.3 GFLOP at 96 px):
    enough capacity for cell morphology, cheap enough to train on two cores.

    Input is standardised per image and channel (of RGB or of
    :class:`LabColourSpace`), which removes most of the global brightness and
    stain shift between labs before the first conv. ``mixstyle``: the
    probability of :class:`MixStyle` after each of the first three stages.
    """
    inputs = keras.Input((img_size, img_size, 3), name="image")
    if colour_space == "lab":
        x = LabColourSpace(name="lab_colour_space")(inputs)
    elif colour_space == "reinhard":
        x = layers.Rescaling(1 / 255.0, name="rescale")(ReinhardTransfer(name="reinhard_transfer")(inputs))
    else:
        x = layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    x = layers.LayerNormalization(axis=(1, 2), center=False, scale=False, epsilon=1e-3, name="per_image_standardise")(x)
    x = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name="conv1_conv")(x)
    x = _norm(norm, "conv1_norm")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    if mixstyle:
        x = MixStyle(mixstyle, name="conv1_mixstyle")(x)
    for i, mult in enumerate((1, 2, 4, 8), start=2):
        x = _conv_block(x, width * mult, f"conv{i}", norm)
        if i < 5:
            x = layers.MaxPooling2D(name=f"conv{i}_pool")(x)
        if mixstyle and i < 4:  # the first three stages: style, not yet class
            x = MixStyle(mixstyle, name=f"conv{i}_mixstyle")(x)
    outputs = classification_head(x, num_classes, dropout)
    return keras.Model(inputs, outputs, name=f"compact_{norm}")


def _caffe_preprocess() -> layers.Layer:
    """RGB 0-255 to the BGR mean-centred input that ImageNet ResNet50 weights
    expect, as a frozen 1x1 conv so the model file needs no custom code."""
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    for rgb_channel, bgr_channel in ((0, 2), (1, 1), (2, 0)):
        kernel[0, 0, rgb_channel, bgr_channel] = 1.0
    layer = layers.Conv2D(3, 1, name="caffe_preprocess", trainable=False)
    layer.build((None, None, None, 3))
    layer.set_weights([kernel, -np.asarray(_CAFFE_MEAN_BGR, np.float32)])
    return layer


def build_resnet50(
    num_classes: int, img_size: int, weights: str | os.PathLike | None = "none", dropout: float = 0.3,
) -> tuple[keras.Model, str]:
    """ResNet50 with its ImageNet top replaced. ``weights``: 'imagenet' (a
    local file, see :func:`find_imagenet_weights`), 'none', or a path to the
    ImageNet no-top weights file. Returns the model and the weights origin."""
    if weights in (None, "none"):
        weights_file, origin = None, "random initialisation (trained from scratch)"
    else:
        weights_file = find_imagenet_weights(None if weights == "imagenet" else weights)
        origin = f"ImageNet ({weights_file.name})"
    base = keras.applications.ResNet50(
        include_top=False, weights=str(weights_file) if weights_file else None, input_shape=(img_size, img_size, 3),
    )
    inputs = keras.Input((img_size, img_size, 3), name="image")
    x = _caffe_preprocess()(inputs)
    x = base(x)
    outputs = classification_head(x, num_classes, dropout)
    return keras.Model(inputs, outputs, name="resnet50_wbc"), origin


def replace_head(model: keras.Model, num_classes: int, dropout: float = 0.3) -> keras.Model:
    """Keep a trained WBC model's backbone and give it a fresh head for a new class list."""
    features = model.get_layer("features").output
    x = layers.Dropout(dropout, name="head_dropout_new")(features)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions_new")(x)
    return keras.Model(model.input, outputs, name=model.name)


def iter_layers(model: keras.Layer) -> Iterator[keras.Layer]:
    for layer in getattr(model, "layers", []):
        yield layer
        yield from iter_layers(layer)


def _stage_of(name: str) -> str | None:
    if name.startswith("pool1"):
        return "conv1"
    prefix = name.split("_")[0]
    return prefix if prefix in STAGES else None


def apply_freeze(model: keras.Model, freeze_until: str = "none") -> None:
    """Freeze every stage up to and including ``freeze_until`` ('backbone':
    all but the head). A frozen BatchNormalization runs in inference mode in
    Keras, so its statistics stay those of the base model."""
    if freeze_until not in FREEZE_CHOICES:
        raise ValueError(f"freeze_until must be one of {', '.join(FREEZE_CHOICES)}")
    head = {"features", "head_dropout", "predictions", "head_dropout_new", "predictions_new"}
    frozen_stages: Sequence[str] = () if freeze_until == "none" else STAGES[: STAGES.index(freeze_until) + 1] if freeze_until in STAGES else STAGES
    for layer in iter_layers(model):
        if getattr(layer, "layers", None):
            layer.trainable = True  # containers: decided per inner layer
            continue
        stage = _stage_of(layer.name)
        if layer.name in head:
            layer.trainable = True
        elif layer.name == "caffe_preprocess":
            layer.trainable = False
        elif freeze_until == "backbone":
            layer.trainable = False
        else:
            layer.trainable = stage not in frozen_stages if stage else True


def count_params(model: keras.Model) -> tuple[int, int]:
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    return trainable, total
