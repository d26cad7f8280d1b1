"""The white-cell localiser, cell-centred crops and field mode, on generated
field photos with known boxes and, where present, on the real sets."""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import shared_dataset
from synth import cell_image, field_image
from wbc_desktop.engine.data.preprocess import crop_view, load_square
from wbc_desktop.engine.infer.cells import NO_WHITE_CELL, cut_cells, views_of
from wbc_desktop.engine.infer.domain_check import STAIN_SIDE
from wbc_desktop.engine.locate.annotations import DetectionCount, read_voc, read_yolo
from wbc_desktop.engine.locate.white_cells import LocaliserSettings, find_white_cells, measure_red_cells

THREE = [("neutrophil", 150, 120), ("lymphocyte", 420, 300), ("eosinophil", 560, 100)]


def _found(boxes, cells) -> DetectionCount:
    count = DetectionCount()
    count.add([c.centre for c in cells], boxes)
    return count


@pytest.mark.parametrize("stain", [
    {},  # May-Grünwald-Giemsa on a white lamp
    {"background": (240, 230, 120), "red": (230, 170, 110), "nucleus": (60, 70, 170)},  # blue stain, yellow lamp
    {"background": (200, 235, 240), "red": (190, 180, 200), "nucleus": (110, 50, 120)},  # pink-violet, cyan lamp
])
def test_every_white_cell_found_once_and_nothing_else(stain):
    im, boxes = field_image(THREE, seed=3, **stain)  # 60 red cells and 4 platelets around them
    found = find_white_cells(np.asarray(im))
    count = _found(boxes, found.cells)
    assert (count.found, count.extra, count.missed) == (3, 0, 0)
    assert found.red_cell_diameter == pytest.approx(40, rel=0.15)
    for cell, truth in zip(sorted(found.cells, key=lambda c: c.x), sorted(boxes)):
        assert abs(cell.centre[0] - (truth[0] + truth[2]) / 2) < 8 and abs(cell.centre[1] - (truth[1] + truth[3]) / 2) < 8
        assert 0.6 < cell.w / (truth[2] - truth[0]) < 1.6


@pytest.mark.parametrize("stain", [
    {},
    {"background": (240, 230, 120), "red": (230, 170, 110), "nucleus": (60, 70, 170)},
])
def test_a_grey_photo_is_searched_by_darkness(stain):
    """A grey photo has no saturation to read (before: no cell found, and a
    crop went to the model whole); its nuclei are its darkest pixels."""
    im, boxes = field_image(THREE, seed=3, **stain)
    grey = np.asarray(im.convert("L").convert("RGB"))
    count = _found(boxes, find_white_cells(grey).cells)
    assert (count.found, count.extra, count.missed) == (3, 0, 0)
    colour = sorted(find_white_cells(np.asarray(im)).cells, key=lambda c: c.x)
    for cell, seen_in_colour in zip(sorted(find_white_cells(grey).cells, key=lambda c: c.x), colour):
        assert abs(cell.centre[0] - seen_in_colour.centre[0]) < 12 and abs(cell.centre[1] - seen_in_colour.centre[1]) < 12


def test_violet_red_cells_above_the_threshold_are_split_from_the_nuclei():
    """Red cells stained violet enough to clear the nucleus threshold are
    cells without ``upper_share``; asking each cell to reach half-way to the
    split of the pixels above the threshold drops them and keeps the three
    white cells. (The shipped quarter was chosen on real photos, where it
    drops half of Raabin's false cells and no true one: localiser_eval.py.)"""
    im, boxes = field_image(THREE, seed=3, red=(200, 128, 200), red_cells=30)
    plain = find_white_cells(np.asarray(im), LocaliserSettings(upper_share=0.0)).cells
    split = find_white_cells(np.asarray(im), LocaliserSettings(upper_share=0.5)).cells
    assert _found(boxes, plain).extra > 5
    count = _found(boxes, split)
    assert (count.found, count.extra, count.missed) == (3, 0, 0)


def _iou(a, b) -> float:
    """a, b: (x0, y0, x1, y1)."""
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def test_a_nucleus_joined_to_violet_red_cells_keeps_its_own_box():
    """Violet red cells above the threshold, touching the white cell, joined
    it into one blob: its box was that of the blob (on a quarter of Raabin's
    photos, the whole photo, and the cell was cut as the whole photo). The
    box is now its nucleus core's when the blob's is 3x larger."""
    im, (truth,) = field_image([("lymphocyte", 320, 240)], seed=3, red=(200, 128, 200))

    def box_of_the_white_cell(settings):
        cx, cy = (truth[0] + truth[2]) / 2, (truth[1] + truth[3]) / 2
        (cell,) = [c for c in find_white_cells(np.asarray(im), settings).cells
                   if c.x <= cx <= c.x + c.w and c.y <= cy <= c.y + c.h]
        return cell.x, cell.y, cell.x + cell.w, cell.y + cell.h

    joined = box_of_the_white_cell(LocaliserSettings(core_box_ratio=float("inf")))
    assert (joined[2] - joined[0]) * (joined[3] - joined[1]) > 4 * 60 * 60  # what it was
    assert _iou(box_of_the_white_cell(LocaliserSettings()), truth) > 0.7


