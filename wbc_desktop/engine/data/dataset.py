"""Find labelled and unlabelled cell images, decode them once into a cached
array at the model's input size, and summarise what a dataset holds."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from ... import paths
from ..io.imageio import ImageReadError, is_image_name
from ..locate.white_cells import LOCALISER_VERSION
from .preprocess import RESIZE_METHOD, load_square
from ..progress import CancelToken, Progress, ProgressFn, no_progress

# The order of the shipped model; other class names follow alphabetically.
CANONICAL_CLASSES = (
    "neutrophil", "eosinophil", "basophil", "lymphocyte", "monocyte", "ig", "erythroblast", "platelet",
)
MIN_TRAIN_PER_CLASS = 10
NEAR_DUPLICATE_BITS = 24  # of 256 pHash bits


def order_classes(names: Iterable[str]) -> list[str]:
    names = set(names)
    known = [c for c in CANONICAL_CLASSES if c in names]
    return known + sorted(names - set(known))


@dataclass
class Skipped:
    path: str
    reason: str


@dataclass
class LabeledSet:
    root: Path
    classes: list[str]
    paths: list[Path]
    labels: np.ndarray  # int index into classes
    skipped: list[Skipped] = field(default_factory=list)


def _walk_files(folder: Path) -> tuple[list[Path], list[Skipped]]:
    """Every file under ``folder``, following symbolic links to folders (a
    lab links slides in from elsewhere) but never into a loop; links that
    lead nowhere are reported, not dropped."""
    found: list[Path] = []
    bad: list[Skipped] = []
    seen: set[tuple[int, int]] = set()

    def visit(directory: Path) -> None:
        try:
            st = directory.stat()
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            bad.append(Skipped(str(directory), _os_reason(exc)))
            return
        if (st.st_dev, st.st_ino) in seen:
            bad.append(Skipped(str(directory), "symbolic link loop: this folder was already read"))
            return
        seen.add((st.st_dev, st.st_ino))
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()  # follows links
                path.stat()
            except OSError as exc:
                bad.append(Skipped(str(path), _os_reason(exc)))
                continue
            if is_dir:
                visit(path)
            else:
                found.append(path)

    visit(folder)
    return found, bad


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT:
        return "broken link: its target is missing"
    return exc.strerror or str(exc)


def collect_images(inputs: Sequence[str | os.PathLike]) -> tuple[list[Path], list[Skipped]]:
    """Expand files and folders (recursively) into image files.

    A file named explicitly is always kept, whatever its suffix, so the
    decoder can say why it is not an image; inside folders only image
    suffixes count and the rest is listed as skipped.
    """
    files: list[Path] = []
    skipped: list[Skipped] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found, bad = _walk_files(item)
            skipped += bad
            for f in found:
                (files.append(f) if is_image_name(f) else skipped.append(Skipped(str(f), "not an image file type")))
        elif item.exists():
            files.append(item)
        else:
            skipped.append(Skipped(str(item), "file not found"))
    return files, skipped


def sample_in_order(items: Sequence, n: int, seed: int = 0) -> list:
    """At most ``n`` of ``items``, chosen at random (seeded), in their order."""
    rng = np.random.default_rng(seed)
    return [items[i] for i in sorted(rng.permutation(len(items))[:n])]


def require_two_classes(classes: list[str], counts) -> None:
    """A classifier needs at least two classes with images: one class would
    make a model that calls every cell by that name, with full confidence."""
    present = [c for c, n in zip(classes, counts) if n]
    if len(present) < 2:
        found = f"only '{present[0]}'" if present else "none"
        raise ValueError(f"training needs at least two classes with images; found {found} "
                         "(expected <folder>/<class>/<image> with one sub-folder per class)")


def scan_labeled(root: str | os.PathLike) -> LabeledSet:
    """Read a folder whose sub-folders are class names."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    class_dirs = {d.name.lower(): d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    if not class_dirs:
        raise ValueError(f"{root}: no class sub-folders found (expected <folder>/<class>/<image>)")
    classes = order_classes(class_dirs)
    all_paths: list[Path] = []
    labels: list[int] = []
    skipped: list[Skipped] = []
    for index, name in enumerate(classes):
        files, bad = collect_images([class_dirs[name]])
        all_paths += files
        labels += [index] * len(files)
        skipped += bad
    return LabeledSet(root, classes, all_paths, np.asarray(labels, dtype=np.int64), skipped)


def scan_sources(roots: Sequence[str | os.PathLike]) -> LabeledSet:
    """Several labelled folders as one set (e.g. three labs); its root is
    their common parent so a manifest stays relative and portable."""
    parts = [scan_labeled(r) for r in roots]
    if len(parts) == 1:
        return parts[0]
    classes = order_classes(c for part in parts for c in part.classes)
    root = Path(os.path.commonpath([str(Path(r).resolve()) for r in roots]))
    merged = LabeledSet(root, classes, [], np.zeros(0, np.int64))
    labels = []
    for part in parts:
        merged.paths += part.paths
        labels += [classes.index(part.classes[i]) for i in part.labels]
        merged.skipped += part.skipped
    merged.labels = np.asarray(labels, dtype=np.int64)
    return merged


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)
    return np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))


