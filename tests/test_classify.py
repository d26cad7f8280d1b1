import csv
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import rgb_noise
from synth import cell_image
from wbc_desktop.engine.infer.cells import NO_WHITE_CELL
from wbc_desktop.engine.infer.classify import Classifier, write_predictions_csv
from wbc_desktop.engine.progress import CancelToken


def _messy_folder(root):
    """The issue's folder: two broken files among odd but valid ones."""
    root.mkdir()
    good = Image.fromarray(rgb_noise(80, 80))
    good.save(root / "truncated.jpg")
    (root / "truncated.jpg").write_bytes((root / "truncated.jpg").read_bytes()[:500])
    (root / "not_an_image.png").write_text("plain text, not a PNG")
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(root / "deep16.tif")
    good.convert("CMYK").save(root / "cmyk.jpg")
    good.convert("L").save(root / "grey.png")
    Image.new("RGB", (10000, 10000), (220, 200, 210)).save(root / "huge.jpg", quality=40)
    (root / "sub folder").mkdir()
    good.save(root / "sub folder" / "nested cell.bmp")
    (root / "readme.txt").write_text("ignored: not an image type")
    return root


def test_classify_reports_broken_files_and_classifies_the_rest(tmp_path, tiny_model_path):
    folder = _messy_folder(tmp_path / "slide 1")
    clf = Classifier.open(tiny_model_path)
    results = list(clf.classify([folder], batch_size=2, mode="cells"))
    errors = {r.path.split("/")[-1]: r.error for r in results if not r.ok}
    assert set(errors) == {"truncated.jpg", "not_an_image.png", "readme.txt"}
    # taken for what it looks like, the blank 10000 px photo is a field without a white cell
    auto = {r.path.split("/")[-1]: r.error for r in clf.classify([folder], batch_size=2) if not r.ok}
    assert auto == dict(errors, **{"huge.jpg": NO_WHITE_CELL})
    assert "truncated" in errors["truncated.jpg"] or "decode" in errors["truncated.jpg"]
    assert "not an image" in errors["not_an_image.png"]
    classified = {r.path.split("/")[-1] for r in results if r.ok}
    assert classified == {"deep16.tif", "cmyk.jpg", "grey.png", "huge.jpg", "nested cell.bmp"}
    # the grey files are said to be grey (their cells found by darkness), the colour ones not
    assert {r.path.split("/")[-1] for r in results if r.ok and r.cell.grey} == {"deep16.tif", "grey.png"}
    for r in results:
        if r.ok:
            assert r.label in clf.classes and abs(r.probs.sum() - 1) < 1e-4 and r.confidence == r.probs.max()


