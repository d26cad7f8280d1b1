"""Calibrating a model to a new lab from a few labelled cells, on generated
cells whose 'lab' tints them: the whole flow, the estimate, and the classes
without labels."""

import numpy as np
import pytest
from PIL import Image

from synth import CLASSES, cell_image, make_labeled_folder, tinted_lab
from wbc_desktop.cli import main


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    return tinted_lab(root / "labelled", 6, 21), tinted_lab(root / "rest", 20, 22)


@pytest.mark.parametrize("generic", [False, True], ids=["own features", "own and generic features"])
def test_calibrated_model_matches_its_numpy_twin_and_keeps_unlabelled_classes(trained_model_path, lab, generic):
    from wbc_desktop.engine.data.dataset import decode_images, scan_labeled
    from wbc_desktop.engine.infer.classify import Classifier
    from wbc_desktop.engine.models.generic_features import load_generic_extractor
    from wbc_desktop.engine.train.calibrate import calibrate, fit_head, lab_features, predict

    from wbc_desktop.engine.models.class_offsets import shift_head
    from wbc_desktop.engine.models.modelfile import inference_copy

    opened = Classifier.open(trained_model_path)
    # a one-view base model, used on cells cut closer than it was trained on (as the shipped model is), with
    # more caution on a folder unlike its training labs for a class the lab will label and one it will not
    unfamiliar = {"neutrophil": -0.3, "lymphocyte": -0.5}
    base = Classifier(opened.model, dict(opened.card, test_views=1, test_framing="cell_close",
                                         unfamiliar_offsets=unfamiliar), trained_model_path)
    data = scan_labeled(lab[0])
    keep = [i for i, lbl in enumerate(data.labels) if data.classes[lbl] != "lymphocyte"]  # one class unlabelled
    paths = [data.paths[i] for i in keep]
    names = [data.classes[data.labels[i]] for i in keep]
    pixels = decode_images(paths, base.size).pixels
    result = calibrate(base, paths, names, pixels, np.arange(len(paths)), method="logistic", generic=generic)
    assert result.labelled_classes == ["neutrophil", "eosinophil"]
    assert ("ImageNet" in result.card["calibration"]["features"]) == generic
    assert result.card["calibration"]["classes_kept_from_base"] == ["lymphocyte"]
    # the unlabelled class keeps the base's caution in the head, since this lab's folders will not warn;
    # the labelled class's caution stays for the folders that do
    assert result.card["calibration"]["kept_caution"] == {"lymphocyte": -0.5}
    assert result.card["class_offsets"] == {"lymphocyte": -0.5}
    assert result.card["unfamiliar_offsets"] == {"neutrophil": -0.3}
    from wbc_desktop.gui.dialogs import calibration_facts_html

    assert "keep the caution the base model takes on a lab it never saw (logit offsets lymphocyte -0.5)" in \
        calibration_facts_html(result.card["calibration"])
    assert Classifier(result.model, result.card).default_views == 4  # its head was fitted on four views
    assert Classifier(result.model, result.card).framing == "cell_close"  # and on cells cut as its base cuts them
    test = decode_images(scan_labeled(lab[1]).paths, base.size).pixels[:24]
    ours = Classifier(result.model, result.card).predict_arrays(test, tta=True)
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-5)
    cautious = inference_copy(base.model, always=True)
    shift_head(cautious, base.classes, {"lymphocyte": -0.5})
    before = Classifier(cautious, base.card).predict_arrays(test, tta=True)
    lymph = base.classes.index("lymphocyte")
    np.testing.assert_allclose(ours[:, lymph], before[:, lymph], atol=1e-5)  # the base's answer, with its caution
    assert not np.allclose(base.predict_arrays(test, tta=True)[:, lymph], before[:, lymph], atol=1e-3)
    assert np.array_equal(base.model.get_layer("predictions").get_weights()[1],
                          opened.model.get_layer("predictions").get_weights()[1])  # the caller's model untouched
    extractor = load_generic_extractor() if generic else None
    feats = lab_features(cautious, pixels, extractor=extractor)
    assert feats.feats.shape[-1] == base.model.get_layer("features").output.shape[-1] + (1280 if generic else 0)
    local = np.asarray([["neutrophil", "eosinophil"].index(n) for n in names])
    head = fit_head("logistic", feats.feats, local, 2)
    idx = [base.classes.index("neutrophil"), base.classes.index("eosinophil")]
    np.testing.assert_allclose(ours, predict(head, lab_features(cautious, test, extractor=extractor), idx),
                               atol=1e-4)
    # calibrating the lab model again starts over from its base: the same cells give the same model,
    # with one head and one generic extractor, and the card names the first base
    lab_clf = Classifier(result.model, result.card)
    again = calibrate(lab_clf, paths, names, pixels, np.arange(len(paths)), method="logistic", generic=generic)
    assert again.card["calibration"]["base_model"] == base.name and again.card["name"] == result.card["name"]
    assert again.card["class_offsets"] == {"lymphocyte": -0.5} and again.card["unfamiliar_offsets"] == {"neutrophil": -0.3}
    assert sum(layer.name == "lab_head" for layer in again.model.layers) == 1
    assert sum(layer.name == "imagenet_lite0_features" for layer in again.model.layers) == int(generic)
    np.testing.assert_allclose(Classifier(again.model, again.card).predict_arrays(test, tta=True), ours, atol=1e-5)


