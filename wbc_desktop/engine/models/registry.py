"""The models a user can choose from: the shipped one plus the user's own
(in the app's data folder). Only cards are read, so listing is instant."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ... import paths
from .modelfile import ModelFileError, read_card
from ..io.files import free_name


@dataclass
class ModelEntry:
    path: Path
    card: dict
    shipped: bool

    @property
    def title(self) -> str:
        return f"{self.card.get('name', self.path.stem)}{' (shipped)' if self.shipped else ''}"


def user_models_dir() -> Path:
    folder = paths.user_data_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def list_models() -> tuple[list[ModelEntry], list[str]]:
    """Readable models, and one message per model file that is not."""
    entries, problems = [], []
    candidates = [(paths.default_model_path(), True)] + [(p, False) for p in sorted(user_models_dir().glob("*.keras"))]
    for path, shipped in candidates:
        if not path.exists():
            continue
        try:
            entries.append(ModelEntry(path, read_card(path), shipped))
        except ModelFileError as exc:
            problems.append(str(exc))
    return entries, problems


def import_model(source: str | Path) -> ModelEntry:
    """Copy a model file into the user's models (the original stays)."""
    card = read_card(source)
    dest = free_name(user_models_dir(), Path(source).name)
    shutil.copy2(source, dest)
    return ModelEntry(dest, card, False)


def delete_model(entry: ModelEntry) -> None:
    if entry.shipped or entry.path.resolve().parent != user_models_dir().resolve():
        raise PermissionError("only the user's own models can be deleted, never the shipped one")
    entry.path.unlink()
