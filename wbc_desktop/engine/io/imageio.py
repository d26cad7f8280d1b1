"""Decode any microscope image the lab may have into 8-bit RGB.

Every failure becomes an :class:`ImageReadError` that names the file and the
reason, so a batch job can report it and go on with the next file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"})

# Above this many pixels a file is refused rather than risking the 4 GB PC.
MAX_PIXELS = 20_000 * 20_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# JPEGs decode reduced (a 400-megapixel scan in ~1/64 of its memory); other
# formats decode whole, about 4 bytes a pixel with the conversions, so above
# this they are refused: two decoders at once stay under ~1 GB.
MAX_FULL_DECODE_PIXELS = 40_000_000


class ImageReadError(Exception):
    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def is_image_name(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


CAMERA_BITS = (8, 10, 12, 14, 16)


def _deep_samples(im: Image.Image) -> np.ndarray | None:
    """An uncompressed 16-bit RGB TIFF's samples, read before PIL decodes
    it: PIL keeps each sample's high byte only, so a 12-bit camera's photo
    (0-4095) came out nearly black, in 16 levels, and it misreads one saved
    in planes. None for any other file, and for compressed or rotated ones
    (PIL's decode stays)."""
    tiles = im.tile
    if not _is_deep_rgb(im) or not tiles or im.fp is None or im.getexif().get(0x0112, 1) != 1:
        return None
    im.fp.seek(0)
    dtype = np.dtype(">u2" if im.fp.read(2) == b"MM" else "<u2")  # the TIFF header: Motorola or Intel order
    out = np.zeros((im.height, im.width, 3), np.uint16)
    for t in tiles:
        x0, y0, x1, y1 = t.extents
        mode = t.args[0].split(";")[0]  # "RGB": samples side by side; "R", "G", "B": one plane each
        bands = [0, 1, 2] if mode == "RGB" else ["RGB".find(mode)]
        n = (x1 - x0) * (y1 - y0) * len(bands)
        if t.codec_name != "raw" or bands == [-1] or t.args[2] != 1 or t.args[1] not in (0, 2 * n // (y1 - y0)):
            return None
        im.fp.seek(t.offset)
        raw = np.frombuffer(im.fp.read(2 * n), dtype)
        if raw.size != n:
            return None  # a short file: PIL's own decode says so
        out[y0:y1, x0:x1, bands] = raw.reshape(y1 - y0, x1 - x0, len(bands))
    return out


def _is_deep_rgb(im: Image.Image) -> bool:
    return im.format == "TIFF" and im.mode == "RGB" and tuple(getattr(im, "tag_v2", {}).get(258, ())) == (16, 16, 16)


def _from_deep(samples: np.ndarray) -> Image.Image:
    """16-bit samples as 8 bits, scaled by the bits the camera used (the
    fewest of 8-16 that hold the brightest sample): a full-range file looks
    as its 8-bit copy does, a 12-bit one as bright."""
    top = 2 ** next(b for b in CAMERA_BITS if samples.max() < 2 ** b) - 1
    table = np.round(np.arange(top + 1) * (255.0 / top)).astype(np.uint8)  # 1 byte a sample, not 8 of float
    return Image.fromarray(table[samples], "RGB")


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit grey: stretch the used range to 8 bits instead of clipping.
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        im = Image.fromarray(arr.astype(np.uint8), "L")
    elif im.mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64))
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        im = Image.fromarray(arr.astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return im.convert("RGB")


def read_rgb(path: str | os.PathLike, max_side: int | None = None, data: BinaryIO | None = None) -> np.ndarray:
    """Return ``path`` as an HxWx3 uint8 array, EXIF orientation applied.

    ``max_side`` lets huge files decode at reduced size (JPEG draft mode), so a
    10000x10000 scan costs a fraction of its full memory. ``data`` is the
    file's content when the caller has already read it (to hash it).
    """
    return read_rgb_scaled(path, max_side, data)[0]


def longest_side(path: str | os.PathLike) -> int | None:
    """The image's longer side from its header alone (no decode); None where
    the header cannot be read, which the decode then explains."""
    try:
        with Image.open(path) as im:
            return max(im.size)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def read_rgb_scaled(path: str | os.PathLike, max_side: int | None = None,
                    data: BinaryIO | None = None) -> tuple[np.ndarray, float]:
    """:func:`read_rgb` and how many original pixels one decoded pixel
    spans, so that positions found in the decode map back to the file."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(data if data is not None else path) as im:
                original_side = max(im.size)
                if max_side and im.format == "JPEG":
                    im.draft("RGB", (max_side, max_side))
                elif im.width * im.height > MAX_FULL_DECODE_PIXELS:
                    raise ImageReadError(path, f"image too large to decode safely ({im.width}x{im.height}, "
                                               f"{im.width * im.height / 1e6:.0f} megapixels; the limit for "
                                               f"{im.format or 'this format'} is {MAX_FULL_DECODE_PIXELS // 1_000_000} "
                                               "megapixels; save it as JPEG or crop it)")
                deep = _deep_samples(im)  # instead of PIL's decode, which keeps 8 of the 16 bits
                if deep is not None:
                    im = _from_deep(deep)
                else:
                    im.load()  # first frame of multi-page TIFFs
                    if _is_deep_rgb(im) and max(hi for _, hi in im.getextrema()) < 16:
                        raise ImageReadError(path, "a 16-bit TIFF whose values use only the low bits (a 10-14-bit "
                                                   "camera), compressed or rotated, of which only the high byte "
                                                   "can be read here: it would be black; save it uncompressed or "
                                                   "as 8-bit")
                im = ImageOps.exif_transpose(im)
                if max_side and max(im.size) > 2 * max_side:
                    im.thumbnail((2 * max_side, 2 * max_side), Image.Resampling.BILINEAR)
                rgb = _to_rgb(im)
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a folder, not an image") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image file or an unsupported format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(path, f"image too large (over {MAX_PIXELS // 1_000_000} megapixels)") from None
    except MemoryError:
        raise ImageReadError(path, "not enough memory to decode this image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower():
            reason = "file is truncated or damaged"
        raise ImageReadError(path, f"cannot decode: {reason}") from None
    if rgb.width < 8 or rgb.height < 8:
        raise ImageReadError(path, f"image is only {rgb.width}x{rgb.height} pixels")
    return np.asarray(rgb, dtype=np.uint8), original_side / max(rgb.size)