def test_a_joined_base_gives_each_member_the_same_say_and_its_lab_model_matches_the_numpy_twin(trained_model_path,
                                                                                                   lab):
    import keras

    from wbc_desktop.engine.data.dataset import decode_images, scan_labeled
    from wbc_desktop.engine.infer.classify import Classifier
    from wbc_desktop.engine.models.ensemble import build_ensemble, member_widths
    from wbc_desktop.engine.train.calibrate import calibrate, fit_head, lab_features, predict

    opened = Classifier.open(trained_model_path)
    other = keras.models.clone_model(opened.model)  # a second member, its weights drawn anew and scaled up
    other.set_weights([w * 3.0 for w in opened.model.get_weights()])
    joined = build_ensemble([opened.model, other], opened.size)
    base = Classifier(joined, dict(opened.card, test_views=1))
    width = opened.model.get_layer("features").output.shape[-1]
    assert member_widths(joined) == [width, width] and member_widths(opened.model) == [width]
    data = scan_labeled(lab[0])
    names = [data.classes[i] for i in data.labels]
    pixels = decode_images(data.paths, base.size).pixels
    feats = lab_features(joined, pixels).feats
    np.testing.assert_allclose(np.linalg.norm(feats[..., :width], axis=-1), 2 ** -0.5, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(feats[..., width:], axis=-1), 2 ** -0.5, atol=1e-5)
    result = calibrate(base, data.paths, names, pixels, np.arange(len(names)), method="logistic", generic=False)
    test = decode_images(scan_labeled(lab[1]).paths, base.size).pixels[:16]
    idx = [base.classes.index(c) for c in result.labelled_classes]
    head = fit_head("logistic", feats, np.asarray([idx.index(base.classes.index(n)) for n in names]), len(idx))
    ours = Classifier(result.model, result.card).predict_arrays(test, tta=True)
    np.testing.assert_allclose(ours, predict(head, lab_features(joined, test), idx), atol=1e-4)  # the saved graph too


def test_the_lab_head_sees_the_members_own_features_of_a_base_joined_with_taps(trained_model_path, lab):
    """A base whose members carry pooled mid-level taps: the lab head gets
    the same features as from the join without them, and the lab model it
    saves answers as its numpy twin does."""
    import keras

    from wbc_desktop.engine.data.dataset import decode_images, scan_labeled
    from wbc_desktop.engine.infer.classify import Classifier
    from wbc_desktop.engine.models.ensemble import build_ensemble, member_widths, own_widths
    from wbc_desktop.engine.train.calibrate import calibrate, fit_head, lab_features, predict

    opened = Classifier.open(trained_model_path)
    other = keras.models.clone_model(opened.model)
    other.set_weights([w * 3.0 for w in opened.model.get_weights()])
    plain = build_ensemble([opened.model, other], opened.size)
    tapped = build_ensemble([opened.model, other], opened.size, with_taps=True)
    width = opened.model.get_layer("features").output.shape[-1]
    assert own_widths(tapped) == [width, width] and member_widths(tapped)[0] > width
    data = scan_labeled(lab[0])
    names = [data.classes[i] for i in data.labels]
    pixels = decode_images(data.paths, opened.size).pixels
    feats = lab_features(tapped, pixels).feats
    np.testing.assert_allclose(feats, lab_features(plain, pixels).feats, atol=1e-5)
    base = Classifier(tapped, dict(opened.card, test_views=1))
    result = calibrate(base, data.paths, names, pixels, np.arange(len(names)), method="logistic", generic=False)
    test = decode_images(scan_labeled(lab[1]).paths, base.size).pixels[:16]
    idx = [base.classes.index(c) for c in result.labelled_classes]
    head = fit_head("logistic", feats, np.asarray([idx.index(base.classes.index(n)) for n in names]), len(idx))
    ours = Classifier(result.model, result.card).predict_arrays(test, tta=True)
    np.testing.assert_allclose(ours, predict(head, lab_features(tapped, test), idx), atol=1e-4)


