"""Leak-free, stratified train/validation/test splits saved as a manifest.

Near-duplicate images and files of one source group (a regex on the file
name, e.g. the smear photo a crop came from) are joined into one group, and a
group never straddles two sides. The manifest pins the test set for every
later evaluation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io.atomic import write_text

SPLITS = ("train", "val", "test")


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def source_groups(paths: Sequence[Path], group_by: str | None, linked_pairs: Sequence[tuple[int, int]] = ()) -> np.ndarray:
    """Group id per file: files whose names give the same ``group_by`` match,
    and files linked by a pair (duplicates), share a group."""
    n = len(paths)
    uf = _UnionFind(n)
    if group_by:
        pattern = re.compile(group_by)
        first_of_key: dict[str, int] = {}
        for i, p in enumerate(paths):
            m = pattern.search(Path(p).name)
            if m:
                key = m.group(1) if m.groups() else m.group(0)
                uf.union(i, first_of_key.setdefault(key, i))
    for a, b in linked_pairs:
        uf.union(a, b)
    roots = [uf.find(i) for i in range(n)]
    _, group_ids = np.unique(roots, return_inverse=True)
    return group_ids


def assign_splits(labels: np.ndarray, groups: np.ndarray, val_frac: float, test_frac: float, seed: int) -> np.ndarray:
    """Per class, shuffle the groups whose majority label is that class and
    fill test, then validation, to their fractions; the rest trains."""
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise ValueError("val and test fractions must be in [0, 1) and sum to less than 1")
    rng = np.random.default_rng(seed)
    split = np.empty(len(labels), dtype=object)
    group_ids = np.unique(groups)
    members = {g: np.flatnonzero(groups == g) for g in group_ids}
    majority = {g: np.bincount(labels[m]).argmax() for g, m in members.items()}
    for cls in np.unique(labels):
        cls_groups = [g for g in group_ids if majority[g] == cls]
        rng.shuffle(cls_groups)
        total = sum(len(members[g]) for g in cls_groups)
        targets = {"test": test_frac * total, "val": val_frac * total}
        filled = {"test": 0, "val": 0}
        for g in cls_groups:
            side = "train"
            for s in ("test", "val"):
                # at least one group per side when the class has three or more groups
                wants_first = filled[s] == 0 and targets[s] > 0 and len(cls_groups) >= 3
                if wants_first or filled[s] + len(members[g]) / 2 <= targets[s]:
                    side = s
                    break
            if side != "train":
                filled[side] += len(members[g])
            split[members[g]] = side
    return split.astype(str)


@dataclass
class SplitManifest:
    root: str
    sources: list[str]  # labelled folders, relative to root ('.' for root itself)
    classes: list[str]
    paths: list[str]  # relative to root
    labels: list[str]
    groups: list[int]
    splits: list[str]
    seed: int
    val_frac: float
    test_frac: float
    group_by: str | None

    def save(self, path: str | Path) -> None:
        write_text(path, json.dumps(self.__dict__, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "SplitManifest":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a split manifest ({exc})") from None

    def files(self, subset: str) -> tuple[list[Path], list[str]]:
        """Absolute paths and labels of one side; a moved dataset can be
        re-rooted by editing ``root``."""
        root = Path(self.root)
        chosen = [(root / p, lab) for p, lab, s in zip(self.paths, self.labels, self.splits) if s == subset]
        return [p for p, _ in chosen], [lab for _, lab in chosen]

    def counts(self) -> dict[str, dict[str, int]]:
        out = {s: {c: 0 for c in self.classes} for s in SPLITS}
        for lab, s in zip(self.labels, self.splits):
            out[s][lab] += 1
        return out

    def describe(self) -> str:
        counts = self.counts()
        width = max(len(c) for c in self.classes)
        lines = [f"{'class':<{width}}  {'train':>6} {'val':>6} {'test':>6}"]
        lines += [f"{c:<{width}}  {counts['train'][c]:>6} {counts['val'][c]:>6} {counts['test'][c]:>6}" for c in self.classes]
        return "\n".join(lines)
