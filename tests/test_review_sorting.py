import csv

import pytest

from wbc_desktop.engine.review.session import UNUSABLE, ReviewItem, ReviewSession, autosave_path
from wbc_desktop.engine.review.sorting import sort_into_folders, undo_moves

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
    s.set_review(1, "neutrophil", "A. Tech")
    s.set_review(2, UNUSABLE, "A. Tech")
    d = s.differential()
    assert d["counts"] == {"neutrophil": 2, "eosinophil": 0, "lymphocyte": 0}
    assert d["percent"]["neutrophil"] == 100.0 and d["unusable"] == 1 and d["flagged"] == 0 and d["reviewed"] == 2
    with pytest.raises(ValueError):
        s.set_review(0, "dragon", "A. Tech")


def test_next_flagged_follows_view_order_and_wraps():
    s = _session()
    assert s.next_flagged(0) == 1
    assert s.next_flagged(1) == 2
    assert s.next_flagged(2) == 1
    assert s.next_flagged(0, order=[0, 2, 1]) == 2
    s.set_review(1, "eosinophil", "A. Tech")
    s.set_review(2, "lymphocyte", "A. Tech")
    assert s.next_flagged(0) is None


def test_save_load_and_rerun_keeps_review(tmp_path):
    s = _session()
    s.set_review(1, "neutrophil", "A. Tech")
    s.items[1].note = "band form?"
    s.save(tmp_path / "s.json")
    back = ReviewSession.load(tmp_path / "s.json")
    assert back.items[1].reviewed == "neutrophil" and back.items[1].note == "band form?"
    assert back.audit == s.audit and back.audit[0]["operator"] == "A. Tech"
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
    list(sort_into_folders([(src / "a.png", "neutrophil", None), (src / "b.png", "eosinophil", None)], target))
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
    progress = list(sort_into_folders([(src / "a.png", "lymphocyte", None), (src / "b.png", "lymphocyte", None)], target, move=True))
    assert not (src / "a.png").exists() and (target / "lymphocyte" / "b.png").read_bytes() == b"B"
    manifest = progress[-1].info["manifest"]
    (src / "b.png").write_bytes(b"new file in the old place")
    messages = [p.message for p in undo_moves(manifest)]
    assert (src / "a.png").read_bytes() == b"A"
    assert (src / "b.png").read_bytes() == b"new file in the old place" and "exists again" in messages[1]


EIGHT = ["neutrophil", "eosinophil", "basophil", "lymphocyte", "monocyte", "ig", "erythroblast", "platelet"]


def _eight_class_session(labels: list[str]) -> ReviewSession:
    s = ReviewSession(["/slide"], EIGHT, threshold=0.5)
    for i, label in enumerate(labels):
        s.add(ReviewItem(f"/{i}.png", label, 0.9))
    return s


def test_differential_counts_leukocytes_only_nrbc_per_100_and_platelets_apart():
    s = _eight_class_session(["neutrophil"] * 6 + ["lymphocyte"] * 3 + ["ig"] + ["erythroblast"] * 2 + ["platelet"] * 4)
    d = s.differential()
    assert list(d["counts"]) == EIGHT[:6]  # IG is a leukocyte; erythroblasts and platelets are not
    assert d["total"] == 10 and d["percent"]["neutrophil"] == 60.0 and d["percent"]["ig"] == 10.0
    assert d["nrbc"] == 2 and d["nrbc_per_100_wbc"] == 20.0 and d["platelets_seen"] == 4
    assert d["refer"] == ["ig present (1)", "erythroblast present (2)"]
    assert "NRBC" in d["convention"] and "platelets" in d["convention"]


def test_referral_rules_are_configurable_and_count_unusable_cells():
    from wbc_desktop.engine.review.differential import ReferralRules

    s = _eight_class_session(["neutrophil"] * 8 + ["monocyte"] * 2)
    assert s.differential()["refer"] == []
    s.set_review(0, UNUSABLE, "A. Tech")
    s.set_review(1, UNUSABLE, "A. Tech")
    assert s.differential()["refer"] == ["20 % of cells unusable (limit 10 %)"]
    assert s.differential(ReferralRules(max_unusable_percent=25))["refer"] == []
    assert s.differential(ReferralRules(refer_on_any=("monocyte",), max_unusable_percent=25))["refer"] == [
        "monocyte present (2)"]


def test_every_review_change_is_audited_with_operator_time_old_and_new():
    s = _session()
    s.set_review(1, "neutrophil", "A. Tech")
    s.set_review(1, "neutrophil", "A. Tech")  # no change, no entry
    s.set_review(1, None, "B. Smith")
    s.set_review(2, "lymphocyte", "B. Smith")  # confirms the model: audited, but not a change from the model
    assert [(e["operator"], e["path"], e["model"], e["old"], e["new"]) for e in s.audit] == [
        ("A. Tech", "/b.png", "eosinophil", None, "neutrophil"),
        ("B. Smith", "/b.png", "eosinophil", "neutrophil", None),
        ("B. Smith", "/c.png", "lymphocyte", None, "lymphocyte"),
    ]
    assert all(e["time"] for e in s.audit)
    assert s.reviewers() == ["A. Tech", "B. Smith"] and s.changed_from_model() == 0
    s.set_review(0, "eosinophil", "B. Smith")
    assert s.changed_from_model() == 1