@pytest.mark.parametrize("method", [None, "adabn_logistic", "spreading"], ids=["default (self-training)", "adabn", "spreading"])
def test_wbc_calibrate_improves_atinted_lab_and_says_how_sure(trained_model_path, lab, tmp_path, capsys, method):
    from wbc_desktop.engine.data.dataset import decode_images, scan_labeled
    from wbc_desktop.engine.infer.classify import Classifier
    from wbc_desktop.engine.models.modelfile import load_model, read_card
    from wbc_desktop.gui.dialogs import calibration_facts_html

    out = tmp_path / "lab.keras"
    code = main(["calibrate", str(lab[0]), "--model", str(trained_model_path), "--out", str(out),
                 "--unlabelled", str(lab[1])] + (["--method", method] if method else []))
    printed = capsys.readouterr()
    assert code == 0 and "estimated accuracy on this lab's other cells" in printed.out
    assert "generic image features" in printed.err  # the user is told what the head was fitted on
    model, card = load_model(out)  # safe mode: standard layers only
    cal = card["calibration"]
    assert cal["method"] == (method or "self_training") and cal["labelled_cells"] == {c: 6 for c in CLASSES}
    # self-training also learnt from the unlabelled cells it was sure of, and says how many
    uses_unlabelled = method in (None, "spreading")
    assert (cal["pseudo_labelled_cells"] > 0) == uses_unlabelled
    assert cal["pseudo_label_sure"] == {None: 0.8, "spreading": 0.9}.get(method)
    assert cal["unlabelled_cells"] == 60 and cal["unlabelled_cells_looked_at"] == (60 if uses_unlabelled else 0)
    assert (f"learnt from {cal['pseudo_labelled_cells']} of 60 unlabelled cells" in printed.err) == (
        cal["pseudo_labelled_cells"] > 0)
    facts = calibration_facts_html(cal)  # the model dialog says who labelled those cells, and how sure
    if uses_unlabelled:
        assert f"at least {cal['pseudo_label_sure']:.0%} sure of" in facts
        assert ("label spreading" in facts) == (method == "spreading")
    else:
        assert "unlabelled cells" not in facts
    assert "ImageNet" in cal["features"]  # the shipped generic features join by default
    assert len(cal["labelled_files"]) == 18 and cal["unlabelled_cells"] == 60
    low, high = cal["estimate"]["ci95"]
    assert 0 <= low <= cal["estimate"]["accuracy"] <= high <= 1 and cal["estimate"]["folds"] >= 2
    rest = scan_labeled(lab[1])
    x = decode_images(rest.paths, card["input_size"]).pixels
    probs = Classifier(model, card).predict_arrays(x, tta=True)
    calibrated = probs.argmax(axis=1)
    base = Classifier.open(trained_model_path)
    truth = np.asarray([base.classes.index(rest.classes[i]) for i in rest.labels])
    before = np.mean(base.predict_arrays(x, tta=True).argmax(axis=1) == truth)
    after = np.mean(calibrated == truth)
    assert after >= max(before, 0.8)
    # the lab model has seen this lab's stain: its folders no longer ask to be calibrated for it
    from wbc_desktop.engine.infer.domain_check import SURROUNDINGS, colour_distance
    from wbc_desktop.engine.train.trainer import surroundings_stats

    stats, base_check = surroundings_stats(rest.paths), read_card(trained_model_path)["domain_check"]["colour"]
    assert base_check["view"] == SURROUNDINGS
    assert colour_distance(stats, base_check["references"], probs) > base_check["threshold"]
    assert colour_distance(stats, card["domain_check"]["colour"]["references"], probs) <= base_check["threshold"]


def test_head_is_not_thrown_by_a_feature_that_the_few_labelled_cells_happen_to_share():
    """Three cells a class cannot say how much a feature varies: one that is
    near constant among them and varies in the lab's other cells must not
    be blown up into the deciding feature (it was, by a spread per feature)."""
    from wbc_desktop.engine.train.calibrate import fit_head

    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 3)
    signal = np.where(y == 0, -1.0, 1.0)[:, None] + 0.3 * rng.normal(size=(6, 8))
    quiet = 1e-3 * rng.normal(size=(6, 1))  # the labelled cells happen to agree on it
    feats = np.concatenate([signal, quiet, np.ones((6, 1))], axis=1)[None]
    head = fit_head("logistic", feats, y, 2)
    test_y = np.repeat([0, 1], 50)
    test = np.concatenate([np.where(test_y == 0, -1.0, 1.0)[:, None] + 0.3 * rng.normal(size=(100, 8)),
                           0.5 * rng.normal(size=(100, 1)), np.ones((100, 1))], axis=1)
    assert np.mean(head.probs(test).argmax(axis=1) == test_y) > 0.95


def test_self_training_lets_the_labs_own_cells_correct_labelled_cells_that_lean_one_way():
    """A technologist's few labelled neutrophils can happen to lean towards
    the lymphocytes; the lab's unlabelled cells the first head is sure of
    show where the classes really lie, and the refitted head follows them."""
    from wbc_desktop.engine.train.calibrate import PSEUDO_LABEL_SURE, fit_head

    rng = np.random.default_rng(0)
    centres = 3.0 * np.eye(12)[:3] + 1.0

    def cells(c, n, lean=0.0):
        return centres[c] + lean * (centres[1] - centres[0]) + rng.normal(size=(n, 12))

    y = np.repeat([0, 1, 2], 3)
    labelled = np.concatenate([cells(0, 3, lean=0.6), cells(1, 3), cells(2, 3)])[None]
    lab_y = np.repeat([0, 1, 2], 100)
    lab = np.concatenate([cells(c, 100) for c in range(3)])
    plain = fit_head("logistic", labelled, y, 3)
    refitted = fit_head("self_training", labelled, y, 3, unlabelled=lab[None])
    before, after = (np.mean(h.probs(lab).argmax(axis=1) == lab_y) for h in (plain, refitted))
    assert after >= before + 0.03
    # without unlabelled cells it is the logistic head; with cells it is unsure of only, too
    alone = fit_head("self_training", labelled, y, 3)
    np.testing.assert_allclose(alone.weight, plain.weight)
    unsure = lab[np.max(plain.probs(lab), axis=1) < PSEUDO_LABEL_SURE]
    np.testing.assert_allclose(fit_head("self_training", labelled, y, 3, unlabelled=unsure[None]).weight, plain.weight)


