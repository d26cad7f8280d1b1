"""Checks on the real datasets in ../shared/datasets; skipped where absent."""

from collections import Counter

from conftest import shared_dataset
from wbc_desktop.engine.data.dataset import CANONICAL_CLASSES, scan_labeled
from wbc_desktop.engine.data.prepare import prepare_data

BCCD_GROUPS = r"^(BloodImage_\d+)"


def test_pbc_layout_and_class_order():
    data = scan_labeled(shared_dataset("pbc"))
    assert data.classes == list(CANONICAL_CLASSES)
    assert len(data.paths) == 14527 and not data.skipped


def test_bccd_split_keeps_crops_of_one_photo_together():
    data = prepare_data(shared_dataset("bccd"), 64, seed=42, group_by=BCCD_GROUPS)
    m = data.manifest
    sides_per_photo = {}
    for path, side in zip(m.paths, m.splits):
        photo = path.split("/")[-1].rsplit("_", 1)[0]
        sides_per_photo.setdefault(photo, set()).add(side)
    assert all(len(s) == 1 for s in sides_per_photo.values())
    assert sum(len(v) for v in sides_per_photo.values()) >= 300
    counts = Counter(m.splits)
    assert counts["test"] >= 40 and counts["val"] >= 30


def test_tecom_reads_completely():
    data = scan_labeled(shared_dataset("tecom"))
    assert Counter(data.classes[i] for i in data.labels) == {
        "neutrophil": 176, "lymphocyte": 53, "monocyte": 48, "eosinophil": 22, "basophil": 1}