_DCT32 = _dct_matrix(32)


def perceptual_hash(square_rgb: np.ndarray) -> np.ndarray:
    """256-bit DCT hash (pHash) as 4 uint64 words. Low frequencies survive
    JPEG re-encoding, resizing and sensor noise, so re-saved copies of one
    cell still match."""
    from PIL import Image

    grey = Image.fromarray(square_rgb).convert("L").resize((32, 32), Image.Resampling.BOX)
    coeffs = _DCT32 @ np.asarray(grey, dtype=np.float64) @ _DCT32.T
    low = coeffs[:16, :16].ravel()
    bits = low > np.median(low[1:])
    return np.packbits(bits).view(">u8").astype(np.uint64)


@dataclass
class DecodedImages:
    """Images decoded at one size; rows of failed files are zero and ``ok`` is False."""

    paths: list[Path]
    size: int
    pixels: np.ndarray  # N x size x size x 3 uint8
    ok: np.ndarray  # N bool
    hashes: np.ndarray  # N x 4 uint64
    digests: list[str]  # sha1 of the file bytes ('' where unreadable)
    original_sizes: np.ndarray  # N x 2 (width, height)
    errors: list[Skipped]
    framing: str = "as_is"  # see locate.framing


def _decode_one(path: Path, size: int, framing: str):
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(path, exc.strerror or str(exc)) from None
    square = load_square(path, size, data=io.BytesIO(raw), framing=framing)  # raises ImageReadError for a bad file
    with Image.open(io.BytesIO(raw)) as im:  # header only: the original size for the summary
        original = im.size
    return square, perceptual_hash(square), hashlib.sha1(raw).hexdigest(), original


def _cache_key(paths_: Sequence[Path], size: int, framing: str) -> str:
    view = RESIZE_METHOD if framing == "as_is" else f"{RESIZE_METHOD}|{framing}|{LOCALISER_VERSION}"
    h = hashlib.sha1(f"{view}|{size}|phash|v1".encode())
    for p in paths_:
        try:
            st = p.stat()
            h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}|missing\n".encode())
    return h.hexdigest()[:24]


def decode_images(
    paths_: Sequence[Path],
    size: int,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    use_cache: bool = True,
    framing: str = "as_is",
) -> DecodedImages:
    """Decode every file once at ``size``; reuse the on-disk cache when the
    same files (same size and mtime) were decoded before."""
    paths_ = [Path(p) for p in paths_]
    key = _cache_key(paths_, size, framing)
    cache_file = paths.cache_dir() / f"decoded-{key}.npz"
    if use_cache and cache_file.exists():
        try:
            with np.load(cache_file, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                cached = DecodedImages(
                    paths_, size, z["pixels"], z["ok"], z["hashes"], meta["digests"], z["original_sizes"],
                    [Skipped(**e) for e in meta["errors"]], framing,
                )
            return _retry_failures(cached)
        except Exception:  # a damaged cache is only a cache: decode again
            cache_file.unlink(missing_ok=True)
    n = len(paths_)
    pixels = np.zeros((n, size, size, 3), np.uint8)
    ok = np.zeros(n, bool)
    hashes = np.zeros((n, 4), np.uint64)
    digests = [""] * n
    original_sizes = np.zeros((n, 2), np.int32)
    errors: list[Skipped] = []
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        futures = [pool.submit(_decode_one, p, size, framing) for p in paths_]
        for i, fut in enumerate(futures):
            if cancel is not None and cancel.cancelled:
                for f in futures[i:]:
                    f.cancel()
                cancel.raise_if_cancelled()
            try:
                pixels[i], hashes[i], digests[i], original_sizes[i] = fut.result()
                ok[i] = True
            except ImageReadError as exc:
                errors.append(Skipped(exc.path, exc.reason))
            if i % 64 == 0 or i == n - 1:
                progress(Progress("decode", i + 1, n, f"decoding images ({i + 1}/{n})"))
    decoded = DecodedImages(paths_, size, pixels, ok, hashes, digests, original_sizes, errors, framing)
    if use_cache:
        meta = json.dumps({"digests": digests, "errors": [e.__dict__ for e in errors]})
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, pixels=pixels, ok=ok, hashes=hashes, original_sizes=original_sizes, meta=np.asarray(meta))
        os.replace(tmp, cache_file)
    return decoded


