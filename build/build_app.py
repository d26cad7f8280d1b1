"""Build the one-folder app with PyInstaller and smoke-test it.

    python build/build_app.py [--dist DIR] [--no-test]

PyInstaller's work files go to a temporary folder, never into the source
tree; the app lands in ``dist/WBC Desktop/`` (git-ignored). Afterwards the
frozen app runs ``--self-test`` offscreen and the script prints the bundle
size, build time and self-test time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def executable(app_dir: Path) -> Path:
    return app_dir / ("WBC Desktop.exe" if sys.platform.startswith("win") else "WBC Desktop")


def self_test(app_dir: Path, out: Path) -> tuple[int, float, str]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", WBC_DATA_DIR=str(out / "userdata"))
    env.pop("WBC_RESOURCES", None)  # the bundle's own resources must be found
    t0 = time.monotonic()
    proc = subprocess.run([str(executable(app_dir)), "--self-test", str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    return proc.returncode, time.monotonic() - t0, proc.stdout + proc.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dist", default=str(ROOT / "dist"))
    parser.add_argument("--no-test", action="store_true")
    args = parser.parse_args()
    if not (ROOT / "resources" / "models" / "wbc_default.keras").exists():
        sys.exit("resources/models/wbc_default.keras is missing: build the shipped model first (training/recipe.py)")
    dist = Path(args.dist)
    with tempfile.TemporaryDirectory(prefix="wbc-pyinstaller-") as work:
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
                        "--workpath", work, "--distpath", str(dist), str(ROOT / "build" / "wbc_desktop.spec")],
                       check=True, cwd=work)
        build_seconds = time.monotonic() - t0
    app_dir = dist / "WBC Desktop"
    print(f"built {app_dir}: {folder_size(app_dir) / 1e6:.0f} MB in {build_seconds:.0f} s")
    if args.no_test:
        return 0
    out = Path(tempfile.mkdtemp(prefix="wbc-frozen-selftest-"))
    rc, seconds, log = self_test(app_dir, out)
    print(log)
    print(f"self-test exit code {rc} in {seconds:.1f} s; screenshot {out / 'selftest_window.png'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
