import shutil

import numpy as np
import pytest
from PIL import Image

from synth import make_labeled_folder
from wbc_desktop.engine.data.dataset import (
    collect_images, decode_images, order_classes, scan_labeled, scan_sources, summarize,
)
from wbc_desktop.engine.data.prepare import prepare_data
from wbc_desktop.engine.data.splits import SplitManifest, assign_splits, source_groups


def test_class_order_puts_known_classes_first():
    assert order_classes(["zeta", "lymphocyte", "neutrophil", "alpha"]) == ["neutrophil", "lymphocyte", "alpha", "zeta"]


def test_scan_labeled_and_skips_non_images(tmp_path):
    root = make_labeled_folder(tmp_path / "d", per_class=4)
    (root / "neutrophil" / "Thumbs.db").write_bytes(b"x")
    (root / "lymphocyte" / "nested").mkdir()
    Image.new("RGB", (20, 20)).save(root / "lymphocyte" / "nested" / "deep.png")
    data = scan_labeled(root)
    assert data.classes == ["neutrophil", "eosinophil", "lymphocyte"]
    assert len(data.paths) == 13
    assert [s.reason for s in data.skipped] == ["not an image file type"]


def test_collect_images_keeps_named_files_and_reports_missing(tmp_path):
    odd = tmp_path / "cell.dat"
    odd.write_bytes(b"")
    files, skipped = collect_images([odd, tmp_path / "gone.png"])
    assert files == [odd]
    assert skipped[0].reason == "file not found"


def test_summary_finds_duplicates_unreadable_and_small_classes(tmp_path):
    root = make_labeled_folder(tmp_path / "d", per_class=12, classes=("neutrophil", "monocyte"))
    src = root / "neutrophil" / "neu_0_000.png"
    shutil.copy(src, root / "neutrophil" / "copy.png")
    Image.open(src).save(root / "neutrophil" / "recoded.jpg", quality=92)  # near-duplicate
    (root / "rare").mkdir()
    Image.open(root / "monocyte" / "mon_0_000.png").save(root / "rare" / "one.png")
    (root / "monocyte" / "broken.png").write_text("no")
    data = scan_labeled(root)
    decoded = decode_images(data.paths, 32)
    summary = summarize(data, decoded, expected_classes=["basophil"])
    assert summary.counts == {"neutrophil": 14, "monocyte": 12, "rare": 1}
    assert len(summary.exact_duplicates) == 2  # the copy, and the rare cell that is also a monocyte
    near = {frozenset(p) for p in summary.near_duplicates}
    assert frozenset((str(src), str(root / "neutrophil" / "recoded.jpg"))) in near
    assert [u.path for u in summary.unreadable] == [str(root / "monocyte" / "broken.png")]
    text = " ".join(summary.warnings)
    assert "'rare' has 1 images" in text and "'basophil' is missing" in text
    assert "labelled 'monocyte'" in text and "and 'rare'" in text
    assert "broken.png" in summary.describe()


def test_decode_cache_is_reused_and_invalidated(tmp_path):
    root = make_labeled_folder(tmp_path / "d", per_class=3)
    data = scan_labeled(root)
    first = decode_images(data.paths, 24)
    again = decode_images(data.paths, 24)
    assert np.array_equal(first.pixels, again.pixels)
    Image.new("RGB", (30, 30), (1, 2, 3)).save(data.paths[0])
    changed = decode_images(data.paths, 24)
    assert tuple(changed.pixels[0, 5, 5]) == (1, 2, 3)


def test_groups_join_regex_matches_and_linked_pairs():
    paths = ["BloodImage_00001_1.jpg", "BloodImage_00001_2.jpg", "BloodImage_00002_1.jpg", "x.jpg", "y.jpg"]
    groups = source_groups(paths, r"^(BloodImage_\d+)", linked_pairs=[(3, 4)])
    assert groups[0] == groups[1] != groups[2]
    assert groups[3] == groups[4] != groups[2]


def test_splits_are_stratified_grouped_and_seeded():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [200, 100, 30])
    groups = np.arange(len(labels)) // 2  # pairs of images from one source
    rng.shuffle(groups)
    labels = labels[np.argsort(groups, kind="stable")]
    groups = np.sort(groups)
    split = assign_splits(labels, groups, 0.15, 0.15, seed=7)
    for g in np.unique(groups):
        assert len(set(split[groups == g])) == 1
    for c, n in ((0, 200), (1, 100), (2, 30)):
        test_share = np.mean(split[labels == c] == "test")
        assert 0.08 <= test_share <= 0.25, (c, test_share)
        assert (split[labels == c] == "val").any()
    assert np.array_equal(split, assign_splits(labels, groups, 0.15, 0.15, seed=7))
    assert not np.array_equal(split, assign_splits(labels, groups, 0.15, 0.15, seed=8))


def test_prepare_data_keeps_duplicates_together_and_reuses_manifest(tmp_path):
    root = make_labeled_folder(tmp_path / "d", per_class=20)
    for i in range(5):
        shutil.copy(root / "eosinophil" / f"eos_0_{i:03d}.png", root / "eosinophil" / f"dup_{i}.png")
    data = prepare_data(root, 32, seed=3)
    m = data.manifest
    where = dict(zip(m.paths, m.splits))
    for i in range(5):
        assert where[f"eosinophil/eos_0_{i:03d}.png"] == where[f"eosinophil/dup_{i}.png"]
    assert len(data.train.y) + len(data.val.y) + len(data.test.y) == 65
    m.save(tmp_path / "split.json")
    again = prepare_data(tmp_path / "split.json", 32)
    assert again.manifest.splits == m.splits
    assert [p.name for p in again.test.paths] == [p.name for p in data.test.paths]


def test_manifest_rejects_garbage(tmp_path):
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a split manifest"):
        SplitManifest.load(tmp_path / "bad.json")


def test_several_sources_merge_into_one_set(tmp_path):
    a = make_labeled_folder(tmp_path / "labA", per_class=5, classes=("neutrophil", "lymphocyte"))
    b = make_labeled_folder(tmp_path / "labB", per_class=5, seed=2, classes=("lymphocyte", "monocyte"))
    data = scan_sources([a, b])
    assert data.classes == ["neutrophil", "lymphocyte", "monocyte"]
    assert np.bincount(data.labels).tolist() == [5, 10, 5]
    prepared = prepare_data([a, b], 24, seed=1)
    assert prepared.manifest.sources == ["labA", "labB"]
    assert all(p.startswith(("labA/", "labB/")) for p in prepared.manifest.paths)


def test_with_classes_reindexes_for_a_base_models_head(tmp_path):
    root = make_labeled_folder(tmp_path / "d", per_class=6, classes=("lymphocyte", "neutrophil"))
    data = prepare_data(root, 24, seed=0)
    wide = data.with_classes(["neutrophil", "eosinophil", "basophil", "lymphocyte"])
    assert wide.classes[3] == "lymphocyte"
    names = lambda d: [d.classes[i] for i in d.train.y]  # noqa: E731
    assert names(wide) == names(data)
    with pytest.raises(ValueError):
        data.with_classes(["neutrophil"])
