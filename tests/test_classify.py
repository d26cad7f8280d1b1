import csv

import numpy as np
from PIL import Image

from conftest import rgb_noise
from synth import cell_image
from wbc_desktop.engine.classify import Classifier, write_predictions_csv
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
    results = list(clf.classify([folder], batch_size=2))
    errors = {r.path.split("/")[-1]: r.error for r in results if not r.ok}
    assert set(errors) == {"truncated.jpg", "not_an_image.png", "readme.txt"}
    assert "truncated" in errors["truncated.jpg"] or "decode" in errors["truncated.jpg"]
    assert "not an image" in errors["not_an_image.png"]
    classified = {r.path.split("/")[-1] for r in results if r.ok}
    assert classified == {"deep16.tif", "cmyk.jpg", "grey.png", "huge.jpg", "nested cell.bmp"}
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
    assert list(rows[0])[:6] == ["path", "label", "confidence", "prob_neutrophil", "prob_eosinophil", "prob_lymphocyte"]
    assert len(rows) == len(results)
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 3 and all(r["label"] == "" for r in bad)
    good = [r for r in rows if not r["error"]]
    assert all(r["model"] == "tiny test model" for r in good)
    assert any("nested cell.bmp" in r["path"] for r in good)
