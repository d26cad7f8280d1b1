"""Self-training on a folder unlike the training data: the model's sure calls
teach a head on the folder's own features, which answers the cells it was
unsure of; in the engine, ``wbc classify`` and the app, only where the
folder warning fires."""

import csv
import shutil

import numpy as np
import pytest

from synth import CLASSES, tinted_lab
from wbc_desktop.cli import main
from wbc_desktop.engine.infer.folder_training import MIN_CELLS, self_trained


def _shifted_lab(seed=0, sure_c=2):
    """60 cells of class 0 and 60 of class 1 in their own directions of a
    feature space, ``sure_c`` of class 2; the model is sure of every cell but
    20 of class 1's, which it leans to class 0 on (a lab whose class 1 looks
    a little like its training labs' class 0)."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(60), np.ones(60), np.full(sure_c, 2)].astype(int)
    feats = np.eye(16)[y] + 0.15 * rng.normal(size=(len(y), 16))
    calls = np.full((len(y), 3), 0.02)
    calls[np.arange(len(y)), y] = 0.96
    leaning = np.flatnonzero(y == 1)[:20]
    calls[leaning] = [0.6, 0.38, 0.02]
    return feats.astype(np.float16), calls, y, leaning


def test_the_folders_sure_cells_correct_the_cells_the_model_leans_wrong_on():
    feats, calls, y, leaning = _shifted_lab()
    revised, taught = self_trained(feats, calls)
    assert taught == {0: 60, 1: 40}  # class 2's two sure cells are too few to teach it
    assert list(revised.argmax(axis=1)) == list(y)  # ... and its cells keep the model's answer
    np.testing.assert_allclose(revised.sum(axis=1), 1.0, atol=1e-6)
    # half the model's answer stays, softened: a corrected cell is flagged for review (the default flag is
    # 70 %), the cells both agree on are not
    assert revised[leaning].max(axis=1).max() < 0.7 < revised[np.flatnonzero(y == 1)[20:]].max(axis=1).min()
    assert revised[y == 0].max(axis=1).min() > 0.7


def test_too_few_cells_or_one_sure_class_leave_the_folder_as_it_is():
    feats, calls, y, _ = _shifted_lab()
    few = calls[:MIN_CELLS - 1]
    same, taught = self_trained(feats[:MIN_CELLS - 1], few)
    assert taught == {} and same is few
    one_class = np.where(y[:, None] == 0, calls, 0.5)  # only class 0 is ever called surely
    same, taught = self_trained(feats, one_class)
    assert taught == {} and same is one_class


def _warning_card(threshold=0.999):
    """A card whose folder warning fires on every folder (cards before the
    stain references judged by confidence; no caution of its own)."""
    return {"classes": list(CLASSES), "domain_check": {"confidence": {"threshold": threshold}, "folder_cells": 50}}


def test_folder_check_self_trains_only_a_warned_folder():
    from wbc_desktop.engine.infer.classify import Prediction, folder_check

    feats, calls, y, leaning = _shifted_lab()
    folder = [Prediction(f"c{i}.png", CLASSES[int(p.argmax())], float(p.max()), p, features=f)
              for i, (p, f) in enumerate(zip(calls, feats))] + [Prediction("bad.png", error="unreadable")]
    warned = folder_check(folder, _warning_card())
    assert warned.caution == "unfamiliar-lab caution: self-trained on 100 sure cells; temperature 2"
    assert ("learnt this folder's look from the 100 of its 122 cells it is at least 80% sure of "
            "(neutrophil 60, eosinophil 40)") in warned.notice
    assert ": 20 of 122 cells changed label. Its confidences are softened (temperature 2" in warned.notice
    assert {p.path for p in warned.changed} == {f"c{i}.png" for i in leaning}
    assert [p.label for p in warned.predictions[:-1]] == [CLASSES[k] for k in y]
    assert warned.predictions[-1].error == "unreadable"

    off = folder_check(folder, _warning_card(), self_training=False)  # the user said no: warned, as it was
    assert off.notice and "learnt" not in off.notice and off.caution is None and not off.changed
    silent = folder_check(folder, _warning_card(threshold=0.0))  # a folder like the training data
    assert silent.notice is None and silent.caution is None and not silent.changed
    no_features = [Prediction(p.path, p.label, p.confidence, p.probs, p.error) for p in folder]
    assert folder_check(no_features, _warning_card()).caution is None


@pytest.fixture(scope="module")
def warning_model(trained_model_path, tmp_path_factory):
    """The synthetic model with a card that warns on every folder, and a
    folder of 120 tinted cells."""
    from wbc_desktop.engine.models.modelfile import update_card

    root = tmp_path_factory.mktemp("warned")
    path = root / "warns.keras"
    shutil.copy(trained_model_path, path)
    update_card(path, domain_check={"confidence": {"threshold": 0.999}, "folder_cells": 50})
    return path, tinted_lab(root / "other", 40, 5)


def _expected(model_path, folder):
    from wbc_desktop.engine.data.dataset import collect_images
    from wbc_desktop.engine.infer.classify import Classifier, folder_check

    clf = Classifier.open(model_path)
    raw = list(clf.classify_collected(*collect_images([str(folder)]), tta=clf.default_tta))
    return raw, folder_check(raw, clf.card)


def test_classify_self_trains_a_warned_folder_and_says_so(warning_model, tmp_path, capsys):
    model, folder = warning_model
    raw, expected = _expected(model, folder)
    assert expected.caution and "self-trained on" in expected.caution  # the premise: the folder teaches a head
    out = tmp_path / "out.csv"
    assert main(["classify", str(folder), "--model", str(model), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("unlike the model's training data") == 1 and "learnt this folder's look" in err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 120 and all(expected.caution in r["model"] for r in rows)
    want = {p.path: p for p in expected.predictions}
    for r in rows:
        assert r["label"] == want[r["path"]].label
        assert float(r["confidence"]) == pytest.approx(want[r["path"]].confidence, abs=1e-4)

    assert main(["classify", str(folder), "--model", str(model), "--out", str(out), "--no-self-training"]) == 0
    err = capsys.readouterr().err
    assert "unlike the model's training data" in err and "learnt" not in err
    raw_labels = {p.path: p.label for p in raw}
    assert all("self-trained" not in r["model"] and r["label"] == raw_labels[r["path"]]
               for r in csv.DictReader(out.open()))


def test_app_shows_the_self_trained_labels_of_a_warned_folder(qtbot, settings, warning_model):
    from conftest import open_window

    model, folder = warning_model
    raw, expected = _expected(model, folder)
    window = open_window(qtbot, settings, model)
    assert window.act_self_training.isChecked()  # on by default
    with qtbot.waitSignal(window.job_finished, timeout=120000):
        window.open_paths([str(folder)])
    session = window.cells.session
    assert session.model_name.endswith("; " + expected.caution)
    window.review.notice.linkActivated.emit("details")
    assert "learnt this folder" in window.review.notice.text()  # (the label shows it as HTML)
    want = {p.path: p for p in expected.predictions}
    assert len(session.items) == 120
    for item in session.items:
        assert item.final_label == want[item.path].label
        assert item.confidence == pytest.approx(want[item.path].confidence, abs=1e-5)

    window.act_self_training.trigger()  # Classify > Learn an unfamiliar folder's look, off: kept in the settings
    assert settings.value("classify/self_training") in (False, "false")
    with qtbot.waitSignal(window.job_finished, timeout=120000):
        window.start_classification()
    session = window.cells.session
    window.review.notice.linkActivated.emit("details")
    assert "self-trained" not in session.model_name and "learnt" not in window.review.notice.text()
    assert "Fewer details" in window.review.notice.text()  # a new folder's notice, opened
    plain = {p.path: p for p in raw}
    assert all(item.final_label == plain[item.path].label for item in session.items)
