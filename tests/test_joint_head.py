"""The shipped model's head fitted again on its members' joined features:
one Dense layer that gives what the fitted regression gives, and members
that can still be taken apart from the file that kept their own heads."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))

from wbc_desktop.engine.train.joint_head import count_as, features_of, fit_joint_head, refit_head  # noqa: E402


def _blobs(n_per_class: int, dim: int, seed: int = 0):
    """Three classes apart in a few features, with features of very
    different scales (a compact member's beside a Lite0's)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    x = rng.normal(size=(len(y), dim)) * np.linspace(0.01, 50.0, dim)
    x[:, :3] += 4.0 * np.eye(3)[y] * np.linspace(0.01, 50.0, dim)[:3]
    return x.astype(np.float32), y


def test_the_fitted_head_is_one_linear_layer_that_matches_the_regression():
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(40, 12)
    kernel, bias = fit_joint_head(x, y, 3, C=0.5)
    logits = x @ kernel + bias
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    reference = LogisticRegression(C=0.5, max_iter=5000).fit((x - mean) / std, y)
    np.testing.assert_allclose(logits, reference.decision_function((x - mean) / std), rtol=1e-3, atol=1e-3)
    assert (logits.argmax(axis=1) == y).mean() > 0.95


def test_a_class_without_training_cells_is_refused():
    x, y = _blobs(10, 6)
    with pytest.raises(ValueError, match=r"class index \[3\]"):
        fit_joint_head(x, y, 4)


def test_count_as_weighs_a_big_source_down_to_the_protocols_share():
    sources = np.asarray(["pbc"] * 90 + ["bccd"] * 10)
    weights = count_as(sources, {"pbc": 30, "absent": 5})
    assert weights[:90].sum() == pytest.approx(30) and np.all(weights[90:] == 1.0)


def test_refit_head_replaces_the_joined_head_of_a_model(tmp_path):
    """On a joined model the new head answers the training cells better than
    the members' averaged heads, and the saved file gives the same answers."""
    import keras

    from run_models import join
    from wbc_desktop.engine.models.builders import build_compact
    from wbc_desktop.engine.models.modelfile import load_model, new_card, save_model

    classes = ["neutrophil", "eosinophil", "lymphocyte"]
    loaded = []
    for seed, size in ((1, 32), (2, 40)):
        keras.utils.set_random_seed(seed)
        model = build_compact(len(classes), size, width=8)
        loaded.append((model, new_card(name=f"m{seed}", classes=classes, input_size=size, architecture="compact",
                                       weights_origin="random", framing="cell_tight")))
    joined, card = join(loaded)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 12)
    pixels = np.clip(rng.normal(120, 20, (len(y), 40, 40, 3)) + 60 * np.eye(3)[y][:, None, None, :], 0, 255)
    pixels = pixels.astype(np.uint8)
    before = (joined.predict(pixels.astype(np.float32), verbose=0).argmax(axis=1) == y).mean()
    refit_head(joined, pixels, y, C=1.0)
    after = joined.predict(pixels.astype(np.float32), verbose=0)
    assert (after.argmax(axis=1) == y).mean() >= max(before, 0.9)
    kernel, bias = joined.get_layer("predictions").get_weights()
    logits = features_of(joined, pixels) @ kernel + bias
    np.testing.assert_allclose(after, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), rtol=1e-4, atol=1e-6)
    again, _ = load_model(save_model(joined, card, tmp_path / "joint.keras"))
    np.testing.assert_allclose(again.predict(pixels.astype(np.float32), verbose=0), after, rtol=1e-5, atol=1e-6)