def test_csv_exports_say_where_each_cell_is_counted(tmp_path):
    from wbc_desktop.engine.review.export import differential_csv_path, write_differential_csv, write_review_csv

    s = _eight_class_session(["neutrophil"] * 4 + ["erythroblast", "platelet"])
    s.set_review(0, UNUSABLE, "A. Tech")
    write_review_csv(s, tmp_path / "cells.csv")
    rows = list(csv.DictReader((tmp_path / "cells.csv").open()))
    assert [r["counted_as"] for r in rows] == ["not counted (unusable)", "WBC", "WBC", "WBC", "NRBC", "platelet"]
    path = differential_csv_path(tmp_path / "cells.csv")
    assert path.name == "cells_differential.csv"
    write_differential_csv(s, path)
    table = {r["class"]: r for r in csv.DictReader(path.open())}
    assert table["neutrophil"]["count"] == "3" and table["neutrophil"]["percent_of_wbc"] == "100.0"
    assert table["Total WBC"]["count"] == "3" and table["NRBC (per 100 WBC)"]["percent_of_wbc"] == "33.3"
    assert table["Platelets seen (not white cells)"]["count"] == "1"
    assert table["Needs a haematologist"]["count"] == "yes" and table["Reviewed by"]["count"] == "A. Tech"


def test_a_note_a_spreadsheet_would_run_as_a_formula_stays_text(tmp_path):
    from wbc_desktop.engine.review.export import write_review_csv

    s = _eight_class_session(["neutrophil"] * 5)
    notes = ["-ve", "=HYPERLINK(\"http://x\",\"see\")", "+2 bands", "@slide 3", "left lobe -ve"]
    for row, note in enumerate(notes):
        s.items[row].note = note
    write_review_csv(s, tmp_path / "cells.csv")
    rows = list(csv.DictReader((tmp_path / "cells.csv").open()))
    assert [r["note"] for r in rows] == ["'-ve", "'=HYPERLINK(\"http://x\",\"see\")", "'+2 bands", "'@slide 3",
                                         "left lobe -ve"]
    assert [r["path"] for r in rows] == [it.path for it in s.items]  # paths and numbers as they were
    assert all(float(r["confidence"]) > 0 for r in rows)
    from wbc_desktop.engine.io.csvio import as_text

    assert [as_text(v) for v in ("-0.5", "+3", -2, "1e-3")] == ["-0.5", "+3", -2, "1e-3"]


def test_cells_of_a_field_photo_are_kept_apart_counted_once_and_saved():
    from wbc_desktop.engine.infer.modes import NO_WHITE_CELL
    from wbc_desktop.engine.review.differential import counts_per_photo

    s = ReviewSession(["x"], ["neutrophil", "lymphocyte", "erythroblast"])
    for cell, label, border in ((0, "neutrophil", False), (1, "lymphocyte", False), (2, "neutrophil", True)):
        s.add(ReviewItem("/f/a.jpg", label, 0.9, cell=cell, box=[10 * cell, 5, 40, 40], at_border=border))
    s.add(ReviewItem("/f/b.jpg", "erythroblast", 0.9, cell=0, box=[0, 0, 30, 30]))
    s.add(ReviewItem("/f/crop.png", "lymphocyte", 0.9, box=[2, 2, 20, 20]))
    s.add(ReviewItem("/f/empty.jpg", error=NO_WHITE_CELL))
    s.add(ReviewItem("/f/a.jpg", "lymphocyte", 0.8, cell=1, box=[10, 5, 40, 40]))  # a re-run replaces, never adds
    assert len(s.items) == 6 and s.cells_of("/f/a.jpg") == [0, 1, 2]
    assert s.get("/f/a.jpg#2").at_border and s.get("/f/crop.png").field_box is None
    d = s.differential()
    assert (d["total"], d["nrbc"], d["no_white_cell"], d["errors"], d["at_border"]) == (4, 1, 1, 0, 1)
    assert counts_per_photo(s.items, s.classes) == [
        ("/f/a.jpg", {"neutrophil": 2, "lymphocyte": 1}, 1), ("/f/b.jpg", {"neutrophil": 0, "lymphocyte": 0}, 0)]
    s.set_review(s.index_of("/f/a.jpg#1"), "neutrophil", "A. Tech")
    assert s.audit[-1]["cell"] == 1 and s.get("/f/a.jpg#0").reviewed is None


def test_a_field_session_survives_saving(tmp_path):
    s = ReviewSession(["x"], ["neutrophil"], mode="fields")
    s.add(ReviewItem("/f/a.jpg", "neutrophil", 0.9, cell=1, box=[1, 2, 3, 4], at_border=True))
    s.save(tmp_path / "s.json")
    again = ReviewSession.load(tmp_path / "s.json")
    assert again.mode == "fields" and again.get("/f/a.jpg#1").box == [1, 2, 3, 4] and again.get("/f/a.jpg#1").at_border
