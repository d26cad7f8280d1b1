"""Where the app finds its shipped resources and keeps per-user data.

Resources live beside the package in a source checkout and under
``sys._MEIPASS`` in a PyInstaller build; per-user files go to the platform's
app-data folder, never next to the executable.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "WBC Desktop"
_APP_DIR_NAME = "wbc-desktop"
DEFAULT_MODEL_NAME = "wbc_default.keras"


def resources_dir() -> Path:
    override = os.environ.get("WBC_RESOURCES")
    if override:
        return Path(override)
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def default_model_path() -> Path:
    return resources_dir() / "models" / DEFAULT_MODEL_NAME


def _platform_dir(windows_var: str, posix_var: str, posix_default: str) -> Path:
    if sys.platform.startswith("win"):
        base = os.environ.get(windows_var) or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        base = os.environ.get(posix_var) or str(Path.home() / posix_default)
    return Path(base) / _APP_DIR_NAME


def user_data_dir() -> Path:
    """User models, autosaved review sessions and logs."""
    override = os.environ.get("WBC_DATA_DIR")
    path = Path(override) if override else _platform_dir("LOCALAPPDATA", "XDG_DATA_HOME", ".local/share")
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Decoded-image caches: safe to delete, rebuilt on demand."""
    override = os.environ.get("WBC_CACHE_DIR")
    path = Path(override) if override else _platform_dir("LOCALAPPDATA", "XDG_CACHE_HOME", ".cache") / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path
