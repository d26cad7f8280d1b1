"""The model shipped in resources/: loads, has the documented classes in
order, carries an honest card and classifies out of the box."""

import csv
import json

import numpy as np

from synth import cell_image
from wbc_desktop import paths
from wbc_desktop.cli import main
from wbc_desktop.engine.infer.classify import Classifier
from wbc_desktop.engine.data.dataset import CANONICAL_CLASSES
from wbc_desktop.engine.models.modelfile import default_views, read_card
from wbc_desktop.engine.data.preprocess import RESIZE_METHOD

SHIPPED = paths.default_model_path()


def test_shipped_model_card_is_complete():
    card = read_card(SHIPPED)
    assert card["classes"] == list(CANONICAL_CLASSES)
    assert SHIPPED.stat().st_size < 100 * 1024 * 1024
    for key in ("test_metrics", "test_metrics_by_source", "unseen_lab_evaluations", "data_credits", "training_data",
                "hyperparameters", "recipe", "domain_check"):
        assert card.get(key), key
    assert 0 < card["test_metrics"]["accuracy"] <= 1
    speed = "images_per_second_4_views" if default_views(card) == 4 else "images_per_second"
    assert card["classify_speed"][speed] >= 50  # the speed goal, with the model's default views
    assert all(len(r["class_means"]) == len(CANONICAL_CLASSES) for r in card["domain_check"]["colour"]["references"])


def test_shipped_model_was_trained_on_the_engines_own_decoding():
    # a model sees pixels through load_square; change it, and the model
    # must be retrained (a decode change alone cost 0.3 points once)
    assert read_card(SHIPPED)["preprocessing"]["resize"] == RESIZE_METHOD


def test_shipped_model_classifies_generated_images(tmp_path):
    rng = np.random.default_rng(0)
    for i, label in enumerate(("neutrophil", "lymphocyte", "eosinophil") * 3):
        cell_image(label, rng, 200).save(tmp_path / f"{i}.jpg")
    clf = Classifier.open(SHIPPED)
    results = list(clf.classify([tmp_path]))
    assert len(results) == 9 and all(r.ok for r in results)
    assert all(r.label in CANONICAL_CLASSES and 0 < r.confidence <= 1 for r in results)


def test_cli_uses_shipped_model_by_default(tmp_path, capsys):
    rng = np.random.default_rng(1)
    cell_image("neutrophil", rng, 200).save(tmp_path / "a.png")
    assert main(["classify", str(tmp_path), "--out", str(tmp_path / "p.csv")]) == 0
    row = next(csv.DictReader((tmp_path / "p.csv").open()))
    assert row["model"] == read_card(SHIPPED)["name"]
    assert [k for k in row if k.startswith("prob_")] == [f"prob_{c}" for c in CANONICAL_CLASSES]
    capsys.readouterr()
    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["classes"] == list(CANONICAL_CLASSES)
    assert main(["info"]) == 0  # the readable card of an ensemble: its members, its test splits, new labs, cautions
    out, card = capsys.readouterr().out, read_card(SHIPPED)
    assert all(f"member: {m['name']}" in out for m in card.get("members", []))
    assert all(f"test split, {source}: accuracy {m['accuracy']:.4f}" in out
               for source, m in card["test_metrics_by_source"].items())
    assert all(f"lab never seen in training, {lab}: accuracy {m['accuracy']:.4f}" in out
               for lab, m in card["unseen_lab_evaluations"].items())
    if card.get("unfamiliar_temperature", 1.0) != 1.0:
        assert f"logits divided by {card['unfamiliar_temperature']:g}" in out


def test_shipped_model_reads_real_pbc_files_the_way_it_was_trained():
    # mostly its own training images: not a quality estimate (RESULTS.md has
    # those), but a wrong decode, channel order or scaling drops this far
    from conftest import shared_dataset
    from wbc_desktop.engine.data.dataset import scan_labeled

    data = scan_labeled(shared_dataset("pbc"))
    rows = np.concatenate([np.flatnonzero(data.labels == k)[:30] for k in range(len(data.classes))])
    clf = Classifier.open(SHIPPED)
    predicted = [p.label for p in clf.classify_files([data.paths[i] for i in rows])]
    truth = [data.classes[data.labels[i]] for i in rows]
    assert np.mean(np.asarray(predicted) == np.asarray(truth)) >= 0.9


def test_shipped_model_reads_grey_copies_of_real_cells(tmp_path):
    """A grey image's cell is found by its darkness and cut as in colour:
    80 grey PBC cells right 0.71 of the time before (the crop went whole to a
    model that cuts close), about 0.96 now."""
    from conftest import shared_dataset
    from PIL import Image
    from wbc_desktop.engine.data.dataset import scan_labeled

    data = scan_labeled(shared_dataset("pbc"))
    rows = np.concatenate([np.flatnonzero(data.labels == k)[-10:] for k in range(len(data.classes))])
    files = []
    for i in rows:
        files.append(tmp_path / f"{i}.png")
        Image.open(data.paths[i]).convert("L").save(files[-1])
    predicted = [p.label for p in Classifier.open(SHIPPED).classify_files(files)]
    truth = [data.classes[data.labels[i]] for i in rows]
    assert np.mean(np.asarray(predicted) == np.asarray(truth)) >= 0.85


def test_shipped_model_card_renders_in_the_app():
    from wbc_desktop.gui.dialogs import card_html

    card = read_card(SHIPPED)
    html = card_html(card)
    assert card["name"] in html and "Labs never seen in training" in html
    for name, shift in card.get("class_offsets", {}).items():  # what was added to a logit is said
        assert f"{name} {shift:+g}" in html
    for name, shift in card.get("unfamiliar_offsets", {}).items():  # and what a warned folder adds
        assert f"{name} {shift:+g}" in html.split("On a folder unlike its training labs:")[1]
    if card.get("unfamiliar_temperature", 1.0) != 1.0:  # and how much it softens such a folder's confidences
        assert f"logits divided by {card['unfamiliar_temperature']:g}" in html.split("Confidence on such a folder:")[1]
    for member in card.get("members", []):  # an ensemble names its members and how each scored alone
        assert f"{member['name']} (alone: test split accuracy {member['test_metrics']['accuracy']:.1%}" in html