def _retry_failures(decoded: DecodedImages) -> DecodedImages:
    """Files that failed last time are tried again: a permission fixed or a
    file replaced since (with the same size and time) must not stay an error."""
    errors = []
    for i in np.flatnonzero(~decoded.ok):
        try:
            decoded.pixels[i], decoded.hashes[i], decoded.digests[i], decoded.original_sizes[i] = _decode_one(
                decoded.paths[i], decoded.size, decoded.framing)
            decoded.ok[i] = True
        except ImageReadError as exc:
            errors.append(Skipped(exc.path, exc.reason))
    decoded.errors = errors
    return decoded


def near_duplicate_pairs(hashes: np.ndarray, valid: np.ndarray, max_bits: int = NEAR_DUPLICATE_BITS) -> list[tuple[int, int]]:
    """Pairs of images whose perceptual hashes differ in at most ``max_bits`` bits."""
    idx = np.flatnonzero(valid)
    h = hashes[idx]
    pairs = []
    for start in range(0, len(idx), 128):
        block = h[start:start + 128]
        dist = np.bitwise_count(block[:, None, :] ^ h[None, :, :]).sum(axis=2)
        rows, cols = np.nonzero(dist <= max_bits)
        for r, c in zip(rows, cols):
            a, b = start + r, c
            if a < b:
                pairs.append((int(idx[a]), int(idx[b])))
    return pairs


def exact_duplicate_pairs(digests: Sequence[str]) -> list[tuple[int, int]]:
    first: dict[str, int] = {}
    pairs = []
    for i, d in enumerate(digests):
        if not d:
            continue
        if d in first:
            pairs.append((first[d], i))
        else:
            first[d] = i
    return pairs


@dataclass
class DatasetSummary:
    root: str
    classes: list[str]
    counts: dict[str, int]
    total: int
    unreadable: list[Skipped]
    skipped: list[Skipped]
    size_min: tuple[int, int] | None
    size_median: tuple[int, int] | None
    size_max: tuple[int, int] | None
    exact_duplicates: list[tuple[str, str]]
    near_duplicates: list[tuple[str, str]]
    warnings: list[str]

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["unreadable"] = [s.__dict__ for s in self.unreadable]
        d["skipped"] = [s.__dict__ for s in self.skipped]
        return d

    def describe(self) -> str:
        lines = [f"Dataset {self.root}: {self.total} readable images in {len(self.classes)} classes"]
        width = max((len(c) for c in self.classes), default=0)
        lines += [f"  {c:<{width}}  {self.counts[c]:>6}" for c in self.classes]
        if self.size_median:
            lines.append(f"  image size (w x h): min {self.size_min}, median {self.size_median}, max {self.size_max}")
        lines.append(f"  exact duplicates: {len(self.exact_duplicates)} pairs; near-duplicates: {len(self.near_duplicates)} pairs")
        for s in self.unreadable:
            lines.append(f"  unreadable: {s.path}: {s.reason}")
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} non-image files")
        lines += [f"  WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)


def summarize(data: LabeledSet, decoded: DecodedImages, expected_classes: Sequence[str] = ()) -> DatasetSummary:
    counts = Counter(int(label) for label, ok in zip(data.labels, decoded.ok) if ok)
    per_class = {c: counts.get(i, 0) for i, c in enumerate(data.classes)}
    warnings = []
    for c, n in per_class.items():
        if n < 3:
            warnings.append(f"class '{c}' has {n} images: too few to split into train, validation and test")
        elif n < MIN_TRAIN_PER_CLASS:
            warnings.append(f"class '{c}' has only {n} images: too few to learn reliably")
    for c in expected_classes:
        if c not in per_class:
            warnings.append(f"class '{c}' is missing from this dataset")
    nonzero = [n for n in per_class.values() if n]
    if nonzero and max(nonzero) > 10 * min(nonzero):
        warnings.append(f"strong class imbalance: largest class {max(nonzero)} vs smallest {min(nonzero)} images")
    exact = exact_duplicate_pairs(decoded.digests)
    for a, b in exact:
        if data.labels[a] != data.labels[b]:
            warnings.append(f"the same image is labelled '{data.classes[data.labels[a]]}' ({data.paths[a]}) "
                            f"and '{data.classes[data.labels[b]]}' ({data.paths[b]})")
    sizes = decoded.original_sizes[decoded.ok]
    rel = lambda i: str(data.paths[i])  # noqa: E731
    stats = None
    if len(sizes):
        stats = [tuple(int(v) for v in f(sizes, axis=0)) for f in (np.min, np.median, np.max)]
    return DatasetSummary(
        root=str(data.root),
        classes=list(data.classes),
        counts=per_class,
        total=int(decoded.ok.sum()),
        unreadable=list(decoded.errors),
        skipped=list(data.skipped),
        size_min=stats[0] if stats else None,
        size_median=stats[1] if stats else None,
        size_max=stats[2] if stats else None,
        exact_duplicates=[(rel(a), rel(b)) for a, b in exact],
        near_duplicates=[(rel(a), rel(b)) for a, b in near_duplicate_pairs(decoded.hashes, decoded.ok)],
        warnings=warnings,
    )