def test_fast_path_equals_plain_keras_predict(tmp_path, tiny_model_path):
    clf = Classifier.open(tiny_model_path)
    x = np.random.default_rng(0).integers(0, 255, (37, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(clf.predict_arrays(x, batch_size=8), clf.model.predict(x.astype(np.float32), verbose=0),
                               atol=1e-5)
    tta = clf.predict_arrays(x, tta=True)
    assert tta.shape == (37, 3) and np.allclose(tta.sum(axis=1), 1, atol=1e-5)


def test_warm_up_traces_the_forward_pass_once_for_every_batch_after_it(tiny_model_path):
    clf = Classifier.open(tiny_model_path)
    traces = clf._forward.experimental_get_tracing_count
    assert traces() == 0
    clf.warm_up()
    assert traces() == 1
    x = np.random.default_rng(0).integers(0, 255, (19, 32, 32, 3), dtype=np.uint8)
    clf.predict_arrays(x, batch_size=8)  # batches of 8 and 3
    clf.predict_arrays(x, tta=True)
    assert traces() == 1


def test_results_stream_in_order_and_cancel_stops(tmp_path, tiny_model_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        cell_image("neutrophil", rng, 40).save(folder / f"c{i:02d}.png")
    clf = Classifier.open(tiny_model_path)
    names = [r.path.split("/")[-1] for r in clf.classify([folder], batch_size=8)]
    assert names == sorted(names) and len(names) == 40
    cancel = CancelToken()
    got = []
    for r in clf.classify([folder], batch_size=8, cancel=cancel):
        got.append(r)
        if len(got) == 10:
            cancel.cancel()
    assert len(got) == 16  # the batch in hand finishes, nothing after it


def test_predictions_csv(tmp_path, tiny_model_path):
    folder = _messy_folder(tmp_path / "f")
    clf = Classifier.open(tiny_model_path)
    results = list(clf.classify([folder]))
    out = tmp_path / "out" / "preds.csv"
    write_predictions_csv(out, results, clf.classes, clf.name)
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0])[:10] == ["path", "cell", "x", "y", "w", "h", "at_border", "label", "confidence", "prob_neutrophil"]
    assert len(rows) == len(results)
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 4 and all(r["label"] == "" for r in bad)  # 3 unreadable, and the blank photo has no white cell
    assert [r["error"] for r in bad if "huge" in r["path"]] == [NO_WHITE_CELL]
    good = [r for r in rows if not r["error"]]
    assert all(r["model"] == "tiny test model" for r in good)
    assert any("nested cell.bmp" in r["path"] for r in good)


def test_adapting_to_a_folder_changes_statistics_not_weights(tmp_path, tiny_model_path, trained_model_path):
    import pytest

    from wbc_desktop.engine.data.dataset import collect_images

    folder = tmp_path / "other lab"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(40):  # another 'stain': every cell tinted yellow
        arr = np.asarray(cell_image(("neutrophil", "lymphocyte")[i % 2], rng, 40)).astype(np.int16)
        arr[..., 2] -= 60
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    clf = Classifier.open(tiny_model_path)
    files = collect_images([folder])[0]
    adapted = clf.adapted_to(files)
    assert adapted.model is not clf.model and "adapted to 40 cells" in adapted.name
    kernels = lambda c: [w.numpy() for w in c.model.trainable_weights]  # noqa: E731
    for a, b in zip(kernels(adapted), kernels(clf)):
        np.testing.assert_array_equal(a, b)
    stats = lambda c: np.concatenate([w.numpy().ravel() for w in c.model.non_trainable_weights])  # noqa: E731
    assert not np.allclose(stats(adapted), stats(clf))
    assert len(list(adapted.classify([folder]))) == 40
    with pytest.raises(ValueError, match="at least 32"):
        clf.adapted_to(files[:10])
    with pytest.raises(ValueError, match="no BatchNorm"):  # a GroupNorm model has nothing to adapt
        Classifier.open(trained_model_path).adapted_to(files)


def test_the_model_card_sets_the_default_views_and_the_flags_override_it(tmp_path, trained_model_path, capsys):
    import shutil

    import pytest

    from wbc_desktop.cli import main
    from wbc_desktop.engine.models.modelfile import update_card

    folder = tmp_path / "cells"
    folder.mkdir()
    for i in range(4):  # noise: no symmetry, so its four views differ
        Image.fromarray(rgb_noise(60, 60, seed=i)).save(folder / f"c{i}.png")
    one = shutil.copy(trained_model_path, tmp_path / "one_view.keras")
    update_card(one, test_views=1)

    recorded = []

    def probs(model, *flags):
        out = tmp_path / f"run{len(list(tmp_path.glob('*.csv')))}.csv"
        assert main(["classify", str(folder), "--model", str(model), "--out", str(out), *flags]) == 0
        rows = list(csv.DictReader(out.open()))
        recorded.append(rows[0]["model"])
        return np.array([[float(v) for k, v in row.items() if k.startswith("prob_")] for row in rows])

    four_views, one_view = probs(trained_model_path), probs(one)
    assert np.abs(four_views - one_view).max() > 0.01
    np.testing.assert_allclose(probs(trained_model_path, "--no-tta"), one_view, atol=2e-4)
    np.testing.assert_allclose(probs(one, "--tta"), four_views, atol=2e-4)
    name = Classifier.open(one).name
    assert recorded == [name, name, f"{name} (one view, not its default)", f"{name} (4 views, not its default)"]
    assert "test-time views by default: 1" in (main(["info", "--model", str(one)]) == 0 and capsys.readouterr().out)
    update_card(one, test_views=3)
    with pytest.raises(ValueError, match="3 test-time views"):
        Classifier.open(one)


def test_cli_names_a_grey_file_once_and_the_review_keeps_it(tmp_path, tiny_model_path, capsys):
    from wbc_desktop.cli import main
    from wbc_desktop.engine.infer.modes import GREY_IMAGE
    from wbc_desktop.engine.review.session import ReviewItem

    folder = tmp_path / "slide"
    folder.mkdir()
    rng = np.random.default_rng(3)
    cell_image("lymphocyte", rng, 120).save(folder / "colour.png")
    cell_image("lymphocyte", rng, 120).convert("L").save(folder / "grey.png")
    assert main(["classify", str(folder), "--model", str(tiny_model_path), "--out", str(tmp_path / "p.csv")]) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if GREY_IMAGE in line] == [f"note: {folder / 'grey.png'}: {GREY_IMAGE}"]
    assert "classified 2 cells in 2 images" in err and "0 unreadable, 1 grey;" in err
    items = [ReviewItem.from_prediction(p) for p in Classifier.open(tiny_model_path).classify([folder])]
    assert {Path(it.path).name: it.grey for it in items} == {"colour.png": False, "grey.png": True}
    import json

    from wbc_desktop.engine.review.session import ReviewSession

    session = ReviewSession([str(folder)], ["neutrophil", "eosinophil", "lymphocyte"], items=items)
    session.save(tmp_path / "s.json")
    assert [it.grey for it in ReviewSession.load(tmp_path / "s.json").items] == [it.grey for it in items]
    older = json.loads((tmp_path / "s.json").read_text())  # a session saved before files were told grey
    for it in older["items"]:
        del it["grey"]
    (tmp_path / "old.json").write_text(json.dumps(dict(older, format=3)))
    assert not any(it.grey for it in ReviewSession.load(tmp_path / "old.json").items)
