import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from synth import make_labeled_folder  # noqa: E402

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    """Caches and user data of each test stay out of the real profile."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("WBC_CACHE_DIR", str(base / "cache"))
    monkeypatch.setenv("WBC_DATA_DIR", str(base / "userdata"))


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    return make_labeled_folder(tmp_path_factory.mktemp("synth") / "cells", per_class=30, seed=1)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """An untrained but complete model file (32 px, three classes): enough
    to exercise loading and classification without training."""
    import keras

    from wbc_desktop.engine.models.modelfile import new_card, save_model
    from wbc_desktop.engine.models.builders import build_compact

    keras.utils.set_random_seed(0)
    model = build_compact(3, 32, width=8)
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    card = new_card(name="tiny test model", classes=["neutrophil", "eosinophil", "lymphocyte"], input_size=32,
                    architecture="compact", weights_origin="random")
    save_model(model, card, path)
    return path


@pytest.fixture(scope="session")
def trained_model_path(tmp_path_factory, synth_dir):
    """A compact model really trained on the synthetic cells (a few seconds)."""
    from wbc_desktop.engine.models.modelfile import save_model
    from wbc_desktop.engine.data.augment_config import AugmentConfig
    from wbc_desktop.engine.data.prepare import prepare_data
    from wbc_desktop.engine.train.config import TrainConfig
    from wbc_desktop.engine.train.trainer import train

    out = tmp_path_factory.mktemp("trained")
    cfg = TrainConfig(img_size=40, epochs=15, batch_size=16, lr=3e-3, width=16, patience=15, norm="group",
                      augment=AugmentConfig(flip=True, rotate=True, affine=0.0, scale=0.0, brightness_contrast=0.0, stain=0.0,
                                              grayscale=0.0, blur=0.0))
    data = prepare_data(synth_dir, cfg.img_size, seed=cfg.seed)
    result = train(cfg, data, out / "run", name="synthetic")
    path = out / "synthetic.keras"
    save_model(result.model, result.card, path)
    return path


def shared_dataset(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"{path} is not available")
    return path


def rgb_noise(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def settings(tmp_path):
    """The app's settings in a file of the test's own, with an operator set."""
    from PySide6.QtCore import QSettings

    s = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    s.setValue("review/operator", "T. Tester")
    return s


def open_window(qtbot, settings, model_path):
    """The main window, shown, with ``model_path`` loaded."""
    from wbc_desktop.gui.main_window import MainWindow

    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.model_ready, timeout=60000):
        window.load_model(model_path)
    return window


def heavy_modules_after(code: str) -> list[str]:
    """Which of TensorFlow and Keras a fresh interpreter has loaded after ``code``."""
    import subprocess

    probe = code + "\nimport sys; print('LOADED', [m for m in ('tensorflow', 'keras') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("LOADED")]
    assert line, out.stderr[-3000:]
    return eval(line[-1][len("LOADED "):])


def pytest_sessionfinish(session, exitstatus):
    session.config._wbc_exitstatus = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the process once pytest has reported: tearing down the many
    TensorFlow graphs and Qt objects the suite leaves was once seen to keep
    a finished run alive for over ten minutes (in the final garbage
    collection), which would eat CI's time limit. Nothing is left to do here
    that a report depends on."""
    if hasattr(config, "_wbc_exitstatus"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config._wbc_exitstatus)
