import h5py
import keras
import numpy as np
import pytest

from wbc_desktop.engine.models.builders import apply_freeze, build_compact, build_resnet50, iter_layers, replace_head
from wbc_desktop.engine.models.weights import IMAGENET_NOTOP_FILE, WeightsNotFoundError, find_imagenet_weights


@pytest.fixture(scope="module")
def imagenet_like_weights(tmp_path_factory):
    """A weights file in the exact legacy format of Keras' ImageNet download,
    written from a seeded random ResNet50 (nothing can be downloaded here)."""
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    keras.utils.set_random_seed(123)
    donor = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))
    path = tmp_path_factory.mktemp("weights") / IMAGENET_NOTOP_FILE
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, donor)
    return path, donor.get_layer("conv5_block3_3_conv").get_weights()[0]


def test_resnet50_loads_local_imagenet_file(imagenet_like_weights):
    path, expected_kernel = imagenet_like_weights
    model, origin = build_resnet50(5, 64, weights=str(path))
    assert origin.startswith("ImageNet")
    base = model.get_layer("resnet50")
    np.testing.assert_array_equal(base.get_layer("conv5_block3_3_conv").get_weights()[0], expected_kernel)
    assert model.output_shape == (None, 5)


def test_imagenet_weights_found_in_keras_cache(imagenet_like_weights, tmp_path, monkeypatch):
    cache = tmp_path / "keras_home" / "models"
    cache.mkdir(parents=True)
    (cache / IMAGENET_NOTOP_FILE).write_bytes(imagenet_like_weights[0].read_bytes())
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("WBC_RESOURCES", str(tmp_path / "no_resources"))
    assert find_imagenet_weights() == cache / IMAGENET_NOTOP_FILE


def test_missing_imagenet_weights_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("WBC_RESOURCES", str(tmp_path / "none"))
    with pytest.raises(WeightsNotFoundError) as err:
        build_resnet50(3, 64, weights="imagenet")
    message = str(err.value)
    assert "never downloads" in message and str(tmp_path / "empty") in message and str(tmp_path / "none") in message


def test_caffe_preprocessing_matches_keras(imagenet_like_weights):
    model, _ = build_resnet50(3, 32, weights="none")
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    ours = model.get_layer("caffe_preprocess")(x)
    theirs = keras.applications.resnet50.preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4)


def test_freeze_until_stage_keeps_batchnorm_frozen():
    model, _ = build_resnet50(3, 32, weights="none")
    apply_freeze(model, "conv3")
    layers = {l.name: l for l in iter_layers(model)}
    assert not layers["conv1_conv"].trainable and not layers["conv1_bn"].trainable
    assert not layers["conv3_block4_3_conv"].trainable and not layers["conv3_block1_0_bn"].trainable
    assert layers["conv4_block1_1_conv"].trainable and layers["conv5_block3_3_bn"].trainable
    assert layers["predictions"].trainable and not layers["caffe_preprocess"].trainable
    # a frozen BatchNormalization must not move its statistics in training mode
    bn = layers["conv2_block1_1_bn"]
    before = [w.copy() for w in bn.get_weights()]
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    model(x, training=True)
    for a, b in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_freeze_backbone_leaves_only_the_head():
    model = build_compact(4, 48)
    apply_freeze(model, "backbone")
    assert {w.path.split("/")[0] for w in model.trainable_weights} == {"predictions"}
    apply_freeze(model, "none")
    assert len(model.trainable_weights) > 10
    with pytest.raises(ValueError):
        apply_freeze(model, "conv9")


def test_compact_group_norm_and_replace_head():
    model = build_compact(8, 64, norm="group")
    assert any(isinstance(l, keras.layers.GroupNormalization) for l in model.layers)
    new = replace_head(model, 3)
    assert new.output_shape == (None, 3)
    x = np.zeros((1, 64, 64, 3), np.float32)
    np.testing.assert_allclose(new.predict(x, verbose=0).sum(), 1.0, atol=1e-5)
    assert new.get_layer("conv2_conv1") is model.get_layer("conv2_conv1")


def test_lab_input_removes_tint_and_survives_safe_mode_save(tmp_path):
    """The l-alpha-beta input turns an illumination tint (a gain per cone
    channel) into a shift that per-image standardisation removes, which a
    per-channel RGB standardisation cannot do; and a model using it still
    loads in the app's safe mode."""
    from wbc_desktop.engine.models.modelfile import _keras
    from wbc_desktop.engine.models.builders import LabColourSpace

    rng = np.random.default_rng(0)
    x = rng.uniform(40, 200, (1, 16, 16, 3)).astype(np.float32)
    m = LabColourSpace._RGB_TO_LMS
    tinted = (x @ m.T * np.array([1.15, 1.0, 0.7], np.float32)) @ np.linalg.inv(m).T
    standardise = keras.layers.LayerNormalization(axis=(1, 2), center=False, scale=False, epsilon=1e-6)
    lab, lab_tinted = (standardise(LabColourSpace()(v)) for v in (x, tinted))
    rgb, rgb_tinted = (standardise(v / 255.0) for v in (x, tinted))
    np.testing.assert_allclose(lab, lab_tinted, atol=1e-3)
    assert np.abs(np.asarray(rgb) - np.asarray(rgb_tinted)).max() > 0.05

    model = build_compact(8, 32, colour_space="lab")
    model.save(tmp_path / "lab.keras")
    loaded = _keras().saving.load_model(tmp_path / "lab.keras", compile=False, safe_mode=True)
    batch = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)


