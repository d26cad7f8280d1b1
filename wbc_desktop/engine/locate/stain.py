"""Colour maps that do not depend on the lab's stain or lamp.

Dividing by the image's own background undoes a yellow or cyan lamp; on the
balanced image, HSV saturation separates nuclei from red cells under every
stain we have (pink-violet May-Grünwald-Giemsa, blue BCCD, yellow Tecom):
nuclei are 0.5-0.75, red cells 0.1-0.25, while darkness or the red channel's
optical density each fail on one lab (measured in training/localiser_eval.py).
A grey image has no saturation to read: there the nucleus is the darkest
part of the cell, and darkness is the map (``is_grey``).
"""

from __future__ import annotations

import numpy as np

PADDING_LEVEL = 20  # pixels darker than this in every channel are a crop's black padding, not tissue
# a pixel whose channels differ by at most this is grey (a grey JPEG saved as
# RGB keeps a little chroma noise); in stained photos and crops of six sources
# the 99th percentile of the spread was 57 or more
GREY_SPREAD = 6


def channel_max(x: np.ndarray) -> np.ndarray:
    """``x.max(axis=-1)`` over three channels, 4x faster: a reduction over a
    last axis of length 3 is strided; element-wise maxima are not."""
    return np.maximum(np.maximum(x[..., 0], x[..., 1]), x[..., 2])


def channel_min(x: np.ndarray) -> np.ndarray:
    return np.minimum(np.minimum(x[..., 0], x[..., 1]), x[..., 2])


def is_grey(rgb: np.ndarray, valid: np.ndarray) -> bool:
    """Whether the image holds no stain colour (a monochrome camera, a grey
    export): 99 % of its tissue pixels grey, so that nuclei (a few per cent
    of a field photo) would show."""
    if not valid.any():
        return False
    spread = channel_max(rgb).astype(np.int16) - channel_min(rgb)
    return float(np.percentile(spread[valid], 99)) <= GREY_SPREAD


def white_balanced(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image scaled so that its background is white (float32, 0-255),
    and the mask of pixels that are tissue or background, not black padding."""
    valid = channel_max(rgb) > PADDING_LEVEL
    if not valid.any():
        return rgb.astype(np.float32), valid
    gain = 255.0 / (background_colour(rgb, valid) + 1.0)
    # a table per channel: the same float32 products, without multiplying along a last axis of length 3
    table = np.minimum(np.arange(256, dtype=np.float32)[:, None] * gain, 255.0)
    out = np.empty(rgb.shape, np.float32)
    for c in range(3):
        out[..., c] = table[rgb[..., c], c]
    return out, valid


def background_colour(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean colour of the brightest tenth of the tissue: the bare slide
    (from every 7th pixel: as good, and the localiser runs for every file)."""
    pixels = x.reshape(-1, 3)[np.flatnonzero(valid)[::7]].astype(np.float32)  # = x[valid][::7], not every pixel
    brightness = pixels.sum(axis=-1)
    return pixels[brightness >= np.percentile(brightness, 90)].mean(axis=0)


def saturation(balanced: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """HSV saturation of the balanced image; zero on padding."""
    s = 1.0 - (channel_min(balanced) + 1.0) / (channel_max(balanced) + 1.0)
    s[~valid] = 0.0
    return s


def darkness(balanced: np.ndarray) -> np.ndarray:
    """0 on the background, 1 on black."""
    return 1.0 - (balanced[..., 0] + balanced[..., 1] + balanced[..., 2]) / 765.0


def otsu_threshold(values: np.ndarray, bins: int = 128) -> float:
    """The threshold that best splits ``values`` into two groups."""
    if values.size == 0:
        return 1.0
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist, dtype=np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m0[-1] * w0 / w0[-1] - m0) ** 2 / (w0 * w1)
    between = np.nan_to_num(between[:-1], nan=-1.0)
    return float(centres[int(np.argmax(between))])
