"""Self-describing model files: a standard ``.keras`` archive with the model
card (``wbc_card.json``) stored inside it, so a model file needs nothing
beside it to be used or audited.

Keras is imported inside the functions that need it: reading a card (the
app's model list, start-up) must not pay for loading TensorFlow."""

from __future__ import annotations

import datetime as _dt
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ... import __version__
from ..io.atomic import atomic_path
from ..data.preprocess import RESIZE_METHOD
from ..locate.framing import FRAMINGS

CARD_ENTRY = "wbc_card.json"
CARD_FORMAT = 1


class ModelFileError(Exception):
    pass


def _keras():
    import keras

    from . import builders  # noqa: F401  registers the engine's own layers before any model is loaded

    return keras


def new_card(
    *, name: str, classes: list[str], input_size: int, architecture: str, weights_origin: str, framing: str = "as_is",
    **extra: Any,
) -> dict[str, Any]:
    card = {
        "format": CARD_FORMAT,
        "name": name,
        "classes": list(classes),
        "input_size": int(input_size),
        "preprocessing": {
            "input": "RGB uint8 0-255, HxWx3",
            "resize": RESIZE_METHOD,
            "framing": framing,
            "normalisation": "inside the model (its first layers)",
        },
        "architecture": architecture,
        "weights_origin": weights_origin,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "engine_version": __version__,
        "keras_version": _keras().__version__,
    }
    card.update(extra)
    return card


def framing_of(card: dict) -> str:
    """How the model's crops are cut in use (``locate.framing``): the card's
    ``test_framing`` where the protocol chose a cut other than the training
    one (as it chooses the views), else the framing it was trained with;
    models made before framing existed saw crops as they are."""
    framing = card.get("test_framing") or card.get("preprocessing", {}).get("framing", "as_is")
    if framing not in FRAMINGS:
        raise ValueError(f"the model card asks for crops framed {framing!r}; this version knows {tuple(FRAMINGS)}")
    return framing


VIEW_COUNTS = (1, 4)


def default_views(card: dict) -> int:
    """How many test-time views (``infer.classify.tta_views``) the model is
    run with by default: the count its protocol scored best per unit of
    compute. Models made before the card said so were chosen with four."""
    views = int(card.get("test_views", 4))
    if views not in VIEW_COUNTS:
        raise ValueError(f"the model card asks for {views} test-time views; this version knows {VIEW_COUNTS}")
    return views


def views_phrase(views: int) -> str:
    return "one view" if views == 1 else f"{views} views"


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def inference_copy(model, always: bool = False):
    """A copy without optimizer state (a shipped file needs weights only, a
    third of the size); with ``always``, a copy even of an uncompiled model,
    to change without touching the original."""
    if getattr(model, "optimizer", None) is None and not always:
        return model
    copy = _keras().Model.from_config(model.get_config())  # clone_model would compile it again
    copy.set_weights(model.get_weights())
    return copy


def save_model(model, card: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write model and card atomically: a failed save never replaces a good file."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelFileError(f"{path}: model files must end in .keras")
    missing = {"classes", "input_size"} - set(card)
    if missing:
        raise ModelFileError(f"model card lacks {sorted(missing)}")
    if len(card["classes"]) != model.output_shape[-1]:
        raise ModelFileError("model card classes do not match the model's outputs")
    with atomic_path(path) as tmp:
        inference_copy(model).save(tmp)
        with zipfile.ZipFile(tmp, "a") as z:
            z.writestr(CARD_ENTRY, json.dumps(_jsonable(card), indent=1))
    return path


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """The card alone, without loading TensorFlow weights: cheap enough for a
    models list or an About box."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        with zipfile.ZipFile(path) as z:
            if CARD_ENTRY not in z.namelist():
                raise ModelFileError(f"{path}: not a WBC Desktop model (no model card inside)")
            card = json.loads(z.read(CARD_ENTRY))
    except zipfile.BadZipFile:
        raise ModelFileError(f"{path}: damaged or not a model file (not a .keras archive)") from None
    except (ValueError, KeyError, OSError) as exc:
        raise ModelFileError(f"{path}: damaged model card ({exc})") from None
    if not isinstance(card, dict) or not isinstance(card.get("classes"), list) or "input_size" not in card:
        raise ModelFileError(f"{path}: model card is incomplete")
    return card


def load_model(path: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """Load in Keras safe mode: a model file can never run code of its own."""
    card = read_card(path)
    try:
        model = _keras().saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad archive
        raise ModelFileError(f"{path}: the model inside cannot be loaded ({type(exc).__name__}: {exc})") from None
    if model.output_shape[-1] != len(card["classes"]):
        raise ModelFileError(f"{path}: model outputs {model.output_shape[-1]} classes but its card lists {len(card['classes'])}")
    return model, card


def update_card(path: str | os.PathLike, **changes: Any) -> dict[str, Any]:
    """Rewrite the card inside an existing model file (e.g. add test metrics)."""
    path = Path(path)
    card = read_card(path)
    card.update(_jsonable(changes))
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                if item.filename != CARD_ENTRY:
                    dst.writestr(item, src.read(item.filename))
            dst.writestr(CARD_ENTRY, json.dumps(card, indent=1))
    return card