def test_the_members_are_read_from_the_commit_a_joint_head_card_names(tmp_path, monkeypatch):
    """A joint head no longer holds the members' own heads: the card names
    the commit whose shipped file did, and git gives that file back."""
    import ship_ensemble
    from ship_ensemble import JOINT, git_file, members_from
    from wbc_desktop.engine.models.modelfile import read_card, update_card

    from test_ship_ensemble import _member  # a real model file with a card

    repo = tmp_path / "repo"
    (repo / "resources").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    shipped = Path(_member(repo / "resources", "members", 32, 1)["output"])
    own_heads = shipped.read_bytes()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "members"], check=True)
    monkeypatch.setattr(ship_ensemble, "ROOT", repo)
    kept = members_from(shipped)
    assert kept["path"] == "resources/members.keras" and len(kept["commit"]) == 40
    assert git_file(kept["commit"], kept["path"]).read_bytes() == own_heads

    update_card(shipped, name="changed, not committed")
    assert members_from(shipped) is None  # the file on disk is not the one the commit holds

    update_card(shipped, **{JOINT: {"C": 0.01, "members_from": kept}})
    assert members_from(shipped) == read_card(shipped)[JOINT]["members_from"] == kept
    with pytest.raises(SystemExit, match="git cannot show"):
        git_file("0" * 40, kept["path"])


def test_a_member_trained_again_is_not_recorded_as_kept_in_the_older_file(tmp_path):
    """The card may only name a file that joins exactly the members being
    shipped (its offsets aside): a member trained since is not in it."""
    from run_models import join
    from ship_ensemble import holds_members
    from test_ship_ensemble import _member
    from wbc_desktop.engine.models.class_offsets import shift_head
    from wbc_desktop.engine.models.modelfile import load_model, save_model

    specs = [_member(tmp_path, "plain", 32, 1), _member(tmp_path, "grey", 40, 2)]
    loaded = [load_model(s["output"]) for s in specs]
    joined, card = join(loaded)
    older = join(loaded)[0]
    offsets = {"lymphocyte": -0.5}
    shift_head(older, card["classes"], offsets)
    kept = save_model(older, dict(card, class_offsets=offsets), tmp_path / "older.keras")
    assert holds_members(joined, kept)

    retrained = loaded[0][0]
    layer = next(lay for lay in retrained.layers if lay.get_weights())
    layer.set_weights([w + 0.01 for w in layer.get_weights()])
    assert not holds_members(join([(retrained, loaded[0][1]), loaded[1]])[0], kept)


def test_shipping_with_taps_fits_the_head_on_them_and_looks_for_the_kept_members_without_them(tmp_path, monkeypatch):
    """``"taps": true`` in the recipe's joint head: the shipped head weighs
    the members' pooled mid-level activations too, the card says so, and the
    file that keeps the members' own heads is still found (it joins them
    without taps)."""
    from types import SimpleNamespace

    import ship_ensemble
    from run_models import join
    from ship_ensemble import fit_joint_head
    from synth import make_labeled_folder
    from test_ship_ensemble import CLASSES, _member
    from wbc_desktop.engine.models.modelfile import load_model

    specs = [_member(tmp_path, "plain", 32, 1), _member(tmp_path, "grey", 40, 2)]
    loaded = [load_model(s["output"]) for s in specs]
    plain, card = join(loaded)
    tapped = join(loaded, with_taps=True)[0]
    folder = make_labeled_folder(tmp_path / "cells", per_class=6, classes=CLASSES)
    paths = sorted(folder.rglob("*.png"))
    data = SimpleNamespace(train=SimpleNamespace(paths=paths, y=np.asarray([CLASSES.index(p.parent.name) for p in paths])))
    looked_at = []
    monkeypatch.setattr(ship_ensemble, "kept_members", lambda model, shipped: looked_at.append(model) or None)
    spec = {"output": "resources/x.keras", "sources": ["cells"], "joint_head": {"C": 1.0, "taps": True}}
    entry = fit_joint_head(tapped, plain, data, "cell_tight", 40, spec)

    assert looked_at == [plain] and entry["taps"] is True
    kernel, _ = tapped.get_layer("predictions").get_weights()
    start, tap_rows = 0, []
    for i, (member, _) in enumerate(loaded):
        own, block = member.get_layer("features").output.shape[-1], tapped.get_layer(f"member{i}").output.shape[-1]
        tap_rows += range(start + own, start + block)
        start += block
    assert start == kernel.shape[0] and tap_rows
    weighed = np.abs(kernel[tap_rows]).sum(axis=1) > 0  # a channel a random net never fires stays at 0
    assert weighed.mean() > 0.5  # the taps are weighed, not only the members' features
