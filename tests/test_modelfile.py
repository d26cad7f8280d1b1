import zipfile

import keras
import numpy as np
import pytest

from wbc_desktop.engine.models.modelfile import ModelFileError, load_model, new_card, read_card, save_model, update_card
from wbc_desktop.engine.models.builders import build_compact
from wbc_desktop.engine.data.preprocess import RESIZE_METHOD


def test_roundtrip_keeps_weights_and_card(tmp_path):
    model = build_compact(3, 32, width=8)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(np.zeros((4, 32, 32, 3)), np.eye(3)[[0, 1, 2, 0]], verbose=0)
    card = new_card(name="m", classes=["a", "b", "c"], input_size=32, architecture="compact", weights_origin="test",
                    test_metrics={"accuracy": np.float32(0.5)})
    path = save_model(model, card, tmp_path / "m.keras")
    loaded, loaded_card = load_model(path)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert loaded_card["classes"] == ["a", "b", "c"] and loaded_card["test_metrics"]["accuracy"] == 0.5
    assert loaded_card["preprocessing"]["resize"] == RESIZE_METHOD
    with zipfile.ZipFile(path) as z:
        assert z.getinfo("model.weights.h5").file_size < 2 * 4 * model.count_params()  # no optimizer state


def test_update_card_rewrites_only_the_card(tmp_path, tiny_model_path):
    path = tmp_path / "copy.keras"
    path.write_bytes(tiny_model_path.read_bytes())
    update_card(path, limitations="not for bone marrow")
    assert read_card(path)["limitations"] == "not for bone marrow"
    load_model(path)


def test_damaged_and_foreign_files_get_clear_errors(tmp_path, tiny_model_path):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(tiny_model_path.read_bytes()[:2000])
    with pytest.raises(ModelFileError, match="damaged or not a model file"):
        load_model(broken)
    text = tmp_path / "text.keras"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="damaged or not a model file"):
        read_card(text)
    foreign = tmp_path / "foreign.keras"
    build_compact(2, 32, width=8).save(foreign)
    with pytest.raises(ModelFileError, match="not a WBC Desktop model"):
        load_model(foreign)
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.keras")


def test_safe_mode_refuses_code_in_model_files(tmp_path):
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Lambda(lambda t: t * 2)(keras.layers.GlobalAveragePooling2D()(inputs))
    evil = keras.Model(inputs, outputs)
    path = tmp_path / "evil.keras"
    save_model(evil, new_card(name="e", classes=["a", "b", "c"], input_size=8, architecture="x", weights_origin="x"), path)
    with pytest.raises(ModelFileError, match="cannot be loaded"):
        load_model(path)


def test_card_must_match_model(tmp_path):
    with pytest.raises(ModelFileError, match="do not match"):
        save_model(build_compact(3, 32, width=8), new_card(name="m", classes=["a"], input_size=32, architecture="c",
                                                           weights_origin="w"), tmp_path / "m.keras")
    with pytest.raises(ModelFileError, match=".keras"):
        save_model(build_compact(1, 32, width=8), {"classes": ["a"], "input_size": 32}, tmp_path / "m.h5")


def test_a_card_can_name_the_cut_its_model_is_used_with(tmp_path, trained_model_path, synth_dir):
    """``test_framing``: chosen on the protocol like the views; the training
    framing stays in the card, and every path that classifies cuts the cells
    the chosen way."""
    import shutil

    from wbc_desktop.engine.data.preprocess import load_square
    from wbc_desktop.engine.infer.classify import Classifier

    close = tmp_path / "close.keras"
    shutil.copy(trained_model_path, close)
    update_card(close, test_framing="cell_close")
    clf, plain = Classifier.open(close), Classifier.open(trained_model_path)
    assert clf.framing == "cell_close" and plain.framing == read_card(close)["preprocessing"]["framing"] == "as_is"
    cell = sorted(synth_dir.rglob("*.png"))[0]
    np.testing.assert_array_equal(clf.view(cell), load_square(cell, clf.size, framing="cell_close"))
    assert not np.array_equal(clf.view(cell), plain.view(cell))
    shown = next(iter(clf.classify([cell])))
    np.testing.assert_allclose(shown.probs, clf.predict_arrays(clf.view(cell)[None])[0], rtol=1e-5, atol=1e-6)

    update_card(close, test_framing="cell_nowhere")
    with pytest.raises(ValueError, match="cell_nowhere"):
        Classifier.open(close)