def test_calibrate_refuses_too_few_cells_and_unknown_classes(trained_model_path, tmp_path, capsys):
    few = tinted_lab(tmp_path / "few", 2, 5)
    code = main(["calibrate", str(few), "--model", str(trained_model_path), "--out", str(tmp_path / "m.keras")])
    assert code == 2 and "at least 3 labelled cells of each of two classes" in capsys.readouterr().err
    odd = tinted_lab(tmp_path / "odd", 4, 6)
    (odd / "neutrophil").rename(odd / "smudge")
    code = main(["calibrate", str(odd), "--model", str(trained_model_path), "--out", str(tmp_path / "m.keras")])
    assert code == 2 and "does not know the classes ['smudge']" in capsys.readouterr().err


def test_a_class_with_too_few_labels_is_left_to_the_base_model(trained_model_path, tmp_path, capsys):
    """A lab's folder rarely holds three basophils: the one a technologist
    labelled must not block calibration, nor be fitted on as a class."""
    from wbc_desktop.engine.infer.classify import Classifier
    from wbc_desktop.engine.models.modelfile import load_model
    from wbc_desktop.gui.dialogs import calibration_facts_html

    lab = tinted_lab(tmp_path / "lab", 5, 7)
    for extra in sorted((lab / "lymphocyte").iterdir())[1:]:
        extra.unlink()  # one lymphocyte left
    out = tmp_path / "lab.keras"
    code = main(["calibrate", str(lab), "--model", str(trained_model_path), "--out", str(out), "--own-features-only"])
    err = capsys.readouterr().err
    assert code == 0 and "left to the base model: lymphocyte (1)" in err
    model, card = load_model(out)
    cal = card["calibration"]
    assert cal["labelled_cells"] == {"neutrophil": 5, "eosinophil": 5} and cal["set_aside"] == {"lymphocyte": 1}
    assert "lymphocyte" in cal["classes_kept_from_base"] and len(cal["labelled_files"]) == 10
    assert "left to the base model too: lymphocyte 1" in calibration_facts_html(cal)
    base = Classifier.open(trained_model_path)
    x = np.stack([np.asarray(Image.open(f).convert("RGB").resize((base.size, base.size)))
                  for f in sorted(lab.rglob("*.png"))])
    lymph = base.classes.index("lymphocyte")
    np.testing.assert_allclose(Classifier(model, card).predict_arrays(x, tta=True)[:, lymph],
                               base.predict_arrays(x, tta=True)[:, lymph], atol=1e-5)


def test_cli_says_which_kept_classes_keep_the_base_models_caution(trained_model_path, tmp_path, capsys):
    from wbc_desktop.engine.models.modelfile import load_model, save_model

    model, card = load_model(trained_model_path)
    cautious = save_model(model, dict(card, unfamiliar_offsets={"lymphocyte": -0.5, "neutrophil": -0.3}),
                          tmp_path / "cautious.keras")
    lab = tinted_lab(tmp_path / "lab", 4, 8)
    for cell in (lab / "lymphocyte").iterdir():
        cell.unlink()  # the lab labels no lymphocyte
    out = tmp_path / "lab.keras"
    assert main(["calibrate", str(lab), "--model", str(cautious), "--out", str(out), "--own-features-only"]) == 0
    assert "classes kept from the base model: lymphocyte (with the base model's caution on an unfamiliar lab: " \
           "lymphocyte -0.5)" in capsys.readouterr().err
    _, lab_card = load_model(out)
    assert lab_card["class_offsets"] == {"lymphocyte": -0.5} and lab_card["unfamiliar_offsets"] == {"neutrophil": -0.3}


def test_app_proposes_cells_calibrates_and_uses_the_lab_model(qtbot, settings, trained_model_path, tmp_path,
                                                               monkeypatch):
    import time

    from conftest import open_window
    from wbc_desktop.gui import calibration_flow

    lab = tinted_lab(tmp_path / "lab", 20, 31)
    slide = tmp_path / "slide"
    slide.mkdir()
    for f in sorted(lab.rglob("*.png")):
        f.rename(slide / f.name)
    truth = {"neu": "neutrophil", "eos": "eosinophil", "lym": "lymphocyte"}
    window = open_window(qtbot, settings, trained_model_path)
    with qtbot.waitSignal(window.job_finished, timeout=60000):
        window.open_paths([str(slide)])
    session = window.cells.session
    correct = lambda: sum(it.label == truth[it.path.split("/")[-1][:3]] for it in session.items)  # noqa: E731
    before = correct()

    assert window.act_propose.isEnabled()
    proposed = window.calibration.propose()
    assert 3 <= proposed <= 15 and len(session.calibration_set) == proposed
    assert window.review.proxy.rowCount() == proposed  # the grid shows just the cells to label
    per_class = {}
    for path in session.calibration_set:
        per_class[truth[path.split("/")[-1][:3]]] = per_class.get(truth[path.split("/")[-1][:3]], 0) + 1
    # the technologist labels them (and a few more, so every class has three)
    for label in truth.values():
        rows = [i for i, it in enumerate(session.items) if truth[it.path.split("/")[-1][:3]] == label]
        for i in rows[: max(3, per_class.get(label, 0))]:
            session.set_review(i, label, "T. Tester")
    shown = []
    monkeypatch.setattr(calibration_flow.CalibrationResultDialog, "exec", lambda self: shown.append(self) or 1)
    t0, tta = time.monotonic(), window.tta_box_checked()
    with qtbot.waitSignal(window.calibration.applied, timeout=120000):
        assert window.calibration.calibrate()
    assert time.monotonic() - t0 < 120
    text = shown[0].findChild(calibration_flow.QLabel).text()
    assert "Estimated accuracy on the lab's other cells" in text and "base model" in text and "lab model" in text
    qtbot.waitUntil(lambda: window.classifier is not None and "calibrated" in window.classifier.name, timeout=60000)
    assert "calibration" in window.classifier.card
    # by default the folder's other cells taught the head too, and the result says how many
    cal = window.classifier.card["calibration"]
    others = sum(it.error is None and it.reviewed is None for it in session.items)
    assert cal["method"] == "self_training" and cal["unlabelled_cells_looked_at"] == others
    assert 0 < cal["pseudo_labelled_cells"] <= others
    assert f"Also fitted on {cal['pseudo_labelled_cells']} of {others} of the lab's unlabelled cells" in text
    from wbc_desktop.gui.dialogs import card_html

    card_text = card_html(window.classifier.card)  # the models page and About show where a lab model comes from
    assert "Calibrated to a lab" in card_text and "Estimated accuracy on the lab's other cells" in card_text
    assert "ImageNet" in card_text
    assert session.model_name == window.classifier.name
    assert correct() >= before and correct() >= 0.8 * len(session.items)
    # the cells calibration had the features of were answered from them, the others by the model: all as the
    # lab model classifies the folder
    from wbc_desktop.engine.data.dataset import collect_images

    again = {p.path: p for p in window.classifier.classify_collected(*collect_images([str(slide)]), tta=tta)}
    for it in session.items:
        assert it.label == again[it.path].label
        assert it.confidence == pytest.approx(again[it.path].confidence, abs=1e-4)
    assert window.model_combo.findText(window.classifier.name) >= 0  # the lab model is in the list ...
    assert window.model_combo.count() >= 3  # ... beside the base model, one click away


