"""Shared bench helpers: generated images and child processes that report
their own peak memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# Appended to child code: its own peak resident memory. VmHWM, not ru_maxrss:
# Linux carries ru_maxrss across exec, so a child would inherit the bench's peak.
PEAK = """
def _peak_mb():
    try:
        for line in open('/proc/self/status'):
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil
    return psutil.Process().memory_info().peak_wset / 2**20  # Windows
RESULT['peak_mb'] = _peak_mb()
import json; print(json.dumps(RESULT))
"""


def make_jpegs(folder: Path, n: int, size: int = 224, seed: int = 0, nucleus: float = 0.5) -> list[Path]:
    """Cell-like JPEGs the size of PBC crops, so decoding costs what real files cost."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        im = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(220, 245, 3)))
        d = ImageDraw.Draw(im)
        for _ in range(6):
            x, y = rng.integers(0, size, 2)
            d.ellipse([x - 25, y - 25, x + 25, y + 25], fill=(230, 170, 175))
        r = int(rng.integers(40, 70))
        c = size // 2
        d.ellipse([c - r, c - r, c + r, c + r], fill=(200, 170, 215))
        rn = int(r * nucleus)
        d.ellipse([c - rn, c - rn, c + rn, c + rn], fill=(90, 40, 130))
        arr = np.clip(np.asarray(im, np.int16) + rng.integers(-8, 9, (size, size, 3)), 0, 255).astype(np.uint8)
        path = folder / f"cell_{i:04d}.jpg"
        Image.fromarray(arr).save(path, quality=90)
        files.append(path)
    return files


def run_child(code: str, env: dict | None = None, timeout: int = 900) -> dict:
    """Run ``code`` (which fills a dict RESULT) in a fresh Python and return
    RESULT with the child's peak memory: each measurement starts clean."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", QT_QPA_PLATFORM="offscreen", **(env or {}))
    proc = subprocess.run([sys.executable, "-c", "RESULT = {}\n" + code + "\n" + PEAK], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"bench child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