def test_mixstyle_mixes_feature_statistics_in_training_only(tmp_path):
    """Training: an image's per-channel feature mean and spread move towards
    another image's of the batch, its normalised pattern stays. Inference
    and a saved model: the identity."""
    from wbc_desktop.engine.models.builders import MixStyle

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (4, 8, 8, 2)), rng.normal(5, 3, (4, 8, 8, 2))]).astype(np.float32)
    layer = MixStyle(p=1.0, alpha=0.1, seed=3)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    y = np.asarray(layer(x, training=True))
    mean_in, mean_out = x.mean(axis=(1, 2)), y.mean(axis=(1, 2))
    assert np.abs(mean_out - mean_in).max() > 0.5  # some image took on another's statistics
    z = lambda v: (v - v.mean(axis=(1, 2), keepdims=True)) / v.std(axis=(1, 2), keepdims=True)  # noqa: E731
    np.testing.assert_allclose(z(y), z(x), atol=1e-3)
    np.testing.assert_array_equal(np.asarray(MixStyle(p=0.0)(x, training=True)), x)

    model = build_compact(8, 32, colour_space="lab", mixstyle=0.5)
    assert [la.name for la in model.layers if isinstance(la, MixStyle)] == ["conv1_mixstyle", "conv2_mixstyle",
                                                                             "conv3_mixstyle"]
    model.save(tmp_path / "mix.keras")
    loaded = keras.saving.load_model(tmp_path / "mix.keras", compile=False, safe_mode=True)
    batch = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)


def test_reinhard_transfer_puts_any_stain_onto_the_reference(tmp_path):
    """Two stains of one cell (a tint, a weaker contrast) come out alike and
    with the reference's l-alpha-beta statistics; a grey image stays without
    colour; and a model that uses the layer loads in the app's safe mode."""
    from wbc_desktop.engine.models.builders import LabColourSpace, ReinhardTransfer

    rng = np.random.default_rng(1)
    cell = rng.uniform(60, 220, (1, 24, 24, 3)).astype(np.float32)
    m = LabColourSpace._RGB_TO_LMS
    other_lab = (cell @ m.T * np.array([0.9, 1.0, 1.3], np.float32)) @ np.linalg.inv(m).T
    other_lab = 0.5 * other_lab + 0.5 * other_lab.mean(axis=(1, 2), keepdims=True)  # washed out
    out, out_other = (np.asarray(ReinhardTransfer()(v)) for v in (cell, other_lab))
    before, after = np.abs(cell - other_lab).mean(), np.abs(out - out_other).mean()
    assert before > 10 and after < before / 5
    lab = np.asarray(LabColourSpace()(out))[0]
    np.testing.assert_allclose(lab.mean(axis=(0, 1)), ReinhardTransfer.REFERENCE_MEAN, atol=0.05)  # up to clipping at 255
    np.testing.assert_allclose(lab[..., 0].std(), ReinhardTransfer.REFERENCE_STD[0], rtol=0.15)

    grey = np.repeat(cell[..., :1], 3, axis=-1)
    grey_out = np.asarray(ReinhardTransfer()(grey))
    assert np.asarray(LabColourSpace()(grey_out))[0, ..., 1:].std(axis=(0, 1)).max() < 0.01

    model = build_compact(8, 32, colour_space="reinhard")
    model.save(tmp_path / "reinhard.keras")
    loaded = keras.saving.load_model(tmp_path / "reinhard.keras", compile=False, safe_mode=True)
    batch = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)


