"""Calibrating a model to a new lab from a few labelled cells, on generated
cells whose 'lab' tints them: the whole flow, the estimate, and the classes
without labels."""

import numpy as np
import pytest
from PIL import Image

from synth import CLASSES, cell_image
from wbc_desktop.cli import main


def _tinted_lab(root, per_class, seed, tint=(0.75, 1.0, 1.25)):
    """Another lab's cells: the same morphology under another stain tint."""
    rng = np.random.default_rng(seed)
    for label in CLASSES:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            px = np.asarray(cell_image(label, rng, 48), np.float32) * np.asarray(tint)
            Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)).save(root / label / f"{label[:3]}_{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    return _tinted_lab(root / "labelled", 6, 21), _tinted_lab(root / "rest", 20, 22)


def test_calibrated_model_matches_its_numpy_twin_and_keeps_unlabelled_classes(trained_model_path, lab):
    from wbc_desktop.engine.data.dataset import decode_images, scan_labeled
    from wbc_desktop.engine.infer.classify import Classifier
    from wbc_desktop.engine.train.calibrate import calibrate, fit_head, lab_features, predict

    base = Classifier.open(trained_model_path)
    data = scan_labeled(lab[0])
    keep = [i for i, lbl in enumerate(data.labels) if data.classes[lbl] != "lymphocyte"]  # one class unlabelled
    paths = [data.paths[i] for i in keep]
    names = [data.classes[data.labels[i]] for i in keep]
    pixels = decode_images(paths, base.size).pixels
    result = calibrate(base, paths, names, pixels, np.arange(len(paths)), method="logistic")
    assert result.labelled_classes == ["neutrophil", "eosinophil"]
    assert result.card["calibration"]["classes_kept_from_base"] == ["lymphocyte"]
    test = decode_images(scan_labeled(lab[1]).paths, base.size).pixels[:24]
    ours = Classifier(result.model, result.card).predict_arrays(test, tta=True)
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-5)
    before = base.predict_arrays(test, tta=True)
    lymph = base.classes.index("lymphocyte")
    np.testing.assert_allclose(ours[:, lymph], before[:, lymph], atol=1e-5)  # the base model's answer, untouched
    feats = lab_features(base.model, pixels)
    local = np.asarray([["neutrophil", "eosinophil"].index(n) for n in names])
    head = fit_head("logistic", feats.feats, local, 2)
    idx = [base.classes.index("neutrophil"), base.classes.index("eosinophil")]
    np.testing.assert_allclose(ours, predict(head, lab_features(base.model, test), idx), atol=1e-4)


def test_wbc_calibrate_improves_a_tinted_lab_and_says_how_sure(trained_model_path, lab, tmp_path, capsys):
    from wbc_desktop.engine.data.dataset import decode_images, scan_labeled
    from wbc_desktop.engine.infer.classify import Classifier
    from wbc_desktop.engine.models.modelfile import load_model

    out = tmp_path / "lab.keras"
    code = main(["calibrate", str(lab[0]), "--model", str(trained_model_path), "--out", str(out),
                 "--unlabelled", str(lab[1]), "--method", "adabn_logistic"])
    printed = capsys.readouterr()
    assert code == 0 and "estimated accuracy on this lab's other cells" in printed.out
    model, card = load_model(out)  # safe mode: standard layers only
    cal = card["calibration"]
    assert cal["method"] == "adabn_logistic" and cal["labelled_cells"] == {c: 6 for c in CLASSES}
    assert len(cal["labelled_files"]) == 18 and cal["unlabelled_cells"] == 60
    low, high = cal["estimate"]["ci95"]
    assert 0 <= low <= cal["estimate"]["accuracy"] <= high <= 1 and cal["estimate"]["folds"] >= 2
    rest = scan_labeled(lab[1])
    x = decode_images(rest.paths, card["input_size"]).pixels
    calibrated = Classifier(model, card).predict_arrays(x, tta=True).argmax(axis=1)
    base = Classifier.open(trained_model_path)
    truth = np.asarray([base.classes.index(rest.classes[i]) for i in rest.labels])
    before = np.mean(base.predict_arrays(x, tta=True).argmax(axis=1) == truth)
    after = np.mean(calibrated == truth)
    assert after >= max(before, 0.8)


def test_calibrate_refuses_too_few_cells_and_unknown_classes(trained_model_path, tmp_path, capsys):
    few = _tinted_lab(tmp_path / "few", 2, 5)
    code = main(["calibrate", str(few), "--model", str(trained_model_path), "--out", str(tmp_path / "m.keras")])
    assert code == 2 and "at least 3 cells" in capsys.readouterr().err
    odd = _tinted_lab(tmp_path / "odd", 4, 6)
    (odd / "neutrophil").rename(odd / "smudge")
    code = main(["calibrate", str(odd), "--model", str(trained_model_path), "--out", str(tmp_path / "m.keras")])
    assert code == 2 and "does not know the classes ['smudge']" in capsys.readouterr().err
