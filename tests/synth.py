"""Synthetic 'cells' the tests generate: a pale smear background with red
cells and one white cell whose nucleus shape and cytoplasm colour depend on
its class, so a small CNN can learn them in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("neutrophil", "eosinophil", "lymphocyte")
CYTOPLASM = {"neutrophil": (225, 190, 210), "eosinophil": (235, 120, 90), "lymphocyte": (200, 190, 230)}


def cell_image(label: str, rng: np.random.Generator, size: int = 64) -> Image.Image:
    bg = tuple(int(v) for v in rng.integers(225, 245, 3))
    im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    for _ in range(4):  # red cells
        x, y = rng.integers(0, size, 2)
        r = size // 8
        d.ellipse([x - r, y - r, x + r, y + r], fill=(230, 170, 170))
    c = size // 2 + rng.integers(-3, 4, 2)
    r = size // 3
    cyto = CYTOPLASM.get(label, (210, 200, 220))
    d.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=cyto)
    nucleus = (70 + int(rng.integers(0, 20)), 40, 120)
    if label not in ("neutrophil", "eosinophil"):
        rn = int(r * 0.8)
        d.ellipse([c[0] - rn, c[1] - rn, c[0] + rn, c[1] + rn], fill=nucleus)
    else:
        lobes = 3 if label == "neutrophil" else 2
        angle0 = rng.uniform(0, 2 * np.pi)
        for k in range(lobes):
            a = angle0 + 2 * np.pi * k / lobes
            x, y = c[0] + 0.45 * r * np.cos(a), c[1] + 0.45 * r * np.sin(a)
            rl = r * 0.32
            d.ellipse([x - rl, y - rl, x + rl, y + rl], fill=nucleus)
    arr = np.asarray(im, dtype=np.int16) + rng.integers(-6, 7, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def make_labeled_folder(root: Path, per_class: int = 20, seed: int = 0, size: int = 64, classes=CLASSES) -> Path:
    rng = np.random.default_rng(seed)
    for label in classes:
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cell_image(label, rng, size).save(folder / f"{label[:3]}_{seed}_{i:03d}.png")
    return root


def tinted_lab(root, per_class, seed, tint=(0.75, 1.0, 1.25)):
    """Another lab's cells: the same morphology under another stain tint."""
    rng = np.random.default_rng(seed)
    for label in CLASSES:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            px = np.asarray(cell_image(label, rng, 48), np.float32) * np.asarray(tint)
            Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)).save(root / label / f"{label[:3]}_{i:03d}.png")
    return root


def field_image(
    cells: list[tuple[str, int, int]],
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    red_cells: int = 60,
    platelets: int = 4,
    background: tuple[int, int, int] = (236, 232, 226),
    red: tuple[int, int, int] = (222, 160, 160),
    nucleus: tuple[int, int, int] = (90, 40, 130),
    scale: float = 1.0,
) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """A microscope field: red cells (diameter 40 px x ``scale``) all over,
    a few platelets, and a white cell of each ``(label, cx, cy)`` drawn on
    top. Returns the photo and each white cell's true box (x0, y0, x1, y1)."""
    rng = np.random.default_rng(seed)
    w, h = size
    im = Image.new("RGB", size, background)
    d = ImageDraw.Draw(im)
    rr = 20 * scale
    for _ in range(red_cells):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        d.ellipse([x - rr, y - rr, x + rr, y + rr], fill=red)
        pale = tuple(int((a + b) / 2) for a, b in zip(red, background))
        d.ellipse([x - rr / 3, y - rr / 3, x + rr / 3, y + rr / 3], fill=pale)
    for _ in range(platelets):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        rp = 3 * scale
        d.ellipse([x - rp, y - rp, x + rp, y + rp], fill=nucleus)
    boxes = []
    for label, cx, cy in cells:
        r = 30 * scale
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=CYTOPLASM.get(label, (210, 200, 220)))
        if label in ("neutrophil", "eosinophil"):
            for k in range(3 if label == "neutrophil" else 2):
                a = 2 * np.pi * k / (3 if label == "neutrophil" else 2)
                x, y, rl = cx + 0.45 * r * np.cos(a), cy + 0.45 * r * np.sin(a), 0.32 * r
                d.ellipse([x - rl, y - rl, x + rl, y + rl], fill=nucleus)
        else:
            rn = 0.75 * r
            d.ellipse([cx - rn, cy - rn, cx + rn, cy + rn], fill=nucleus)
        boxes.append((int(cx - r), int(cy - r), int(cx + r), int(cy + r)))
    arr = np.asarray(im, dtype=np.int16) + rng.integers(-5, 6, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), boxes