def test_an_ensemble_averages_its_members_logits_and_comes_apart_again(tmp_path):
    """Joined: one model whose logits are the members' mean (each member at
    its own input size). Taken apart with the head biases its card keeps:
    every member again, exactly, also after the file's round trip."""
    import tensorflow as tf

    from wbc_desktop.engine.models.ensemble import build_ensemble, head_biases, take_apart, tap_layers
    from wbc_desktop.engine.models.modelfile import load_model, new_card, save_model

    keras.utils.set_random_seed(3)
    members = [build_compact(3, 32, width=8), build_compact(3, 40, width=8)]
    rng = np.random.default_rng(0)
    for m in members:  # fresh heads have zero biases: give them some to keep apart
        kernel, _ = m.get_layer("predictions").get_weights()
        m.get_layer("predictions").set_weights([kernel, rng.normal(size=3).astype(np.float32)])
    x = rng.uniform(0, 255, (5, 40, 40, 3)).astype(np.float32)
    inputs = [tf.image.resize(x, [32, 32], antialias=True).numpy(), x]
    alone = [m.predict(xi, verbose=0) for m, xi in zip(members, inputs)]

    joined = build_ensemble(members, 40)
    path = save_model(joined, new_card(name="joined", classes=["a", "b", "c"], input_size=40,
                                       architecture="ensemble", weights_origin="random"), tmp_path / "joined.keras")
    loaded, _ = load_model(path)
    mean_logits = np.mean([np.log(p) for p in alone], axis=0)
    expected = np.exp(mean_logits) / np.exp(mean_logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-6)

    parts = take_apart(loaded, head_biases(members))
    assert [tap_layers(part) for part in parts] == [tap_layers(m) for m in members]  # stages reachable by name
    for part, xi, p in zip(parts, inputs, alone):
        np.testing.assert_allclose(part.predict(xi, verbose=0), p, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(build_ensemble(parts, 40).predict(x, verbose=0), expected, rtol=1e-4, atol=1e-6)


def test_taps_join_each_members_pooled_mid_level_activations_and_change_no_answer(tmp_path):
    """Joined with taps, each member's block holds its features and then the
    mean of each tap layer's activations; the averaged head gives the taps no
    weight, so the answers are those of the join without them, also after
    the file's round trip, and the members still come apart exactly."""
    from wbc_desktop.engine.models.efficientnet_lite import build_efficientnet_lite0
    from wbc_desktop.engine.models.ensemble import (
        build_ensemble, head_biases, member_widths, take_apart, tap_layers,
    )
    from wbc_desktop.engine.models.modelfile import load_model, new_card, save_model

    keras.utils.set_random_seed(4)
    members = [build_compact(3, 32, width=8), build_compact(3, 40, width=8)]
    rng = np.random.default_rng(1)
    for m in members:
        kernel, _ = m.get_layer("predictions").get_weights()
        m.get_layer("predictions").set_weights([kernel, rng.normal(size=3).astype(np.float32)])
    assert tap_layers(members[1]) == ["conv3_relu2", "conv4_relu2"]  # conv5 is what the features pool
    lite0, _ = build_efficientnet_lite0(3, 64, weights=None)
    lite0_taps = tap_layers(lite0)
    assert [t.split("_")[0] for t in lite0_taps] == ["conv3", "conv4", "conv5"]
    assert lite0_taps[-1].endswith("project_bn")  # before the head convolution the features pool

    x = rng.uniform(0, 255, (4, 40, 40, 3)).astype(np.float32)
    plain = build_ensemble(members, 40)
    tapped = build_ensemble(members, 40, with_taps=True)
    widths = [m.get_layer("features").output.shape[-1] + sum(m.get_layer(t).output.shape[-1] for t in tap_layers(m))
              for m in members]
    assert tapped.get_layer("features").output.shape[-1] == sum(widths)
    path = save_model(tapped, new_card(name="tapped", classes=["a", "b", "c"], input_size=40,
                                       architecture="ensemble", weights_origin="random"), tmp_path / "tapped.keras")
    loaded, _ = load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), plain.predict(x, verbose=0), rtol=1e-4, atol=1e-6)

    feats = keras.Model(loaded.input, loaded.get_layer("features").output).predict(x, verbose=0)
    second = members[1]  # its own size: no resizing between the input and its layers
    own = keras.Model(second.input, [second.get_layer("features").output]
                      + [second.get_layer(t).output for t in tap_layers(second)]).predict(x, verbose=0)
    expected = np.concatenate([own[0]] + [a.mean(axis=(1, 2)) for a in own[1:]], axis=1)
    np.testing.assert_allclose(feats[:, widths[0]:], expected, rtol=1e-4, atol=1e-5)

    parts = take_apart(loaded, head_biases(members))
    assert [tap_layers(part) for part in parts] == [tap_layers(m) for m in members]  # joined again, taps and all
    assert member_widths(build_ensemble(parts, 40, with_taps=True)) == widths
    def wrapped(member):  # a member around its network as one nested layer, as take_apart once made them
        inputs = keras.Input(member.input.shape[1:])
        own = keras.Model(member.input, member.get_layer("features").output)
        features = keras.layers.Identity(name="features")(own(inputs))
        head = keras.layers.Dense(3, activation="softmax", name="predictions")
        outer = keras.Model(inputs, head(features), name="nested")
        head.set_weights(member.get_layer("predictions").get_weights())
        return outer

    nested = wrapped(wrapped(members[0]))  # v7's file held three members two wrappings deep
    with pytest.raises(ValueError, match="nested: no conv3/conv4/conv5 stage to tap"):
        build_ensemble([nested, members[1]], 40, with_taps=True)
    unwrapped = take_apart(build_ensemble([nested, members[1]], 40), head_biases(members))[0]
    assert tap_layers(unwrapped) == tap_layers(members[0])
    xi = keras.ops.convert_to_numpy(keras.ops.image.resize(x, (32, 32), antialias=True))
    np.testing.assert_allclose(unwrapped.predict(xi, verbose=0), members[0].predict(xi, verbose=0),
                               rtol=1e-4, atol=1e-6)
    for part, member, size in zip(parts, members, (32, 40)):
        xi = keras.ops.convert_to_numpy(keras.ops.image.resize(x, (size, size), antialias=True))
        np.testing.assert_allclose(part.predict(xi, verbose=0), member.predict(xi, verbose=0), rtol=1e-4, atol=1e-6)
