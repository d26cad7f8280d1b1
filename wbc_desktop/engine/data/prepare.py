"""From a labelled folder (or a saved split manifest) to decoded train,
validation and test arrays, the one path every training and evaluation
job takes, so all of them see the same split."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .dataset import (
    DatasetSummary, LabeledSet, decode_images, exact_duplicate_pairs, near_duplicate_pairs, scan_sources, summarize,
)
from ..progress import CancelToken, ProgressFn, no_progress
from .splits import SplitManifest, assign_splits, source_groups


@dataclass
class SplitArrays:
    x: np.ndarray  # N x S x S x 3 uint8
    y: np.ndarray  # N int, index into classes
    paths: list[Path]


@dataclass
class PreparedData:
    classes: list[str]
    img_size: int
    train: SplitArrays
    val: SplitArrays
    test: SplitArrays
    manifest: SplitManifest
    summary: DatasetSummary

    def with_classes(self, classes: Sequence[str]) -> "PreparedData":
        """The same images indexed by a larger class list (a base model's), so
        fine-tuning can keep the base model's head instead of a new random one."""
        classes = list(classes)
        missing = set(self.classes) - set(classes)
        if missing:
            raise ValueError(f"classes {sorted(missing)} are not in {classes}")
        index = np.asarray([classes.index(c) for c in self.classes], dtype=np.int64)
        remap = lambda s: SplitArrays(s.x, index[s.y], s.paths)  # noqa: E731
        return PreparedData(classes, self.img_size, remap(self.train), remap(self.val), remap(self.test),
                            self.manifest, self.summary)

    def sources_of(self, split: SplitArrays) -> list[str]:
        """The source folder (lab) each image of ``split`` comes from."""
        roots = [(s, (Path(self.manifest.root) / s).resolve()) for s in self.manifest.sources]
        return [next((s for s, r in roots if Path(p).resolve().is_relative_to(r)), "") for p in split.paths]

    def data_card(self) -> dict:
        """What a model card records of its training data."""
        counts = self.manifest.counts()
        return {
            "root": self.manifest.root,
            "classes": self.classes,
            "counts": {s: counts[s] for s in counts},
            "group_by": self.manifest.group_by,
            "seed": self.manifest.seed,
            "unreadable_files": len(self.summary.unreadable),
            "duplicate_pairs_joined": len(self.summary.exact_duplicates) + len(self.summary.near_duplicates),
        }


def duplicate_groups(paths: Sequence[Path], decoded, group_by: str | None) -> np.ndarray:
    """Group id per file: one source (``group_by`` on the name), exact and
    near-duplicate copies of one cell together: what must stay on one side."""
    links = exact_duplicate_pairs(decoded.digests) + near_duplicate_pairs(decoded.hashes, decoded.ok)
    return source_groups(paths, group_by, links)


def build_manifest(data: LabeledSet, sources: Sequence[Path], decoded, val_frac: float, test_frac: float, seed: int, group_by: str | None) -> SplitManifest:
    ok = np.flatnonzero(decoded.ok)
    groups = duplicate_groups(data.paths, decoded, group_by)
    splits = np.full(len(data.paths), "", dtype=object)
    splits[ok] = assign_splits(data.labels[ok], groups[ok], val_frac, test_frac, seed)
    root = Path(data.root).resolve()
    return SplitManifest(
        root=str(root),
        sources=[os.path.relpath(Path(s).resolve(), root) for s in sources],
        classes=list(data.classes),
        paths=[os.path.relpath(Path(data.paths[i]).resolve(), root) for i in ok],
        labels=[data.classes[data.labels[i]] for i in ok],
        groups=[int(groups[i]) for i in ok],
        splits=[str(splits[i]) for i in ok],
        seed=seed,
        val_frac=val_frac,
        test_frac=test_frac,
        group_by=group_by,
    )


def _arrays(manifest: SplitManifest, decoded, index_of: dict[Path, int], subset: str, classes: Sequence[str]) -> SplitArrays:
    files, labels = manifest.files(subset)
    rows = [index_of[p.resolve()] for p in files]
    rows_ok = [r for r in rows if decoded.ok[r]]
    x = decoded.pixels[rows_ok] if rows_ok else np.zeros((0, decoded.size, decoded.size, 3), np.uint8)
    y = np.asarray([classes.index(lab) for lab, r in zip(labels, rows) if decoded.ok[r]], dtype=np.int64)
    return SplitArrays(x, y, [decoded.paths[r] for r in rows_ok])


def prepare_data(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    img_size: int,
    *,
    val_frac: float = 0.15,
    test_frac: float = 0.15,
    seed: int = 42,
    group_by: str | None = None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    framing: str = "as_is",
) -> PreparedData:
    """``source``: labelled folder(s) (a new split is made) or a manifest
    ``.json`` (its split is reused as saved)."""
    sources = [Path(source)] if isinstance(source, (str, os.PathLike)) else [Path(s) for s in source]
    if len(sources) == 1 and sources[0].suffix == ".json":
        manifest = SplitManifest.load(sources[0])
        data = scan_sources([Path(manifest.root) / s for s in manifest.sources])
    else:
        manifest = None
        data = scan_sources(sources)
    decoded = decode_images(data.paths, img_size, progress, cancel, framing=framing)
    summary = summarize(data, decoded)
    if manifest is None:
        manifest = build_manifest(data, sources, decoded, val_frac, test_frac, seed, group_by)
    index_of = {Path(p).resolve(): i for i, p in enumerate(data.paths)}
    missing = [p for p in manifest.files("train")[0] + manifest.files("val")[0] + manifest.files("test")[0] if p.resolve() not in index_of]
    if missing:
        raise FileNotFoundError(f"{len(missing)} files of the split manifest are gone, e.g. {missing[0]}")
    classes = manifest.classes
    return PreparedData(
        classes, img_size,
        *(_arrays(manifest, decoded, index_of, s, classes) for s in ("train", "val", "test")),
        manifest=manifest, summary=summary,
    )