def test_calibration_result_warns_of_kept_classes_the_lab_model_still_calls():
    """A lab that labelled no erythroblast still gets the base model's
    erythroblast calls (on unseen labs often lymphocytes): the result says
    which kept classes this folder's cells were called, and how many."""
    from wbc_desktop.gui.calibration_flow import kept_class_caution

    text = kept_class_caution(["ig", "erythroblast", "platelet"], {"lymphocyte": 40, "erythroblast": 12, "ig": 0})
    assert "erythroblast (12)" in text and "ig (" not in text and "platelet" not in text
    assert "label a few and calibrate again" in text
    assert kept_class_caution(["ig", "erythroblast"], {"lymphocyte": 40, "neutrophil": 9}) == ""
    assert kept_class_caution([], {"lymphocyte": 40}) == ""


def test_calibration_result_shows_its_whole_text(qtbot, tmp_path):
    """The result's wrapped text once lost its last line (the note that the
    base model is one click away) when the facts ran to more lines."""
    from PySide6.QtWidgets import QLabel

    from wbc_desktop.gui.calibration_flow import CalibrationResultDialog
    from wbc_desktop.gui.dialogs import calibration_facts_html

    five = ("neutrophil", "eosinophil", "basophil", "lymphocyte", "monocyte")
    cal = {"estimate": {"accuracy": 0.8, "ci95": [0.61, 0.91], "n": 25, "folds": 3},
           "labelled_cells": {c: 5 for c in five}, "classes_kept_from_base": ["ig", "erythroblast", "platelet"],
           "kept_caution": {"ig": -0.5, "erythroblast": -0.5, "platelet": -0.5},
           "features": "the base model's features and generic image features (ImageNet EfficientNet-Lite0, frozen, "
                       "pooled, cells enlarged to 224 px)"}
    rows = "".join(f"<tr><td>{c}</td><td align='right'>14</td><td align='right'>14</td></tr>" for c in five + ("ig",))
    text = (calibration_facts_html(cal) + "<p>How the count of this folder changes (reviewed cells keep your "
            "labels):</p><table border='1' cellspacing='0' cellpadding='3'><tr><th>class</th><th>base model</th>"
            f"<th>lab model</th></tr>{rows}<tr><td><b>Total WBC</b></td><td align='right'>70</td>"
            "<td align='right'>70</td></tr></table><p>The base model stays in the model list, one click away.</p>")
    dialog = CalibrationResultDialog(text)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    label = dialog.findChild(QLabel)
    assert label.height() >= label.heightForWidth(label.width()) > 0
    dialog.grab().save(str(tmp_path / "calibration_result.png"))


