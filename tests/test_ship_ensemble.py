"""The shipped model keeps its members: one whose model file is gone is
taken out of the shipped file, so a new model that changes one member
trains only that one."""

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))

from ship_ensemble import load_members, member_entry  # noqa: E402

from wbc_desktop.engine.models.builders import build_compact  # noqa: E402
from wbc_desktop.engine.models.modelfile import load_model, new_card, save_model  # noqa: E402
from run_models import join  # noqa: E402

CLASSES = ["neutrophil", "eosinophil", "lymphocyte"]


def _member(tmp_path, name: str, size: int, seed: int) -> dict:
    keras.utils.set_random_seed(seed)
    model = build_compact(len(CLASSES), size, width=8)
    kernel, _ = model.get_layer("predictions").get_weights()
    model.get_layer("predictions").set_weights([kernel, np.random.default_rng(seed).normal(size=3).astype(np.float32)])
    card = new_card(name=name, classes=CLASSES, input_size=size, architecture="compact", weights_origin="random",
                    framing="cell_tight", hyperparameters={"seed": seed})
    return {"name": name, "output": str(save_model(model, card, tmp_path / f"{name}.keras"))}


def test_a_member_whose_file_is_gone_is_taken_out_of_the_shipped_file(tmp_path):
    specs = [_member(tmp_path, "plain", 32, 1), _member(tmp_path, "grey", 40, 2)]
    loaded = [load_model(s["output"]) for s in specs]
    joined, card = join(loaded)
    shipped = save_model(joined, dict(card, members=[member_entry(m, c) for m, c in loaded]), tmp_path / "shipped.keras")
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    before = loaded[0][0].predict(x, verbose=0)

    Path(specs[0]["output"]).unlink()
    again = load_members(specs, shipped)
    (model, member_card), (_, kept_card) = again
    np.testing.assert_allclose(model.predict(x, verbose=0), before, rtol=1e-5, atol=1e-7)
    assert member_card["name"] == "plain" and member_card["input_size"] == 32
    assert member_card["preprocessing"]["framing"] == "cell_tight" and member_card["hyperparameters"] == {"seed": 1}
    assert kept_card["name"] == "grey"  # its own file, as its recipe wrote it

    Path(specs[1]["output"]).unlink()
    specs.append({"name": "new member", "output": str(tmp_path / "never trained.keras")})
    with pytest.raises(SystemExit, match="never trained.keras is missing"):
        load_members(specs, shipped)


def test_class_offsets_shift_the_joined_logits_once_and_leave_the_members_whole(tmp_path):
    from wbc_desktop.engine.models.class_offsets import shift_head

    specs = [_member(tmp_path, "plain", 32, 1), _member(tmp_path, "grey", 40, 2)]
    loaded = [load_model(s["output"]) for s in specs]
    joined, card = join(loaded)
    x = np.random.default_rng(0).uniform(0, 255, (6, 40, 40, 3)).astype(np.float32)  # the joined input
    plain = joined.predict(x, verbose=0)
    offsets = {"lymphocyte": -1.0}
    shift_head(joined, CLASSES, offsets)
    shipped = save_model(joined, dict(card, class_offsets=offsets,
                                      members=[member_entry(m, c) for m, c in loaded]), tmp_path / "shipped.keras")
    model, card = load_model(shipped)
    expected = plain * np.exp([0.0, 0.0, -1.0])
    np.testing.assert_allclose(model.predict(x, verbose=0), expected / expected.sum(axis=1, keepdims=True), rtol=1e-4)

    shift_head(model, CLASSES, {"lymphocyte": -0.5}, card["class_offsets"])  # replaces the applied offset
    expected = plain * np.exp([0.0, 0.0, -0.5])
    np.testing.assert_allclose(model.predict(x, verbose=0), expected / expected.sum(axis=1, keepdims=True), rtol=1e-4)

    Path(specs[0]["output"]).unlink()  # the members taken out of the shifted file carry no offset
    (member, _), _ = load_members(specs, shipped)
    small = x[:, :32, :32]
    np.testing.assert_allclose(member.predict(small, verbose=0), loaded[0][0].predict(small, verbose=0), rtol=1e-5,
                               atol=1e-7)
    with pytest.raises(ValueError, match="platelet"):
        shift_head(model, CLASSES, {"platelet": -1.0})


