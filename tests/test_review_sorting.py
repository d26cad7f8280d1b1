import csv

import pytest

from wbc_desktop.engine.review import UNUSABLE, ReviewItem, ReviewSession, autosave_path
from wbc_desktop.engine.sorting import sort_into_folders, undo_moves

CLASSES = ["neutrophil", "eosinophil", "lymphocyte"]


def _session():
    s = ReviewSession(["/data/slide"], CLASSES, model_name="m", threshold=0.7)
    s.add(ReviewItem("/a.png", "neutrophil", 0.95, [0.95, 0.03, 0.02]))
    s.add(ReviewItem("/b.png", "eosinophil", 0.55, [0.4, 0.55, 0.05]))
    s.add(ReviewItem("/c.png", "lymphocyte", 0.40, [0.3, 0.3, 0.4]))
    s.add(ReviewItem("/d.png", error="not an image"))
    return s


def test_differential_uses_reviewed_labels_and_excludes_unusable():
    s = _session()
    d = s.differential()
    assert d["counts"] == {"neutrophil": 1, "eosinophil": 1, "lymphocyte": 1}
    assert d["flagged"] == 2 and d["unreviewed"] == 3 and d["errors"] == 1
    s.set_review(1, "neutrophil")
    s.set_review(2, UNUSABLE)
    d = s.differential()
    assert d["counts"] == {"neutrophil": 2, "eosinophil": 0, "lymphocyte": 0}
    assert d["percent"]["neutrophil"] == 100.0 and d["unusable"] == 1 and d["flagged"] == 0 and d["reviewed"] == 2
    with pytest.raises(ValueError):
        s.set_review(0, "dragon")


def test_next_flagged_follows_view_order_and_wraps():
    s = _session()
    assert s.next_flagged(0) == 1
    assert s.next_flagged(1) == 2
    assert s.next_flagged(2) == 1
    assert s.next_flagged(0, order=[0, 2, 1]) == 2
    s.set_review(1, "eosinophil")
    s.set_review(2, "lymphocyte")
    assert s.next_flagged(0) is None


def test_save_load_and_rerun_keeps_review(tmp_path):
    s = _session()
    s.set_review(1, "neutrophil")
    s.items[1].note = "band form?"
    s.save(tmp_path / "s.json")
    back = ReviewSession.load(tmp_path / "s.json")
    assert back.items[1].reviewed == "neutrophil" and back.items[1].note == "band form?"
    back.add(ReviewItem("/b.png", "lymphocyte", 0.9, [0.05, 0.05, 0.9]))  # classified again
    assert back.get("/b.png").reviewed == "neutrophil" and back.get("/b.png").label == "lymphocyte"
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not a review session"):
        ReviewSession.load(tmp_path / "bad.json")


def test_autosave_path_is_per_folder_and_in_app_data(tmp_path):
    a = autosave_path([tmp_path / "x"])
    assert a == autosave_path([str(tmp_path / "x")]) != autosave_path([tmp_path / "y"])
    assert "sessions" in a.parts


def test_sort_copy_never_overwrites_and_writes_manifest(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png"):
        (src / name).write_bytes(name.encode())
    target = tmp_path / "out"
    (target / "neutrophil").mkdir(parents=True)
    (target / "neutrophil" / "a.png").write_bytes(b"earlier work")
    list(sort_into_folders([(src / "a.png", "neutrophil"), (src / "b.png", "eosinophil")], target))
    assert (target / "neutrophil" / "a.png").read_bytes() == b"earlier work"
    assert (target / "neutrophil" / "a (2).png").read_bytes() == b"a.png"
    assert (src / "a.png").exists()  # copies leave the originals
    manifest = next(target.glob("sorted_*.csv"))
    rows = list(csv.DictReader(manifest.open()))
    assert [r["action"] for r in rows] == ["copy", "copy"] and rows[0]["destination"].endswith("a (2).png")


def test_move_and_undo(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(b"A")
    (src / "b.png").write_bytes(b"B")
    target = tmp_path / "out"
    progress = list(sort_into_folders([(src / "a.png", "lymphocyte"), (src / "b.png", "lymphocyte")], target, move=True))
    assert not (src / "a.png").exists() and (target / "lymphocyte" / "b.png").read_bytes() == b"B"
    manifest = progress[-1].info["manifest"]
    (src / "b.png").write_bytes(b"new file in the old place")
    messages = [p.message for p in undo_moves(manifest)]
    assert (src / "a.png").read_bytes() == b"A"
    assert (src / "b.png").read_bytes() == b"new file in the old place" and "exists again" in messages[1]