def test_folder_warning_fires_on_another_stain_and_not_on_the_own_lab_in_any_class_mix():
    from wbc_desktop.engine.infer.domain_check import colour_distance, colour_stats, reference_from, unlike_training

    rng = np.random.default_rng(0)

    def cells(n, tint):
        return np.stack([np.clip(np.asarray(cell_image(CLASSES[i % 3], rng, 32), np.float32) * tint, 0, 255)
                         for i in range(n)]).astype(np.uint8)

    own, other = cells(300, (1.0, 1.0, 1.0)), cells(60, (0.7, 0.95, 1.2))
    truth = np.arange(300) % 3
    sure = np.full((300, 3), 0.02)
    sure[np.arange(300), truth] = 0.96
    card = {"domain_check": reference_from(colour_stats(own[:200]), ["lab"] * 200, truth[:200],
                                           colour_stats(own[200:]), ["lab"] * 100, truth[200:], sure[200:])}
    assert card["domain_check"]["folder_cells"] == 50
    assert unlike_training(sure[:60], colour_stats(cells(60, (1.0, 1.0, 1.0))), card) is None
    stain = unlike_training(sure[:60], colour_stats(other), card)
    assert "stain and optics differ" in stain and "unsure" not in stain and "calibrate the model" in stain
    lab_model = dict(card, calibration={"base_model": "base"})  # already calibrated: not told to calibrate again
    assert "calibrated on" in unlike_training(sure[:60], colour_stats(other), lab_model)
    unsure = np.full((300, 3), 0.3)
    unsure[np.arange(300), truth] = 0.4
    assert "confidence" not in card["domain_check"]  # measured: confidence only added false alarms
    assert unlike_training(unsure[:60], colour_stats(own[:60]), card) is None
    # a card written before: a lab-wide stain reference and a confidence threshold, both still honoured
    stats = colour_stats(own[:200])
    older = {"domain_check": {"colour": {"references": [{"mean": stats.mean(0).tolist(),
                                                         "std": (stats.std(0) + 1e-3).tolist()}], "threshold": 3.0},
                              "confidence": {"threshold": 0.9}}}
    assert unlike_training(sure[:60], colour_stats(own[:60]), older) is None
    doubt = unlike_training(unsure[:60], colour_stats(own[:60]), older)
    assert "unsure of them" in doubt and "stain" not in doubt
    assert "stain and optics differ" in unlike_training(sure[:60], colour_stats(other), older)
    assert unlike_training(np.full((5, 3), 1 / 3), None, card) is None  # too few cells to judge
    assert unlike_training(np.full((60, 3), 1 / 3), None, {}) is None  # an older model without thresholds
    # a crop cut at a photo's edge is padded black: padding is not slide, and does not move its stain
    padded = np.zeros((60, 48, 48, 3), np.uint8)
    padded[:, 8:40, :32] = own[:60]
    np.testing.assert_allclose(colour_stats(padded), colour_stats(own[:60]), atol=1e-9)
    assert unlike_training(sure[:60], colour_stats(padded), card) is None
    # a folder of one class (sorted cells, a patient with mostly lymphocytes) has that class's colour, which
    # is the lab's colour for that class: silent; the same class in another stain still warns
    one_class = np.flatnonzero(truth == 2)[:60]
    assert np.linalg.norm(colour_stats(own[one_class]).mean(0) - colour_stats(own[:200]).mean(0)) > 0.01
    assert unlike_training(sure[one_class], colour_stats(own[one_class]), card) is None
    other_lymph = cells(180, (0.7, 0.95, 1.2))[2::3]
    assert "stain and optics differ" in unlike_training(sure[one_class], colour_stats(other_lymph), card)
    # probabilities over other classes than the references' (a model whose card was copied): the lab's mean
    refs = card["domain_check"]["colour"]["references"]
    assert colour_distance(colour_stats(own[:60]), refs, np.full((60, 4), 0.25)) == colour_distance(
        colour_stats(own[:60]), refs)


def test_a_warned_folder_asks_more_evidence_of_the_cards_unfamiliar_classes():
    from wbc_desktop.engine.infer.classify import Prediction, folder_check
    from wbc_desktop.engine.infer.domain_check import colour_stats, reference_from
    from wbc_desktop.engine.models.class_offsets import shift_probs

    logits = np.random.default_rng(1).normal(size=(40, 3))
    softmax = lambda z: np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # noqa: E731
    shift = {"lymphocyte": -1.5}
    np.testing.assert_allclose(shift_probs(softmax(logits), CLASSES, shift), softmax(logits + [0, 0, -1.5]), atol=1e-6)

    rng = np.random.default_rng(0)
    own = np.stack([np.asarray(cell_image(CLASSES[i % 3], rng, 32)) for i in range(300)])
    other = np.clip(own[:60] * np.asarray((0.7, 0.95, 1.2)), 0, 255).astype(np.uint8)
    truth = np.arange(300) % 3
    sure = np.full((300, 3), 0.02)
    sure[np.arange(300), truth] = 0.96
    card = {"classes": list(CLASSES), "unfamiliar_offsets": {"lymphocyte": -6.0, "basophil": -6.0},
            "domain_check": reference_from(colour_stats(own[:200]), ["lab"] * 200, truth[:200],
                                           colour_stats(own[200:]), ["lab"] * 100, truth[200:], sure[200:])}
    probs = sure[:60].copy()
    probs[truth[:60] == 2] = [0.3, 0.1, 0.6]  # lymphocytes, unless asked for more evidence
    called = [CLASSES[k] for k in probs.argmax(axis=1)]

    def folder(cells):
        return [Prediction(f"c{i}.png", called[i], 0.9, p, colour=s)
                for i, (p, s) in enumerate(zip(probs, colour_stats(cells)))] + [Prediction("bad.png", error="x")]

    warned = folder_check(folder(other), card)
    assert "stain and optics differ" in warned.notice and "20 of 60 cells changed label" in warned.notice
    assert [p.label for p in warned.predictions[:60]] == [c.replace("lymphocyte", "neutrophil") for c in called]
    assert {p.path for p in warned.changed} == {f"c{i}.png" for i in np.flatnonzero(truth[:60] == 2)}
    assert warned.predictions[60].error == "x" and warned.caution == "unfamiliar-lab caution: lymphocyte -6"
    assert warned.predictions[2].probs.sum() == pytest.approx(1.0)
    silent = folder_check(folder(own[:60]), card)  # its own lab's stain: the model's labels stand
    assert silent.notice is None and not silent.changed and silent.caution is None
    assert [p.label for p in silent.predictions[:60]] == called
    plain = folder_check(folder(other), dict(card, unfamiliar_offsets={}))  # a card without: warned, not re-weighed
    assert "changed label" not in plain.notice and not plain.changed

    # a temperature softens a warned folder's confidences and keeps every label; its own lab's folder stands
    soft = folder_check(folder(other), dict(card, unfamiliar_offsets={}, unfamiliar_temperature=2.0))
    assert "softened (temperature 2" in soft.notice and not soft.changed
    assert soft.caution == "unfamiliar-lab caution: temperature 2"
    assert [p.label for p in soft.predictions[:60]] == called
    np.testing.assert_allclose(soft.predictions[0].probs, softmax(np.log(probs[:1]) / 2.0)[0], atol=1e-6)
    assert all(p.confidence < q.confidence for p, q in zip(soft.predictions[:60], folder(other)[:60]))
    both = folder_check(folder(other), dict(card, unfamiliar_temperature=2.0))
    assert [p.label for p in both.predictions] == [p.label for p in warned.predictions]
    assert both.caution == "unfamiliar-lab caution: lymphocyte -6; temperature 2"
    assert folder_check(folder(own[:60]), dict(card, unfamiliar_temperature=2.0)).notice is None