def test_the_offset_rule_finds_the_classes_that_one_training_lab_teaches(tmp_path):
    """A class counts as taught by a lab from MIN_TAUGHT cells on (BCCD's 3
    basophils teach nothing); the rule picks the classes one lab alone teaches."""
    from crosslab import MIN_TAUGHT, one_lab_classes

    for lab, counts in {"big": {"neutrophil": 20, "eosinophil": 15, "lymphocyte": 12},
                        "small": {"neutrophil": 20, "eosinophil": MIN_TAUGHT - 1}}.items():
        for c, n in counts.items():
            (tmp_path / lab / c).mkdir(parents=True)
            for i in range(n):
                (tmp_path / lab / c / f"{i}.png").write_bytes(b"")
    assert one_lab_classes(tmp_path, ["big", "small"], CLASSES) == ["eosinophil", "lymphocyte"]
    assert one_lab_classes(tmp_path, ["small"], CLASSES) == ["neutrophil"]


def test_the_protocol_scores_warned_folders_as_the_app_relabels_them():
    """``domain_warning_eval.labelled_accuracy``: where the warning fires the
    caution's labels count, elsewhere the model's own; a temperature changes
    no label and brings confident mistakes under the review flag."""
    from domain_warning_eval import labelled_accuracy

    truth = np.arange(60) % 3
    probs = np.full((60, 3), 0.05)
    probs[np.arange(60), truth] = 0.5
    probs[truth == 0, 2] = 0.6  # every neutrophil called a lymphocyte, by a little
    probs /= probs.sum(axis=1, keepdims=True)
    stats = np.zeros((60, 6))
    caution = {"lymphocyte": -1.0}

    def check(threshold):
        return {"colour": {"references": [{"mean": [0.0] * 6, "std": [1.0] * 6}], "threshold": threshold}}

    rng = np.random.default_rng(0)
    silent = labelled_accuracy(probs, stats + 0.1, truth, check(5.0), CLASSES, caution, rng)
    assert silent["plain"] == silent["as_labelled"] == pytest.approx(2 / 3, abs=0.1)
    warned = labelled_accuracy(probs, stats + 3.0, truth, check(5.0), CLASSES, caution, rng)
    assert warned["plain"] == pytest.approx(2 / 3, abs=0.1) and warned["as_labelled"] == 1.0

    sure = np.full((60, 3), 0.01)  # confident, a third of them wrong: a temperature brings them under the flag
    sure[np.arange(60), (truth + (truth == 0)) % 3] = 0.98
    as_is = labelled_accuracy(sure, stats + 3.0, truth, check(5.0), CLASSES, {}, np.random.default_rng(1))
    softer = labelled_accuracy(sure, stats + 3.0, truth, check(5.0), CLASSES, {}, np.random.default_rng(1), 4.0)
    assert as_is["as_labelled"] == softer["as_labelled"] == pytest.approx(2 / 3, abs=0.1)
    assert as_is["flagged"] == as_is["errors_flagged"] == 0.0 and softer["errors_flagged"] == 1.0
    assert softer["ece"] < as_is["ece"]


def test_a_card_without_member_biases_is_rejoined_exactly_with_a_new_member_but_never_split(tmp_path):
    """v5's card kept no member's own head bias, only their mean in the
    joined head (offsets on it): each member gets that mean, which rejoins
    them exactly with a new member, and dropping one of them is refused."""
    from ship_ensemble import SHARED
    from wbc_desktop.engine.models.class_offsets import shift_head

    specs = [_member(tmp_path, "plain", 32, 1), _member(tmp_path, "grey", 40, 2)]
    loaded = [load_model(s["output"]) for s in specs]
    joined, card = join(loaded)
    offsets = {"eosinophil": -0.5}
    shift_head(joined, CLASSES, offsets)
    kept = ("name", "recipe", "trained_on", "hyperparameters", "test_metrics")  # all a v5 entry holds
    entries = [{k: v for k, v in member_entry(m, c).items() if k in kept} for m, c in loaded]
    shipped = save_model(joined, dict(card, members=entries, class_offsets=offsets), tmp_path / "shipped.keras")
    new = _member(tmp_path, "new", 32, 3)
    truth, _ = join(loaded + [load_model(new["output"])])  # the three joined from their own files
    for s in specs:
        Path(s["output"]).unlink()

    again = load_members(specs + [new], shipped)
    assert all(c.get(SHARED) for _, c in again[:2]) and not again[2][1].get(SHARED)
    assert [c["input_size"] for _, c in again] == [32, 40, 32] and again[1][1]["preprocessing"]["framing"] == "cell_tight"
    rejoined, _ = join(again)
    x = np.random.default_rng(0).uniform(0, 255, (4, 40, 40, 3)).astype(np.float32)
    np.testing.assert_allclose(rejoined.predict(x, verbose=0), truth.predict(x, verbose=0), rtol=1e-4, atol=1e-6)
    assert member_entry(*again[0])[SHARED] and SHARED not in member_entry(*again[2])  # the next card says so
    with pytest.raises(SystemExit, match="does not keep 'plain'"):  # one without the other: its bias is unknown
        load_members([specs[0], new], shipped)