def test_sizes_follow_the_red_cells_not_the_pixels():
    """A 2.5x larger photo of the same field gives the same cells, 2.5x larger."""
    im, boxes = field_image([(n, int(x * 2.5), int(y * 2.5)) for n, x, y in THREE], size=(1600, 1200), scale=2.5, seed=3)
    found = find_white_cells(np.asarray(im))
    assert (_found(boxes, found.cells).found, len(found.cells)) == (3, 3)
    assert found.red_cell_diameter == pytest.approx(100, rel=0.15)


def test_a_field_without_white_cells_says_so_and_a_cut_cell_is_flagged():
    empty, _ = field_image([], seed=4)
    assert find_white_cells(np.asarray(empty)).cells == []
    cut, boxes = field_image([("lymphocyte", 625, 240)], seed=5)  # half outside the right edge
    (cell,) = find_white_cells(np.asarray(cut)).cells
    assert cell.at_border and cell.x + cell.w == 640
    whole, _ = field_image([("lymphocyte", 300, 240)], seed=5)
    assert not find_white_cells(np.asarray(whole)).cells[0].at_border


def test_cut_cells_tells_crops_from_fields(tmp_path):
    rng = np.random.default_rng(0)
    crop = tmp_path / "crop.png"
    cell_image("lymphocyte", rng, 96).save(crop)
    field = tmp_path / "field.jpg"
    field_image(THREE, seed=3)[0].save(field, quality=92)
    empty = tmp_path / "empty.png"
    field_image([], seed=4)[0].save(empty)

    (only,) = cut_cells(crop, 40, "as_is")
    assert not only[0].in_field and only[1].shape == (40, 40, 3)
    cells = cut_cells(field, 40, "as_is")
    assert [c.index for c, _, _ in cells] == [0, 1, 2] and all(c.in_field for c, _, _ in cells)
    # numbered as a person reads the photo: the top row (y 100-120) left to right, then y 300
    assert [c.box[0] // 100 for c, _, _ in cells] == [1, 5, 3]
    # the folder warning's view of each cell: its surroundings, as a whole crop would show them
    assert all(around.shape == (STAIN_SIDE, STAIN_SIDE, 3) for _, _, around in cells)
    assert np.array_equal(only[2], load_square(crop, STAIN_SIDE, framing="as_is"))
    assert np.array_equal(cells[1][2], views_of(field, STAIN_SIDE, "as_is", [cells[1][0].box])[0])
    assert cut_cells(empty, 40, "as_is") == []
    # the review's thumbnails: every cell of a photo from one decode, each the view it was classified on
    for framing in ("as_is", "cell_ruler"):
        cut = cut_cells(field, 40, framing)
        views = views_of(field, 40, framing, [c.box for c, _, _ in cut])
        assert all(np.abs(v.astype(int) - s.astype(int)).mean() < 3 for v, (_, s, _) in zip(views, cut)), framing
    assert np.array_equal(views_of(crop, 40, "as_is", [None])[0], only[1])
    # the ruler a review's thumbnails need is measured without searching for the white cells again
    rgb = np.asarray(Image.open(field).convert("RGB"))
    assert measure_red_cells(rgb).red_cell_diameter == find_white_cells(rgb).red_cell_diameter is not None
    # a crop is decoded at inference exactly as training decodes it (a JPEG in draft mode, whatever the mode)
    jpeg = tmp_path / "crop.jpg"
    cell_image("neutrophil", rng, 360).save(jpeg, quality=90)
    for framing in ("as_is", "cell_tight", "cell_ruler"):
        for mode in ("auto", "cells"):
            (cut,) = cut_cells(jpeg, 40, framing, mode=mode)
            assert np.array_equal(cut[1], load_square(jpeg, 40, framing=framing)), (framing, mode)
    assert len(cut_cells(field, 40, "as_is", mode="cells")) == 1  # told it is a crop: one cell
    with pytest.raises(ValueError):
        cut_cells(field, 40, "as_is", mode="everything")


def test_cell_centred_framing_puts_the_cell_in_the_middle_at_one_size(tmp_path):
    """The same cell framed loosely (PBC-like) and tightly (BCCD-like) comes
    out alike once re-cut: that is what framing is for."""
    rng = np.random.default_rng(2)
    big = np.asarray(cell_image("lymphocyte", rng, 200))
    loose = np.full((400, 400, 3), big[2, 2], np.uint8)
    loose[100:300, 100:300] = big
    tight = big[25:175, 25:175]  # the cell fills 90 % of the frame, as in BCCD
    views = [crop_view(x, "cell_tight", 64) for x in (loose, tight)]
    for v in views:
        dark = v.astype(int).sum(-1) < 400  # the nucleus
        ys, xs = np.nonzero(dark)
        assert abs(xs.mean() - 32) < 4 and abs(ys.mean() - 32) < 4
        assert 0.15 < dark.mean() < 0.6
    a, b = [v.astype(int).sum(-1) < 400 for v in views]
    assert (a & b).sum() / (a | b).sum() > 0.7  # the same nucleus at the same place and size
    as_is = [(crop_view(x, "as_is", 64).astype(int).sum(-1) < 400).mean() for x in (loose, tight)]
    assert as_is[0] < 0.5 * as_is[1]  # uncut, the loose crop shows the nucleus at half the size or less
    path = tmp_path / "loose.png"
    Image.fromarray(loose).save(path)
    assert np.array_equal(load_square(path, 64, framing="cell_tight"), views[0])


def _nucleus(view: np.ndarray) -> np.ndarray:
    return view.astype(int).sum(-1) < 400


def test_ruler_framing_keeps_a_cells_size_in_red_cells_at_any_magnification():
    """``cell_ruler`` cuts at least 3.5 red cells wide: a small cell stays
    small next to the tight cut, and the same field at 2.5x the
    magnification gives the same view. A tight crop, which shows no red cell
    whole, is cut as ``cell_tight`` cuts it."""
    views = []
    for scale in (1.0, 2.5):
        size = (int(640 * scale), int(480 * scale))
        im, _ = field_image([("lymphocyte", size[0] // 2, size[1] // 2)], size=size, scale=scale, seed=3)
        rgb = np.asarray(im)
        found = find_white_cells(rgb)
        ruler, tight = crop_view(rgb, "cell_ruler", 64, found), crop_view(rgb, "cell_tight", 64, found)
        assert _nucleus(ruler).mean() < 0.6 * _nucleus(tight).mean()
        views.append(_nucleus(ruler))
    assert (views[0] & views[1]).sum() / (views[0] | views[1]).sum() > 0.7
    field = np.asarray(field_image([("monocyte", 320, 240)], seed=4)[0])
    tight_crop = field[240 - 34:240 + 34, 320 - 34:320 + 34]
    assert np.array_equal(crop_view(tight_crop, "cell_ruler", 64), crop_view(tight_crop, "cell_tight", 64))


def test_cli_field_mode_writes_a_row_per_cell(tmp_path, tiny_model_path, capsys):
    from wbc_desktop.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    field_image(THREE, seed=3)[0].save(folder / "field.jpg", quality=92)
    field_image([], seed=4)[0].save(folder / "empty.png")
    cell_image("lymphocyte", np.random.default_rng(0), 96).save(folder / "crop.png")
    out = tmp_path / "out.csv"
    assert main(["classify", str(folder), "--model", str(tiny_model_path), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "classified 4 cells in 2 images" in err and "1 with no white cell" in err
    rows = list(csv.DictReader(out.open()))
    by_file = {}
    for r in rows:
        by_file.setdefault(Path(r["path"]).name, []).append(r)
    assert [r["cell"] for r in by_file["field.jpg"]] == ["0", "1", "2"]
    assert all(r["label"] and int(r["w"]) > 30 and r["at_border"] == "no" for r in by_file["field.jpg"])
    (crop,) = by_file["crop.png"]
    assert crop["cell"] == "0" and 0 <= int(crop["x"]) < 48 and int(crop["w"]) > 20
    (empty,) = by_file["empty.png"]
    assert (empty["label"], empty["error"], empty["x"]) == ("", NO_WHITE_CELL, "")
    assert main(["classify", str(folder / "field.jpg"), "--model", str(tiny_model_path), "--mode", "cells",
                 "--out", str(out)]) == 0
    assert len(list(csv.DictReader(out.open()))) == 1


@pytest.mark.parametrize("seed", range(4))
def test_the_localisers_morphology_is_scipys_to_the_pixel(seed):
    """The shifted-copy morphology against ``scipy.ndimage`` on random masks
    of every density and size, one-pixel strips and holes at the edge
    included: boxes found with either are the same."""
    from scipy import ndimage as ndi

    from wbc_desktop.engine.locate.morphology import dilate, erode, fill_holes, opening

    rng = np.random.default_rng(seed)
    for _ in range(80):
        h, w = (int(v) for v in rng.integers(1, 48, 2))
        mask = rng.random((h, w)) < rng.random()
        steps = int(rng.integers(1, 7))
        assert np.array_equal(erode(mask), ndi.binary_erosion(mask))
        assert np.array_equal(dilate(mask, steps), ndi.binary_dilation(mask, iterations=steps))
        assert np.array_equal(opening(mask), ndi.binary_opening(mask))
        assert np.array_equal(fill_holes(mask), ndi.binary_fill_holes(mask))


def test_white_balance_by_table_is_the_float_product():
    from wbc_desktop.engine.locate.stain import background_colour, white_balanced

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    rgb[:5] = 0  # black padding
    balanced, valid = white_balanced(rgb)
    x = rgb.astype(np.float32)
    expected = np.minimum(x * (255.0 / (background_colour(x, valid) + 1.0)), 255.0)
    assert balanced.dtype == np.float32 and np.array_equal(balanced, expected) and not valid[:5].any()


def test_box_readers(tmp_path):
    voc = tmp_path / "a.xml"
    voc.write_text("<annotation><object><name>WBC</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>50</xmax>"
                   "<ymax>70</ymax></bndbox></object><object><name>RBC</name><bndbox><xmin>0</xmin><ymin>0</ymin>"
                   "<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")
    assert read_voc(voc) == [(10, 20, 50, 70)]
    yolo = tmp_path / "a.txt"
    yolo.write_text("1 0.5 0.5 0.1 0.1\n0 0.5 0.25 0.2 0.5\n")
    assert read_yolo(yolo, 200, 100) == [pytest.approx((80, 0, 120, 50))]
    count = DetectionCount()
    count.add([(30, 40), (31, 41), (300, 300)], [(10, 20, 50, 70), (100, 100, 120, 120)])
    assert (count.found, count.extra, count.missed) == (1, 2, 1)


@pytest.mark.parametrize("source", ["bccd_smears", "raabin_fields"])
def test_real_field_photos(source):
    """Every 4th photo of each source; the full table is training/localiser_eval.py's."""
    root = shared_dataset(source)
    if source == "bccd_smears":
        photos = sorted((root / "BCCD" / "JPEGImages").glob("*.jpg"))[::4]
        truth = [read_voc(root / "BCCD" / "Annotations" / f"{p.stem}.xml") for p in photos]
    else:
        photos = sorted((root / "images").glob("*/*.jpg"))[::4]
        truth = [read_yolo(root / "labels" / p.parent.name / f"{p.stem}.txt", 575, 575) for p in photos]
    count = DetectionCount()
    for photo, boxes in zip(photos, truth):
        count.add([c.centre for c in find_white_cells(np.asarray(Image.open(photo).convert("RGB"))).cells], boxes)
    # precision on Raabin: 124 of 130 detections white cells without upper_share (0.954), 124 of 128 with it
    assert count.recall >= 0.93 and count.precision >= 0.96, (count.recall, count.precision)
    # and the box fits the cell, not only its centre: on all of Raabin 83 % of the white cells have a box
    # overlapping theirs by half or more (64 % when a nucleus joined to violet red cells took their box)
    fits = [max((_iou(b, (c.x, c.y, c.x + c.w, c.y + c.h)) for c in find_white_cells(np.asarray(
        Image.open(photo).convert("RGB"))).cells), default=0.0) >= 0.5 for photo, boxes in zip(photos, truth) for b in boxes]
    assert np.mean(fits) >= (0.9 if source == "bccd_smears" else 0.78), np.mean(fits)  # BCCD: 0.954 on all


def test_grey_copies_of_real_photos_and_crops():
    """Grey copies: Raabin's photos (every 4th; all of them: recall 0.954,
    precision 0.859) and PBC crops, whose grey cell must be the colour one."""
    root = shared_dataset("raabin_fields")
    photos = sorted((root / "images").glob("*/*.jpg"))[::4]
    count = DetectionCount()
    for photo in photos:
        grey = np.asarray(Image.open(photo).convert("L").convert("RGB"))
        count.add([c.centre for c in find_white_cells(grey).cells],
                  read_yolo(root / "labels" / photo.parent.name / f"{photo.stem}.txt", 575, 575))
    assert count.recall >= 0.9 and count.precision >= 0.8, (count.recall, count.precision)
    crops = sorted(shared_dataset("pbc").glob("*/*.jpg"))[::300]
    same = 0
    for crop in crops:
        rgb = np.asarray(Image.open(crop).convert("RGB"))
        colour = find_white_cells(rgb).most_central()
        grey = find_white_cells(np.asarray(Image.fromarray(rgb).convert("L").convert("RGB"))).most_central()
        same += grey is not None and np.hypot(*np.subtract(grey.centre, colour.centre)) < 0.1 * max(rgb.shape[:2])
    assert same >= 0.85 * len(crops), (same, len(crops))  # 185 of 200 in a probe