def test_classify_reads_the_stain_from_the_view_its_card_names(trained_model_path, lab):
    from wbc_desktop.engine.data.preprocess import load_square
    from wbc_desktop.engine.infer.classify import Classifier
    from wbc_desktop.engine.infer.domain_check import STAIN_SIDE, colour_stats
    from wbc_desktop.engine.models.modelfile import load_model

    model, card = load_model(trained_model_path)
    card["preprocessing"] = dict(card.get("preprocessing", {}), framing="cell_tight")  # its view: mostly the cell
    files = sorted(lab[1].rglob("*.png"))[:6]
    new = [p.colour for p in Classifier(model, card).classify_files(files)]
    around = colour_stats(np.stack([load_square(f, STAIN_SIDE, framing="as_is") for f in files]))
    np.testing.assert_allclose(np.stack(new), around, atol=1e-9)  # the whole crop, as training read it
    colour = {k: v for k, v in card["domain_check"]["colour"].items() if k != "view"}
    older = dict(card, domain_check=dict(card["domain_check"], colour=colour))  # written before the view was named
    predictions = list(Classifier(model, older).classify_files(files, keep_pixels=True))
    own_view = colour_stats(np.stack([p.pixels for p in predictions]))
    np.testing.assert_allclose(np.stack([p.colour for p in predictions]), own_view, atol=1e-9)
    assert np.abs(own_view - around).max() > 0.01  # the two views do differ on these crops


def test_training_sets_the_threshold_and_classify_warns_once(trained_model_path, tmp_path, capsys):
    import shutil

    from wbc_desktop.engine.models.modelfile import read_card, update_card

    card = read_card(trained_model_path)
    check = card["domain_check"]
    assert check["colour"]["threshold"] > 0 and "confidence" not in check
    assert [r["source"] for r in check["colour"]["references"]] == ["."]  # one training folder, one lab
    assert len(check["colour"]["references"][0]["class_means"]) == len(card["classes"])
    code = main(["classify", str(tinted_lab(tmp_path / "tinted", 10, 3)), "--model", str(trained_model_path)])
    err = capsys.readouterr().err
    assert code == 0 and err.count("unlike the model's training data") == 1 and "stain and optics differ" in err
    main(["classify", str(make_labeled_folder(tmp_path / "own", per_class=10, seed=3)), "--model",
          str(trained_model_path)])
    assert "unlike" not in capsys.readouterr().err
    # a card written before the stain references: its confidence threshold still decides
    strict = tmp_path / "strict.keras"
    shutil.copy(trained_model_path, strict)
    update_card(strict, domain_check={"confidence": {"threshold": 0.999}, "folder_cells": 50})
    folder = tinted_lab(tmp_path / "other", 10, 3)
    code = main(["classify", str(folder), "--model", str(strict), "--no-tta"])
    err = capsys.readouterr().err
    assert code == 0 and err.count("unlike the model's training data") == 1 and "calibrate" in err
    update_card(strict, domain_check={"confidence": {"threshold": 0.0}, "folder_cells": 50})
    main(["classify", str(folder), "--model", str(strict), "--no-tta"])
    assert "unlike" not in capsys.readouterr().err


