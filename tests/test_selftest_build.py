import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_self_test_mode_passes_with_a_bundled_model(tmp_path, trained_model_path):
    resources = tmp_path / "res"
    (resources / "models").mkdir(parents=True)
    shutil.copy(trained_model_path, resources / "models" / "wbc_default.keras")
    env = dict(os.environ, WBC_RESOURCES=str(resources), QT_QPA_PLATFORM="offscreen")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "wbc_desktop", "--self-test", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "self-test: PASSED" in proc.stdout
    assert (out / "selftest_predictions.csv").read_text().count("\n") == 14  # header, 12 cells, 1 damaged
    assert (out / "selftest_window.png").stat().st_size > 10_000


def test_self_test_fails_without_a_model(tmp_path):
    env = dict(os.environ, WBC_RESOURCES=str(tmp_path), QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-m", "wbc_desktop", "--self-test", str(tmp_path / "o")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "model file not found" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_pyinstaller_one_folder_build_runs_its_self_test(tmp_path):
    """Builds the real app (minutes, ~1 GB); run with -m slow."""
    pytest.importorskip("PyInstaller")
    if not (ROOT / "resources" / "models" / "wbc_default.keras").exists():
        pytest.skip("no shipped model to bundle")
    proc = subprocess.run([sys.executable, str(ROOT / "build" / "build_app.py"), "--dist", str(tmp_path / "dist")],
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "self-test: PASSED" in proc.stdout