def test_classify_relabels_a_warned_folder_and_names_the_caution(trained_model_path, tmp_path, capsys):
    import csv
    import shutil

    from wbc_desktop.engine.models.modelfile import update_card

    model = tmp_path / "cautious.keras"
    shutil.copy(trained_model_path, model)
    update_card(model, unfamiliar_offsets={"lymphocyte": -30.0})  # never a lymphocyte where the warning fires
    folder = tinted_lab(tmp_path / "other", 10, 3)

    def labels(threshold, out):
        update_card(model, domain_check={"confidence": {"threshold": threshold}, "folder_cells": 50})
        assert main(["classify", str(folder), "--model", str(model), "--no-tta", "--out", str(out)]) == 0
        with open(out, newline="") as f:
            return list(csv.DictReader(f)), capsys.readouterr().err

    plain, err = labels(0.0, tmp_path / "plain.csv")  # silent: the model's own labels
    assert "unlike" not in err and "lymphocyte" in {r["label"] for r in plain}
    assert all("caution" not in r["model"] for r in plain)
    warned, err = labels(0.999, tmp_path / "warned.csv")
    changed = sum(r["label"] == "lymphocyte" for r in plain)
    assert f"{changed} of {len(plain)} cells changed label" in err
    assert "lymphocyte" not in {r["label"] for r in warned}
    assert all(r["model"].endswith("; unfamiliar-lab caution: lymphocyte -30") for r in warned)
    assert [r["path"] for r in warned] == [r["path"] for r in plain]
    update_card(model, domain_check={"confidence": {"threshold": 0.999}, "folder_cells": 50})
    main(["classify", str(folder), "--model", str(model), "--no-tta"])  # to the screen: the changed cells again
    out = capsys.readouterr()
    assert "relabelled on this folder:" in out.err and len(out.out.splitlines()) == len(plain) + changed


def test_app_shows_the_folder_warning_with_a_way_to_calibrate(qtbot, settings, trained_model_path, tmp_path):
    import shutil

    from conftest import open_window
    from wbc_desktop.engine.models.modelfile import update_card

    strict = tmp_path / "strict.keras"
    shutil.copy(trained_model_path, strict)
    update_card(strict, domain_check={"confidence": {"threshold": 0.999}, "folder_cells": 50})
    window = open_window(qtbot, settings, strict)
    slide = tinted_lab(tmp_path / "other", 10, 4)
    with qtbot.waitSignal(window.job_finished, timeout=60000):
        window.open_paths([str(slide)])
    notice = window.review.notice
    # one plain line first; its measurements behind "Details", and back
    assert notice.isVisibleTo(window) and "expect far lower accuracy, and review the flagged cells" in notice.text()
    assert "unsure" not in notice.text() and "Details" in notice.text()
    short_height = notice.sizeHint().height()
    notice.linkActivated.emit("details")
    assert "unlike the model" in notice.text() and "unsure" in notice.text() and "Fewer details" in notice.text()
    window.grab().save(str(tmp_path / "notice_details.png"))
    assert notice.sizeHint().height() >= short_height
    notice.linkActivated.emit("details")
    assert "unsure" not in notice.text()
    with qtbot.waitSignal(window.review.calibrate_requested):
        notice.linkActivated.emit("calibrate")  # the notice's other link
    assert window.cells.session.calibration_set
    window.grab().save(str(tmp_path / "notice.png"))


def test_app_relabels_a_warned_folder_and_records_the_caution(qtbot, settings, trained_model_path, tmp_path):
    import shutil

    from conftest import open_window
    from wbc_desktop.engine.models.modelfile import update_card

    cautious = tmp_path / "cautious.keras"
    shutil.copy(trained_model_path, cautious)
    update_card(cautious, domain_check={"confidence": {"threshold": 0.999}, "folder_cells": 50},
                unfamiliar_offsets={"lymphocyte": -30.0})
    window = open_window(qtbot, settings, cautious)
    with qtbot.waitSignal(window.job_finished, timeout=60000):
        window.open_paths([str(tinted_lab(tmp_path / "other", 10, 4))])
    session = window.cells.session
    assert len(session.items) == 30 and "lymphocyte" not in {it.final_label for it in session.items}
    assert session.model_name.endswith("; unfamiliar-lab caution: lymphocyte -30")
    window.review.notice.linkActivated.emit("details")
    assert "changed label" in window.review.notice.text()
    assert window.review.counts.last["counts"]["lymphocyte"] == 0  # the count shown is the relabelled one
    window.grab().save(str(tmp_path / "caution.png"))


def test_app_shows_a_warned_folders_softened_confidences(qtbot, settings, trained_model_path, tmp_path):
    """A card's unfamiliar_temperature changes no label but every confidence
    on a warned folder: the app shows the softened ones, as the CSV has them."""
    import shutil

    from conftest import open_window
    from wbc_desktop.engine.data.dataset import collect_images
    from wbc_desktop.engine.infer.classify import Classifier, folder_check
    from wbc_desktop.engine.models.modelfile import default_views, update_card

    soft = tmp_path / "soft.keras"
    shutil.copy(trained_model_path, soft)
    update_card(soft, domain_check={"confidence": {"threshold": 0.999}, "folder_cells": 50},
                unfamiliar_temperature=3.0)
    folder = tinted_lab(tmp_path / "other", 10, 4)
    clf = Classifier.open(soft)
    raw = list(clf.classify_collected(*collect_images([str(folder)]), tta=default_views(clf.card) == 4))
    expected = {p.path: p for p in folder_check(raw, clf.card).predictions}
    window = open_window(qtbot, settings, soft)
    with qtbot.waitSignal(window.job_finished, timeout=60000):
        window.open_paths([str(folder)])
    session = window.cells.session
    assert session.model_name.endswith("; unfamiliar-lab caution: temperature 3")
    window.review.notice.linkActivated.emit("details")
    assert "softened (temperature 3" in window.review.notice.text()
    for item in session.items:
        raw_conf = next(p.confidence for p in raw if p.path == item.path)
        assert item.final_label == expected[item.path].label
        assert item.confidence == pytest.approx(expected[item.path].confidence, abs=1e-5)
        assert item.confidence < raw_conf
